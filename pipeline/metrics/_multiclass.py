"""Decision rule, confusion matrices, one-vs-rest and averaged curves, and the point summary of a model."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pipeline.errors import invalid_argument
from pipeline.metrics._ranking import _sweep_ap, _sweep_auc, make_sweep, pr_curve, roc_curve
from pipeline.metrics._validation import (
    _METRIC_ALIASES,
    _as_class_labels,
    _as_probs,
    _check_pos_index,
    _check_same_length,
    _check_threshold,
    _safe_div,
)

# --------------------------------------------------------------------------------------------
# Multiclass
# --------------------------------------------------------------------------------------------


def confusion_matrix(y: ArrayLike, pred: ArrayLike, n_classes: int) -> NDArray[np.integer[Any]]:
    """(n_classes, n_classes) counts, rows true and columns predicted (sklearn's layout)."""
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise invalid_argument("n_classes", "a positive int", repr(n_classes))
    yt = _as_class_labels("y", y, n_classes)
    yp = _as_class_labels("pred", pred, n_classes)
    _check_same_length("y", yt, pred=yp)
    return np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def decide(P: ArrayLike, *, threshold: float | None = None, pos_index: int = 1) -> NDArray[np.integer[Any]]:
    """THE decision rule, on probabilities of shape (..., K) without validation (callers check their inputs):
    binary with a threshold, `pos_index` when P[..., pos_index] >= threshold, else the other class; otherwise
    (multiclass, or no threshold) the argmax. Used by `predict_labels`, the review gallery and live inference."""
    P = np.asarray(P)
    if threshold is None or P.shape[-1] != 2:
        return np.asarray(np.argmax(P, axis=-1))
    return np.where(P[..., pos_index] >= float(threshold), pos_index, 1 - pos_index)


def predict_labels(P: ArrayLike, *, thresholds: float | None = None, pos_index: int = 1) -> NDArray[np.integer[Any]]:
    """Validated `decide`: argmax labels; for binary with a threshold, pos_index when P[:, pos_index] >= threshold."""
    probs = _as_probs("P", P)
    if thresholds is None:
        return decide(probs)
    if probs.shape[1] != 2:
        raise invalid_argument(
            "thresholds",
            "None for a multiclass P (thresholds apply to binary tasks)",
            repr(thresholds),
        )
    pos = _check_pos_index(pos_index, 2)
    t = _check_threshold("thresholds", thresholds)
    return decide(probs, threshold=t, pos_index=pos)


def _check_y_P(y: ArrayLike, P: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (y, P) pair."""
    probs = _as_probs("P", P)
    labels = _as_class_labels("y", y, probs.shape[1])
    _check_same_length("y", labels, P=probs)
    if labels.size == 0:
        raise invalid_argument("y", "at least one sample", "an empty array")
    return labels, probs


def one_vs_rest_curves(y: ArrayLike, P: ArrayLike) -> dict[int, dict[str, object]]:
    """Per class: ROC and PR curves with AUC and AP (NaN and empty curves when undefined)."""
    labels, probs = _check_y_P(y, P)
    out: dict[int, dict[str, object]] = {}
    for k in range(probs.shape[1]):
        yb = labels == k
        sweep = make_sweep(yb, probs[:, k])
        entry: dict[str, object] = {"n_pos": int(sweep.n_pos), "n_neg": int(sweep.n_neg)}
        if sweep.n_pos > 0 and sweep.n_neg > 0:
            fpr, tpr, thr = roc_curve(sweep)
            prec, rec, pthr = pr_curve(sweep)
            entry.update(
                fpr=fpr,
                tpr=tpr,
                thresholds=thr,
                roc_auc=_sweep_auc(sweep),
                precision=prec,
                recall=rec,
                pr_thresholds=pthr,
                average_precision=_sweep_ap(sweep),
            )
        else:
            empty = np.empty(0)
            entry.update(
                fpr=empty,
                tpr=empty,
                thresholds=empty,
                roc_auc=math.nan,
                precision=empty,
                recall=empty,
                pr_thresholds=empty,
                average_precision=_sweep_ap(sweep) if sweep.n_pos > 0 else math.nan,
            )
        out[k] = entry
    return out


def _interp_upper(grid: np.ndarray, fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """Linear interpolation of a ROC curve; at a vertical step it takes the top value."""
    j = np.searchsorted(fpr, grid, side="right") - 1
    j = np.clip(j, 0, fpr.size - 1)
    nxt = np.minimum(j + 1, fpr.size - 1)
    dx = fpr[nxt] - fpr[j]
    frac = _safe_div(grid - fpr[j], dx)
    return np.asarray(tpr[j] + frac * (tpr[nxt] - tpr[j]))


def micro_macro_roc(y: ArrayLike, P: ArrayLike) -> dict[str, dict[str, object]]:
    """Micro (flattened one-hot) and macro (mean TPR on a common FPR grid) ROC curves.

    The macro AUC is the mean of per-class AUCs, as roc_auc_score(average='macro',
    multi_class='ovr'); classes with one label only are left out.
    """
    labels, probs = _check_y_P(y, P)
    K = probs.shape[1]
    onehot = labels[:, None] == np.arange(K)[None, :]
    micro_sweep = make_sweep(onehot.ravel(), probs.ravel())
    m_fpr, m_tpr, m_thr = roc_curve(micro_sweep)
    curves = one_vs_rest_curves(labels, probs)
    valid = [c for c in curves.values() if np.size(np.asarray(c["fpr"]))]
    if not valid:
        raise invalid_argument("y", "at least one class with both positives and negatives", "none")
    grid = np.unique(np.concatenate([np.asarray(c["fpr"]) for c in valid]))
    mean_tpr = np.mean([_interp_upper(grid, np.asarray(c["fpr"]), np.asarray(c["tpr"])) for c in valid], axis=0)
    return {
        "micro": {"fpr": m_fpr, "tpr": m_tpr, "thresholds": m_thr, "roc_auc": _sweep_auc(micro_sweep)},
        "macro": {
            "fpr": np.r_[0.0, grid],
            "tpr": np.r_[0.0, mean_tpr],
            "roc_auc": float(np.mean(np.asarray([c["roc_auc"] for c in valid], dtype=np.float64))),
        },
    }


def _multiclass_count_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Macro metrics from confusion matrices of shape (..., K, K), averaged like scikit-learn."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    true_k = cm.sum(axis=-1)
    pred_k = cm.sum(axis=-2)
    total = true_k.sum(axis=-1)
    fn = true_k - tp
    fp = pred_k - tp
    tn = total[..., None] - tp - fn - fp
    # scikit-learn's macro averages run over labels seen in y_true or y_pred; balanced accuracy
    # over labels seen in y_true only.
    present = (true_k + pred_k) > 0
    supported = true_k > 0

    def mean_over(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return _safe_div(np.where(mask, values, 0.0).sum(axis=-1), mask.sum(axis=-1))

    recall = _safe_div(tp, true_k)
    return {
        "accuracy": _safe_div(tp.sum(axis=-1), total),
        "balanced_accuracy": mean_over(recall, supported),
        "sensitivity": mean_over(recall, present),
        "specificity": mean_over(_safe_div(tn, tn + fp), present),
        "precision": mean_over(_safe_div(tp, pred_k), present),
        "f1": mean_over(_safe_div(2 * tp, 2 * tp + fp + fn), present),
    }


def _normalize_metric(name: str, allowed: Sequence[str]) -> str:
    """Resolve aliases and check the metric name."""
    if not isinstance(name, str):
        raise invalid_argument("metric", "a metric name or a callable", repr(name))
    key = _METRIC_ALIASES.get(name, name)
    if key not in allowed:
        raise invalid_argument("metric", f"one of {sorted(allowed)}", repr(name))
    return key
