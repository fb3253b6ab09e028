"""Classification metrics for comparing models: sweeps, curves, thresholds, bootstrap CIs,
calibration, paired tests and disagreement. NumPy + SciPy only; nothing runs on import.

Conventions
-----------
- ``y``: int class indices, shape (n,). ``P``: probabilities, shape (n, K); K == 2 is binary and the
  positive score is ``P[:, pos_index]``.
- ``y_true`` / ``y_bool``: binary labels (bool or 0/1); ``score``: a 1-D positive-class score.
- ``groups``: patient/lesion ids, shape (n,), or None (each sample is its own group).
- A binary prediction is positive when ``score >= threshold``; with no threshold it is the argmax.
- Every curve and score equals scikit-learn's definition (``roc_curve(drop_intermediate=False)``,
  ``precision_recall_curve``, ``roc_auc_score``, ``average_precision_score``...), with ties.
- Divisions by zero give 0.0, as scikit-learn's default ``zero_division`` does; AUCs that are not
  defined (one class only) raise ``ValueError`` in the point functions. Inside bootstrap resamples
  any metric whose denominator is zero (an AUC without positives, a precision without predicted
  positives...) is NaN, and those resamples are left out of that metric's interval.

Bootstrap engine (why it is fast)
---------------------------------
A cluster-bootstrap resample is a vector of integer multiplicities per group. Every metric here is a
function of a few weighted sums, so a model is reduced once (one sort) to "cells": confusion cells
(true class x predicted class) and score-bin cells (score bin x class). A resample then only needs
the weight of each cell: with groups it is ``group_counts @ H`` (H: sparse group x cell counts);
without groups and when the cells are few, the cell weights are drawn directly as one
multinomial(n, cell sizes / n), which is the exact distribution of the per-sample bootstrap.
Threshold metrics are exact. ROC AUC is exact across score bins and uses the conditional
expectation inside a bin; PR AUC a second-order expansion inside bins plus a constant shift that
makes the unresampled value exact. Both are exact whenever each bin holds one distinct score
(n <= ``max_bins``, or few distinct scores); otherwise a replicate is off by a few percent of the
bootstrap spread at most (tests/test_stats.py measures it), noise that narrows the interval by
well under 1%. Bins are single samples at the top of the ranking and grow to n / max_bins;
multiclass rankings get max_bins / 4 bins each.

For several models call ``bootstrap_models`` (or ``bootstrap_replicates``): group draws are made
once and shared. The same seed gives a model the same interval whichever models come with it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from scipy import sparse, stats

__all__ = [
    "BINARY_METRICS",
    "LEADERBOARD_METRICS",
    "MULTICLASS_METRICS",
    "Sweep",
    "average_precision",
    "bootstrap_all",
    "bootstrap_ci",
    "bootstrap_models",
    "bootstrap_replicates",
    "brier_score",
    "classification_summary",
    "confidence_histogram",
    "confusion_matrix",
    "counts_at",
    "delong_test",
    "delong_variance",
    "disagreement_matrix",
    "downsample_curve",
    "ensemble_mean",
    "expected_calibration_error",
    "holm_correction",
    "make_sweep",
    "mcnemar_test",
    "metrics_at",
    "micro_macro_roc",
    "multiclass_brier_score",
    "one_vs_rest_curves",
    "paired_bootstrap_diff",
    "pairwise_comparisons",
    "pr_curve",
    "predict_labels",
    "reliability_curve",
    "roc_auc",
    "roc_curve",
    "sweep_average_precision",
    "sweep_roc_auc",
    "threshold_for_sensitivity",
    "top_label_ece",
    "top_label_reliability",
    "unique_correct",
    "youden_threshold",
]

LEADERBOARD_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "roc_auc",
    "pr_auc",
)
BINARY_METRICS = LEADERBOARD_METRICS + ("npv", "fpr", "youden_j")
MULTICLASS_METRICS = LEADERBOARD_METRICS
_RANK_METRICS = frozenset({"roc_auc", "pr_auc"})
_METRIC_ALIASES = {
    "recall": "sensitivity",
    "tpr": "sensitivity",
    "tnr": "specificity",
    "ppv": "precision",
    "auc": "roc_auc",
    "average_precision": "pr_auc",
    "ap": "pr_auc",
}
_MAX_BINS = 512
# The multinomial draw costs one binomial per cell; above this many cells, resampling the groups
# (n integer draws per resample) is cheaper.
_JOINT_CELL_LIMIT = 4096
_CHUNK_ELEMENTS = 8_000_000


# --------------------------------------------------------------------------------------------
# Input validation: messages name the argument, what was expected and what was received.
# --------------------------------------------------------------------------------------------


def _invalid(name: str, expected: str, received: object) -> ValueError:
    """Build a Keras-style error for argument `name`."""
    return ValueError(
        f"Invalid value for argument `{name}`. Expected {expected}. Received: {received}"
    )


def _as_1d(name: str, a: object) -> np.ndarray:
    """Return `a` as a 1-D array, or raise naming `name`."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise _invalid(name, "a 1-D array", f"an array of shape {arr.shape}")
    return arr


def _as_bool_labels(name: str, y: object) -> np.ndarray:
    """Return binary labels (bool or 0/1) as a bool array."""
    arr = _as_1d(name, y)
    if arr.dtype == bool:
        return arr
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise _invalid(name, "binary labels (bool or 0/1)", f"an array of dtype {arr.dtype}")
    is_one: np.ndarray = np.asarray(arr == 1)
    ok = is_one | (arr == 0)
    if not ok.all():
        bad = np.unique(arr[~ok])[:5]
        raise _invalid(name, "binary labels (bool or 0/1)", f"values {bad.tolist()}")
    return is_one


def _as_scores(name: str, s: object) -> np.ndarray:
    """Return a finite 1-D float64 score array."""
    arr = _as_1d(name, s)
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise _invalid(name, "numeric scores", f"an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise _invalid(name, "finite scores", f"{int((~np.isfinite(arr)).sum())} NaN/inf values")
    return arr


def _as_probs(name: str, P: object) -> np.ndarray:
    """Return a finite (n, K>=2) float64 probability array."""
    arr = np.asarray(P)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise _invalid(name, "a 2-D array of shape (n_samples, n_classes >= 2)", f"shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise _invalid(name, "numeric probabilities", f"an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise _invalid(name, "finite probabilities", f"{int((~np.isfinite(arr)).sum())} NaN/inf values")
    return arr


def _as_class_labels(name: str, y: object, n_classes: int) -> np.ndarray:
    """Return int class indices in [0, n_classes)."""
    arr = _as_1d(name, y)
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise _invalid(name, "integer class indices", f"an array of dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise _invalid(
            name, f"class indices in [0, {n_classes - 1}]", f"min {arr.min()}, max {arr.max()}"
        )
    return arr


def _check_same_length(ref_name: str, ref: np.ndarray, **others: np.ndarray) -> None:
    """Raise when any array in `others` has a different length from `ref`."""
    for name, arr in others.items():
        if len(arr) != len(ref):
            raise _invalid(
                name, f"the same length as `{ref_name}` ({len(ref)})", f"length {len(arr)}"
            )


def _check_pos_index(pos_index: int, n_classes: int) -> int:
    """Validate the positive-class column index."""
    if not isinstance(pos_index, (int, np.integer)) or not 0 <= pos_index < n_classes:
        raise _invalid("pos_index", f"an int in [0, {n_classes - 1}]", repr(pos_index))
    return int(pos_index)


def _check_threshold(name: str, threshold: object) -> float:
    """Validate a decision threshold (a real number, not NaN)."""
    try:
        t = float(threshold)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _invalid(name, "a real number", repr(threshold)) from None
    if math.isnan(t):
        raise _invalid(name, "a real number", "nan")
    return t


def _check_fraction(name: str, value: float, low_open: bool = True) -> float:
    """Validate a value in (0, 1] (or [0, 1])."""
    v = float(value)
    if not ((0.0 < v) if low_open else (0.0 <= v)) or v > 1.0 or math.isnan(v):
        raise _invalid(name, f"a number in {'(' if low_open else '['}0, 1]", repr(value))
    return v


def _group_codes(groups: object, n: int) -> tuple[np.ndarray, int] | None:
    """Map group ids to codes 0..G-1; None when every sample is its own group."""
    if groups is None:
        return None
    arr = _as_1d("groups", groups)
    if len(arr) != n:
        raise _invalid("groups", f"the same length as `y` ({n})", f"length {len(arr)}")
    _, codes = np.unique(arr, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    n_groups = int(codes.max()) + 1 if n else 0
    if n_groups == n:
        return None  # all singletons: the per-sample bootstrap, which has a faster path
    return codes, n_groups


def _safe_div(num: object, den: object) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (scikit-learn's default zero_division)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den != 0)
    return out


# --------------------------------------------------------------------------------------------
# Sorted sweep: one sort, then any threshold is answered in O(log n).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Sweep:
    """Cumulative confusion counts at every distinct score, thresholds descending."""

    thresholds: np.ndarray  # distinct scores, descending
    tps: np.ndarray  # positives with score >= thresholds[i] (weighted sums when weighted)
    fps: np.ndarray  # negatives with score >= thresholds[i]
    n_pos: float
    n_neg: float
    _ascending_neg: np.ndarray = field(repr=False, compare=False)  # -thresholds, for searchsorted

    @property
    def n(self) -> float:
        """Total (weighted) number of samples."""
        return self.n_pos + self.n_neg


def make_sweep(y_true: object, score: object, sample_weight: object = None) -> Sweep:
    """Sort once and accumulate TP/FP at each distinct score (the threshold-tuning core)."""
    y = _as_bool_labels("y_true", y_true)
    s = _as_scores("score", score)
    _check_same_length("y_true", y, score=s)
    if y.size == 0:
        raise _invalid("y_true", "at least one sample", "an empty array")
    w = None
    if sample_weight is not None:
        w = _as_scores("sample_weight", sample_weight)
        _check_same_length("y_true", y, sample_weight=w)
        if (w < 0).any():
            raise _invalid("sample_weight", "non-negative weights", f"min {w.min()}")
        keep = w != 0  # as scikit-learn: zero-weight samples add no threshold
        if not keep.any():
            raise _invalid("sample_weight", "at least one positive weight", "all zeros")
        y, s, w = y[keep], s[keep], w[keep]
    # Order within ties does not matter (ties are read at their last index), so the fast
    # unstable sort is fine.
    order = np.argsort(-s)
    s_sorted = s[order]
    y_sorted = y[order]
    # Last index of each run of equal scores: that is where the cumulative counts are read.
    ends = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1]
    n_pos: float
    n_neg: float
    if w is None:
        tps = np.cumsum(y_sorted, dtype=np.int64)[ends]
        fps = ends + 1 - tps
        n_pos, n_neg = int(tps[-1]), int(fps[-1])
    else:
        w_sorted = w[order]
        tps = np.cumsum(w_sorted * y_sorted)[ends]
        fps = np.cumsum(w_sorted * ~y_sorted)[ends]
        n_pos, n_neg = float(tps[-1]), float(fps[-1])
    thresholds = s_sorted[ends]
    return Sweep(thresholds, tps, fps, n_pos, n_neg, -thresholds)


def _counts_index(sweep: Sweep, threshold: object) -> np.ndarray | int:
    """Number of distinct thresholds >= threshold (vectorised over an array)."""
    return np.searchsorted(sweep._ascending_neg, -np.asarray(threshold, dtype=np.float64), side="right")


def counts_at(sweep: Sweep, threshold: float | np.ndarray) -> tuple:
    """(tn, fp, fn, tp) for "positive when score >= threshold", by binary search in O(log n)."""
    if np.ndim(threshold) == 0:
        t = _check_threshold("threshold", threshold)
        i = int(np.searchsorted(sweep._ascending_neg, -t, side="right"))
        cast = int if isinstance(sweep.n_pos, int) else float
        tp = cast(sweep.tps[i - 1]) if i else cast(0)
        fp = cast(sweep.fps[i - 1]) if i else cast(0)
        return (sweep.n_neg - fp, fp, sweep.n_pos - tp, tp)
    ts = np.asarray(threshold, dtype=np.float64)
    if np.isnan(ts).any():
        raise _invalid("threshold", "real numbers", "NaN values")
    k = _counts_index(sweep, ts)
    tps = np.r_[0, sweep.tps][k]
    fps = np.r_[0, sweep.fps][k]
    return (sweep.n_neg - fps, fps, sweep.n_pos - tps, tps)


def _binary_count_metrics(tn: object, fp: object, fn: object, tp: object) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (arrays broadcast; zero division gives 0)."""
    tn, fp, fn, tp = (np.asarray(a, dtype=np.float64) for a in (tn, fp, fn, tp))
    pos, neg = tp + fn, tn + fp
    sens = _safe_div(tp, pos)
    spec = _safe_div(tn, neg)
    # scikit-learn averages recall over the classes present in y_true only.
    both = (pos > 0) & (neg > 0)
    balanced = np.where(both, (sens + spec) / 2, np.where(pos > 0, sens, spec))
    return {
        "accuracy": _safe_div(tp + tn, pos + neg),
        "balanced_accuracy": balanced,
        "sensitivity": sens,
        "specificity": spec,
        "precision": _safe_div(tp, tp + fp),
        "npv": _safe_div(tn, tn + fn),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "fpr": _safe_div(fp, neg),
        "youden_j": sens + spec - 1.0,
    }


def metrics_at(sweep: Sweep, threshold: float) -> dict[str, float]:
    """All threshold metrics plus the counts (tn, fp, fn, tp) at one threshold, in O(log n)."""
    tn, fp, fn, tp = counts_at(sweep, threshold)
    # Plain float arithmetic: this runs on every slider move, and NumPy scalars are slow.
    def div(a: float, b: float) -> float:
        return a / b if b else 0.0

    pos, neg = tp + fn, tn + fp
    sens, spec = div(tp, pos), div(tn, neg)
    balanced = (sens + spec) / 2 if pos and neg else (sens if pos else spec)
    return {
        "accuracy": div(tp + tn, pos + neg),
        "balanced_accuracy": balanced,
        "sensitivity": sens,
        "specificity": spec,
        "precision": div(tp, tp + fp),
        "npv": div(tn, tn + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "fpr": div(fp, neg),
        "youden_j": sens + spec - 1.0,
        "tn": tn, "fp": fp, "fn": fn, "tp": tp,
        "threshold": float(threshold),
    }


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


def _require_both_classes(sweep: Sweep, what: str) -> None:
    """Raise the clear error for a curve or AUC on one class only."""
    if sweep.n_pos <= 0 or sweep.n_neg <= 0:
        raise _invalid(
            "y_true",
            f"both classes present for {what}",
            f"{sweep.n_pos} positive and {sweep.n_neg} negative samples",
        )


def roc_curve(sweep: Sweep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) like sklearn.metrics.roc_curve(drop_intermediate=False)."""
    _require_both_classes(sweep, "a ROC curve")
    fpr = np.r_[0.0, sweep.fps / sweep.n_neg]
    tpr = np.r_[0.0, sweep.tps / sweep.n_pos]
    return fpr, tpr, np.r_[np.inf, sweep.thresholds]


def pr_curve(sweep: Sweep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) like sklearn.metrics.precision_recall_curve."""
    if sweep.n_pos <= 0:
        raise _invalid("y_true", "at least one positive sample for a PR curve", "no positives")
    precision = _safe_div(sweep.tps, sweep.tps + sweep.fps)
    recall = sweep.tps / sweep.n_pos
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], sweep.thresholds[::-1].copy()


def _sweep_auc(sweep: Sweep) -> float:
    """Trapezoidal ROC AUC from the sweep; exact integer arithmetic when unweighted."""
    _require_both_classes(sweep, "ROC AUC")
    tps, fps = sweep.tps, sweep.fps
    prev_tps = np.r_[0, tps[:-1]]
    d_fps = np.diff(np.r_[0, fps])
    return float(np.dot(d_fps, tps + prev_tps) / (2.0 * sweep.n_pos * sweep.n_neg))


def _sweep_ap(sweep: Sweep) -> float:
    """Average precision (step-wise, no interpolation) from the sweep."""
    if sweep.n_pos <= 0:
        raise _invalid("y_true", "at least one positive sample for average precision", "no positives")
    d_tps = np.diff(np.r_[0, sweep.tps])
    return float(np.dot(d_tps, _safe_div(sweep.tps, sweep.tps + sweep.fps)) / sweep.n_pos)


def sweep_roc_auc(sweep: Sweep) -> float:
    """ROC AUC of an existing sweep (no re-sort); equals roc_auc on the same data."""
    return _sweep_auc(sweep)


def sweep_average_precision(sweep: Sweep) -> float:
    """Average precision of an existing sweep (no re-sort); equals average_precision."""
    return _sweep_ap(sweep)


def roc_auc(y_true: object, score: object, sample_weight: object = None) -> float:
    """ROC AUC equal to sklearn.metrics.roc_auc_score (ties count one half)."""
    return _sweep_auc(make_sweep(y_true, score, sample_weight))


def average_precision(y_true: object, score: object, sample_weight: object = None) -> float:
    """Average precision equal to sklearn.metrics.average_precision_score."""
    return _sweep_ap(make_sweep(y_true, score, sample_weight))


def downsample_curve(
    x: object, y: object, thr: object, max_points: int = 2000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep at most ~max_points points evenly spaced along the curve's length, ends included."""
    xa, ya, ta = (_as_1d(n, a) for n, a in (("x", x), ("y", y), ("thr", thr)))
    _check_same_length("x", xa, y=ya, thr=ta)
    if not isinstance(max_points, (int, np.integer)) or max_points < 2:
        raise _invalid("max_points", "an int >= 2", repr(max_points))
    if xa.size <= max_points:
        return xa, ya, ta
    xf, yf = xa.astype(np.float64), ya.astype(np.float64)
    # Normalise both axes so a step in either direction counts the same (curves live in [0, 1]^2).
    sx = np.ptp(xf) or 1.0
    sy = np.ptp(yf) or 1.0
    seg = np.hypot(np.diff(xf) / sx, np.diff(yf) / sy)
    length = np.r_[0.0, np.cumsum(seg)]
    targets = np.linspace(0.0, length[-1], max_points - 1)
    idx = np.searchsorted(length, targets, side="left")
    idx = np.unique(np.r_[0, np.minimum(idx, xa.size - 1), xa.size - 1])
    return xa[idx], ya[idx], ta[idx]


# --------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------


def curve_summary(sweep: Sweep, max_points: int = 2000) -> dict[str, Any]:
    """Downsampled ROC (fpr, tpr, thr) and PR (recall, precision, thr) of a sweep, with AUC, AP and prevalence."""
    out: dict[str, Any] = {"roc": None, "pr": None, "roc_auc": float("nan"), "ap": float("nan"),
                           "prevalence": sweep.n_pos / sweep.n if sweep.n else float("nan")}
    if sweep.n_pos > 0 and sweep.n_neg > 0:
        fpr, tpr, thr = roc_curve(sweep)
        # The first threshold is +inf ("nothing positive"): shown as 1 so hover text and JSON stay finite.
        out["roc"] = downsample_curve(fpr, tpr, np.minimum(thr, 1.0), max_points)
        out["roc_auc"] = sweep_roc_auc(sweep)
    if sweep.n_pos > 0:
        prec, rec, pthr = pr_curve(sweep)
        # precision/recall have one more point than thresholds (recall 0, precision 1): give it threshold 1.
        out["pr"] = downsample_curve(rec, prec, np.r_[pthr, 1.0], max_points)
        out["ap"] = sweep_average_precision(sweep)
    return out


def threshold_for_sensitivity(sweep: Sweep, target: float = 0.95) -> float:
    """Largest observed score whose threshold gives sensitivity >= target."""
    target = _check_fraction("target", target)
    if sweep.n_pos <= 0:
        raise _invalid("y_true", "at least one positive sample", "no positives")
    tpr = sweep.tps / sweep.n_pos
    k = int(np.searchsorted(tpr, target, side="left"))  # tpr is non-decreasing
    return float(sweep.thresholds[min(k, tpr.size - 1)])


def youden_threshold(sweep: Sweep) -> float:
    """Observed score maximising Youden's J = TPR - FPR (the largest on ties)."""
    _require_both_classes(sweep, "Youden's J")
    j = sweep.tps / sweep.n_pos - sweep.fps / sweep.n_neg
    return float(sweep.thresholds[int(np.argmax(j))])


# --------------------------------------------------------------------------------------------
# Multiclass
# --------------------------------------------------------------------------------------------


def confusion_matrix(y: object, pred: object, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows true and columns predicted (sklearn's layout)."""
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise _invalid("n_classes", "a positive int", repr(n_classes))
    yt = _as_class_labels("y", y, n_classes)
    yp = _as_class_labels("pred", pred, n_classes)
    _check_same_length("y", yt, pred=yp)
    return np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def predict_labels(P: object, thresholds: float | None = None, pos_index: int = 1) -> np.ndarray:
    """Argmax labels; for binary with a threshold, pos_index when P[:, pos_index] >= threshold."""
    probs = _as_probs("P", P)
    if thresholds is None:
        return np.asarray(np.argmax(probs, axis=1))
    if probs.shape[1] != 2:
        raise _invalid(
            "thresholds",
            "None for a multiclass P (thresholds apply to binary tasks)",
            repr(thresholds),
        )
    pos = _check_pos_index(pos_index, 2)
    t = _check_threshold("thresholds", thresholds)
    return np.where(probs[:, pos] >= t, pos, 1 - pos)


def _check_y_P(y: object, P: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (y, P) pair."""
    probs = _as_probs("P", P)
    labels = _as_class_labels("y", y, probs.shape[1])
    _check_same_length("y", labels, P=probs)
    if labels.size == 0:
        raise _invalid("y", "at least one sample", "an empty array")
    return labels, probs


def one_vs_rest_curves(y: object, P: object) -> dict[int, dict[str, object]]:
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
            entry.update(fpr=fpr, tpr=tpr, thresholds=thr, roc_auc=_sweep_auc(sweep),
                         precision=prec, recall=rec, pr_thresholds=pthr,
                         average_precision=_sweep_ap(sweep))
        else:
            empty = np.empty(0)
            entry.update(fpr=empty, tpr=empty, thresholds=empty, roc_auc=math.nan,
                         precision=empty, recall=empty, pr_thresholds=empty,
                         average_precision=_sweep_ap(sweep) if sweep.n_pos > 0 else math.nan)
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


def micro_macro_roc(y: object, P: object) -> dict[str, dict[str, object]]:
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
        raise _invalid("y", "at least one class with both positives and negatives", "none")
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
        raise _invalid("metric", "a metric name or a callable", repr(name))
    key = _METRIC_ALIASES.get(name, name)
    if key not in allowed:
        raise _invalid("metric", f"one of {sorted(allowed)}", repr(name))
    return key


def classification_summary(
    y: object, P: object, threshold: float | None = None, pos_index: int = 1
) -> dict[str, float]:
    """Leaderboard metrics (binary at the threshold; multiclass macro-averaged, OvR AUCs)."""
    labels, probs = _check_y_P(y, P)
    pos = _check_pos_index(pos_index, probs.shape[1]) if probs.shape[1] == 2 else 0
    return _point_metrics(labels, probs, threshold, pos, LEADERBOARD_METRICS)


# --------------------------------------------------------------------------------------------
# Bootstrap engine (see the module docstring).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RankPrep:
    """Binned sufficient statistics of one ranking, for weighted AUC/AP replicates."""

    cell: np.ndarray  # per sample, original order: bin * 2 + label
    n_cells: int
    n_pos: np.ndarray  # per bin
    n_neg: np.ndarray
    kappa: np.ndarray  # within-bin fraction of (pos, neg) pairs ordered correctly (ties 1/2)
    rp_mean: np.ndarray  # AP moments of within-bin cumulative counts at the positives
    rn_mean: np.ndarray
    suu: np.ndarray
    suv: np.ndarray
    svv: np.ndarray
    exact_auc: float  # on the unresampled data (NaN when one class is missing)
    exact_ap: float
    ap_shift: float = 0.0


def _bin_starts(n: int, max_bins: int) -> np.ndarray:
    """Candidate bin starts: single samples at the top, then growing to n / max_bins."""
    cap = max(1, math.ceil(n / max_bins))
    starts = []
    pos = 0
    # Precision changes fastest at the top of the ranking, so bins grow with the depth
    # (at most 1/16 of it) until they reach the cap.
    while pos < n:
        starts.append(pos)
        pos += min(cap, max(1, pos // 16))
    return np.asarray(starts, dtype=np.int64)


def _rank_prep(yb: np.ndarray, s: np.ndarray, max_bins: int, pred_pos: np.ndarray | None) -> _RankPrep:
    """Sort once and reduce one ranking to per-bin statistics."""
    n = s.size
    # Any order within ties will do (ties are grouped below), so the fast unstable sort is fine.
    order = np.argsort(-s)
    ss = s[order]
    ys = yb[order].astype(np.int64)
    new_block = np.r_[True, ss[1:] != ss[:-1]]
    block_starts = np.flatnonzero(new_block)
    block_id = np.cumsum(new_block) - 1
    cuts = _bin_starts(n, max_bins)
    if pred_pos is not None:
        # When the prediction is "score >= t", make t a bin edge so no bin straddles it.
        k = int(pred_pos.sum())
        if 0 < k < n and pred_pos[order[:k]].all():
            cuts = np.union1d(cuts, [k])
    j = np.searchsorted(block_starts, cuts, side="left")
    bin_start = np.unique(block_starts[j[j < block_starts.size]])  # ties never split
    nb = bin_start.size
    marker = np.zeros(n, dtype=np.int64)
    marker[bin_start] = 1
    bin_of = np.cumsum(marker) - 1
    cp0 = np.r_[0, np.cumsum(ys)]  # positives before position i
    cn0 = np.arange(n + 1) - cp0
    ends = np.r_[block_starts[1:], n]  # one past the end of each block
    block_end = ends[block_id]
    first = bin_start[bin_of]
    rp = cp0[block_end] - cp0[first]  # positives in bin up to the end of own block
    rn = cn0[block_end] - cn0[first]
    n_pos = np.bincount(bin_of, weights=ys, minlength=nb)
    n_neg = np.bincount(bin_of, minlength=nb) - n_pos
    is_pos = ys == 1
    bp = bin_of[is_pos]
    tied_neg = (cn0[block_end] - cn0[block_starts[block_id]])[is_pos]
    psi = (n_neg[bp] - rn[is_pos]) + 0.5 * tied_neg
    psi_bin = np.bincount(bp, weights=psi, minlength=nb)
    rpp, rnp = rp[is_pos].astype(np.float64), rn[is_pos].astype(np.float64)
    rp_mean = _safe_div(np.bincount(bp, weights=rpp, minlength=nb), n_pos)
    rn_mean = _safe_div(np.bincount(bp, weights=rnp, minlength=nb), n_pos)
    u = rpp - rp_mean[bp]
    v = rnp - rn_mean[bp]
    cell = np.empty(n, dtype=np.int64)
    cell[order] = bin_of * 2 + ys
    # Exact point values from the block-end counts (integer arithmetic, as make_sweep).
    tps, fps = cp0[ends], cn0[ends]
    P, N = int(cp0[-1]), int(cn0[-1])
    exact_auc = (float(np.dot(np.diff(np.r_[0, fps]), tps + np.r_[0, tps[:-1]]) / (2.0 * P * N))
                 if P and N else math.nan)
    exact_ap = float(np.dot(np.diff(np.r_[0, tps]), tps / ends) / P) if P else math.nan
    prep = _RankPrep(
        cell, 2 * nb, n_pos, n_neg, _safe_div(psi_bin, n_pos * n_neg), rp_mean, rn_mean,
        np.bincount(bp, weights=u * u, minlength=nb),
        np.bincount(bp, weights=u * v, minlength=nb),
        np.bincount(bp, weights=v * v, minlength=nb),
        exact_auc, exact_ap,
    )
    if not P:
        return prep
    # Shift the (second-order accurate) binned AP so the unresampled value is exact.
    counts = np.bincount(prep.cell, minlength=prep.n_cells).astype(np.float64)[:, None]
    approx_ap = _rank_replicates(prep, counts, want_auc=False)["pr_auc"][0]
    return dataclasses.replace(prep, ap_shift=exact_ap - approx_ap)


def _rank_replicates(prep: _RankPrep, w: np.ndarray, want_auc: bool = True,
                     want_ap: bool = True) -> dict[str, np.ndarray]:
    """Weighted ROC AUC / AP for each column of cell weights w (n_cells, b)."""
    wn = w[0::2]
    wp = w[1::2]
    total_p = wp.sum(axis=0)
    total_n = wn.sum(axis=0)
    cp_excl = np.cumsum(wp, axis=0)
    cp_excl -= wp  # positive weight in higher bins
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if want_auc:
            num = np.einsum("ij,ij->j", wn, cp_excl) + np.einsum("ij,ij,i->j", wp, wn, prep.kappa)
            out["roc_auc"] = num / (total_p * total_n)
        if want_ap:
            tot = wp + wn
            ca_excl = np.cumsum(tot, axis=0)
            ca_excl -= tot
            alpha = wp * _safe_div(1.0, prep.n_pos)[:, None]
            beta = wn * _safe_div(1.0, prep.n_neg)[:, None]
            p0 = alpha * prep.rp_mean[:, None]
            p0 += cp_excl
            a0 = ca_excl
            a0 += alpha * prep.rp_mean[:, None]
            a0 += beta * prep.rn_mean[:, None]
            inv = np.divide(1.0, a0, out=np.zeros_like(a0), where=a0 > 0)  # a0 == 0 => alpha == 0
            contrib = p0 * inv
            contrib *= prep.n_pos[:, None]
            if prep.suu.any() or prep.svv.any():
                aa, ab = alpha * alpha, alpha * beta
                t_xy = aa * prep.suu[:, None] + ab * prep.suv[:, None]
                t_yy = aa * prep.suu[:, None] + 2 * ab * prep.suv[:, None] + beta * beta * prep.svv[:, None]
                inv2 = inv * inv
                contrib -= t_xy * inv2
                contrib += p0 * t_yy * inv2 * inv
            out["pr_auc"] = np.einsum("ij,ij->j", alpha, contrib) / total_p + prep.ap_shift
    return out


@dataclass(frozen=True)
class _ModelPrep:
    """A model reduced to partitions of the samples into cells (internal)."""

    n_classes: int
    pos_index: int
    conf_cell: np.ndarray  # true * K + pred
    ranks: tuple[_RankPrep, ...]  # binary: the positive class; multiclass: every class

    def partitions(self) -> list[tuple[np.ndarray, int]]:
        """(cell id per sample, number of cells) for each partition."""
        return [(self.conf_cell, self.n_classes**2)] + [(r.cell, r.n_cells) for r in self.ranks]


def _prepare_model(labels: np.ndarray, probs: np.ndarray, threshold: float | None, pos_index: int,
                   need_rank: bool, max_bins: int) -> _ModelPrep:
    """Reduce one model's predictions to cells (one sort per ranked class)."""
    K = probs.shape[1]
    pred = predict_labels(probs, threshold, pos_index)
    ranks: tuple[_RankPrep, ...] = ()
    if need_rank:
        if K == 2:
            ranks = (_rank_prep(labels == pos_index, probs[:, pos_index], max_bins, pred == pos_index),)
        else:
            # K rankings per resample: a quarter of the bins each keeps the cost near the
            # binary case, and the approximation error stays a few percent of the spread.
            per_class = max(64, max_bins // 4)
            ranks = tuple(_rank_prep(labels == k, probs[:, k], per_class, None) for k in range(K))
    return _ModelPrep(K, pos_index, labels * K + pred, ranks)


def _count_metrics(prep: _ModelPrep, conf: np.ndarray) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion-cell weights of shape (K*K, b)."""
    K = prep.n_classes
    cm = conf.reshape(K, K, -1)
    if K == 2:
        p, q = prep.pos_index, 1 - prep.pos_index
        return _binary_count_metrics(cm[q, q], cm[q, p], cm[p, q], cm[p, p])
    return _multiclass_count_metrics(np.moveaxis(cm, -1, 0))


def _undefined_mask(prep: _ModelPrep, conf: np.ndarray) -> dict[str, np.ndarray]:
    """Per binary metric, the resamples where its denominator is zero (the metric is undefined)."""
    if prep.n_classes != 2:
        return {}
    cm = conf.reshape(2, 2, -1)
    p, q = prep.pos_index, 1 - prep.pos_index
    tn, fp, fn, tp = cm[q, q], cm[q, p], cm[p, q], cm[p, p]
    no_pos, no_neg = tp + fn == 0, tn + fp == 0
    return {
        "sensitivity": no_pos, "specificity": no_neg, "fpr": no_neg, "youden_j": no_pos | no_neg,
        "precision": tp + fp == 0, "npv": tn + fn == 0, "f1": 2 * tp + fp + fn == 0,
    }


def _model_replicates(prep: _ModelPrep, weights: list[np.ndarray], metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Metric replicates of one model from its partition weights [(cells, b), ...]."""
    counts = _count_metrics(prep, weights[0])
    out = {m: counts[m] for m in metrics if m not in _RANK_METRICS}
    # A resample without, say, positives says nothing about sensitivity: NaN, left out of the
    # interval, rather than scikit-learn's zero_division value.
    for m, undefined in _undefined_mask(prep, weights[0]).items():
        if m in out and undefined.any():
            out[m] = np.where(undefined, np.nan, out[m])
    wanted = [m for m in metrics if m in _RANK_METRICS]
    if wanted:
        per_class = [
            _rank_replicates(r, w, "roc_auc" in wanted, "pr_auc" in wanted)
            for r, w in zip(prep.ranks, weights[1:])
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            for m in wanted:
                out[m] = np.nanmean(np.stack([pc[m] for pc in per_class]), axis=0)
    return out


def _prep_points(prep: _ModelPrep, metrics: Sequence[str]) -> dict[str, float]:
    """Exact metric values on the unresampled data, from the prepared model."""
    conf = np.bincount(prep.conf_cell, minlength=prep.n_classes**2).astype(np.float64)[:, None]
    counts = _count_metrics(prep, conf)
    out = {}
    for m in metrics:
        if m in _RANK_METRICS:
            vals = np.array([r.exact_auc if m == "roc_auc" else r.exact_ap for r in prep.ranks])
            if prep.n_classes == 2 and np.isnan(vals[0]):
                n_pos = int(prep.ranks[0].n_pos.sum())
                raise _invalid("y", f"both classes present for {m}",
                               f"{n_pos} positive and {prep.conf_cell.size - n_pos} negative samples")
            out[m] = float(np.nanmean(vals)) if not np.isnan(vals).all() else math.nan
        else:
            out[m] = float(counts[m][0])
    return out


def _point_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float | None, pos_index: int,
                   metrics: Sequence[str]) -> dict[str, float]:
    """Exact metric values on the unresampled data."""
    need_rank = any(m in _RANK_METRICS for m in metrics)
    return _prep_points(_prepare_model(labels, probs, threshold, pos_index, need_rank, 1), metrics)


def _chunks(n_boot: int, per_resample: int, prefer: int | None = None) -> Iterator[int]:
    """Chunk sizes: at most `prefer`, bounding memory at about _CHUNK_ELEMENTS numbers."""
    size = max(1, min(n_boot, prefer or n_boot, _CHUNK_ELEMENTS // max(per_resample, 1)))
    done = 0
    while done < n_boot:
        b = min(size, n_boot - done)
        yield b
        done += b


def _joint_cells(partitions: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint cell per sample across partitions: (inverse, joint sizes, joint-to-cell maps)."""
    n = partitions[0][0].size
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for cell, n_cells in partitions:
        if radix * n_cells > max(4 * n, 1 << 20):
            # Compress the key so far to keep it small (bincount below needs a small range).
            uniq, key = np.unique(key, return_inverse=True)
            key = key.reshape(-1).astype(np.int64)
            radix = uniq.size
        key = key * n_cells + cell
        radix *= n_cells
    if radix <= max(4 * n, 1 << 20):
        sizes = np.bincount(key, minlength=radix)
        present = np.flatnonzero(sizes)
        lookup = np.zeros(radix, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        inverse = lookup[key]
        sizes = sizes[present]
    else:
        _, inverse, sizes = np.unique(key, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
    first = np.zeros(sizes.size, dtype=np.int64)
    first[inverse[::-1]] = np.arange(n)[::-1]  # one sample of each joint cell
    maps = np.stack([cell[first] for cell, _ in partitions])
    return inverse, sizes, maps


def _partition_weight_chunks(
    partitions: list[tuple[np.ndarray, int]], groups: tuple[np.ndarray, int] | None,
    n_boot: int, seed: int | None, joint: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Iterator[list[np.ndarray]]:
    """Yield, per chunk of resamples, the cell weights (cells, b) of every partition.

    With ``joint`` (from _joint_cells, per-sample bootstrap only) the joint cell counts are drawn
    as one multinomial(n, sizes / n), which is exactly their bootstrap distribution; otherwise
    group multiplicities are drawn (multinomial over groups) and aggregated with sparse products.
    """
    n = partitions[0][0].size
    rng = np.random.default_rng(seed)
    if joint is not None:
        _, sizes, maps = joint
        n_joint = sizes.size
        p = sizes / n
        agg = [sparse.csr_matrix((np.ones(n_joint), (m, np.arange(n_joint))), shape=(c, n_joint))
               for m, (_, c) in zip(maps, partitions)]
        for b in _chunks(n_boot, n_joint):
            draws = np.ascontiguousarray(rng.multinomial(n, p, size=b).T, dtype=np.float64)
            yield [np.asarray(a @ draws) for a in agg]
        return
    codes, n_groups = groups if groups is not None else (np.arange(n), n)
    # The products below cost one read of a group's row of counts per (sample, partition):
    # CSC matrices read those rows in order and scatter into a small output (a few partitions
    # at a time, so it stays in cache), and float32 halves the traffic. float32 is exact here:
    # every sum is an integer below 2**24.
    dtype = np.float32 if n < 2**23 else np.float64
    blocks: list[tuple[sparse.csc_matrix, list[int]]] = []
    start = 0
    while start < len(partitions):
        stop, total = start, 0
        while stop < len(partitions) and (stop == start or total + partitions[stop][1] <= 20_000):
            total += partitions[stop][1]
            stop += 1
        block_sizes = [c for _, c in partitions[start:stop]]
        offsets = np.cumsum([0, *block_sizes])
        rows = np.concatenate([cell + off for (cell, _), off in zip(partitions[start:stop], offsets)])
        cols = np.tile(codes, stop - start)
        h = sparse.csc_matrix((np.ones(rows.size, dtype=dtype), (rows, cols)), shape=(int(offsets[-1]), n_groups))
        blocks.append((h, offsets.tolist()))
        start = stop
    total_cells = sum(c for _, c in partitions)
    # Products run 32 resamples at a time (the scatter target stays in cache); the metrics
    # afterwards run on bigger batches, since their cost is mostly per call.
    batch = max(32, min(n_boot, _CHUNK_ELEMENTS // max(total_cells, 1)))
    for big in _chunks(n_boot, n_groups, batch):
        parts: list[list[np.ndarray]] = []
        for b in _chunks(big, n_groups, 32):
            counts = np.empty((b, n_groups), dtype=dtype)
            for i in range(b):
                counts[i] = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
            counts_t = np.ascontiguousarray(counts.T)
            parts.append([np.asarray(h @ counts_t) for h, _ in blocks])
        out: list[np.ndarray] = []
        for j, (_, block_offsets) in enumerate(blocks):
            w = np.hstack([p[j] for p in parts]).astype(np.float64)
            out.extend(w[a:z] for a, z in zip(block_offsets[:-1], block_offsets[1:]))
        yield out


def _check_boot_args(n_boot: int, alpha: float) -> None:
    """Validate the resample count and the interval level."""
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise _invalid("n_boot", "a positive int", repr(n_boot))
    if not 0.0 < float(alpha) < 1.0:
        raise _invalid("alpha", "a number in (0, 1)", repr(alpha))


def _resolve_metrics(metrics: Sequence[str] | str | None, n_classes: int) -> list[str]:
    """Normalise a metric list for a binary or multiclass task."""
    allowed = BINARY_METRICS if n_classes == 2 else MULTICLASS_METRICS
    if metrics is None:
        return list(LEADERBOARD_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    for m in metrics:
        key = _normalize_metric(m, allowed)
        if key not in out:
            out.append(key)
    return out


def _check_models(y: object, probs_by_model: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validate labels and every model's probabilities against them."""
    if not isinstance(probs_by_model, Mapping) or not probs_by_model:
        raise _invalid("probs_by_model", "a non-empty dict {model name: P}", type(probs_by_model).__name__)
    probs: dict[str, np.ndarray] = {}
    labels = np.empty(0, dtype=np.int64)
    shape: tuple[int, ...] = ()
    for name, P in probs_by_model.items():
        arr = _as_probs(f"probs_by_model[{name!r}]", P)
        if not probs:
            labels = _as_class_labels("y", y, arr.shape[1])
            _check_same_length("y", labels, **{f"probs_by_model[{name!r}]": arr})
            if labels.size == 0:
                raise _invalid("y", "at least one sample", "an empty array")
            shape = arr.shape
        if arr.shape != shape:
            raise _invalid(f"probs_by_model[{name!r}]", f"shape {shape} like the first model",
                           f"shape {arr.shape}")
        probs[name] = arr
    return labels, probs


def _bootstrap_core(
    labels: np.ndarray, probs: dict[str, np.ndarray], groups: object, mets: list[str], n_boot: int,
    seed: int | None, thresholds: Mapping[str, float | None], pos: int, paired: bool, max_bins: int,
) -> tuple[dict[str, _ModelPrep], dict[str, dict[str, np.ndarray]]]:
    """Prepare every model once and compute its replicates (validated inputs)."""
    if not isinstance(max_bins, (int, np.integer)) or max_bins < 1:
        raise _invalid("max_bins", "a positive int", repr(max_bins))
    codes = _group_codes(groups, labels.size)
    need_rank = any(m in _RANK_METRICS for m in mets)
    preps = {name: _prepare_model(labels, P, thresholds.get(name), pos, need_rank, max_bins)
             for name, P in probs.items()}
    results: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in mets} for name in preps}

    def run(names: list[str], joint: tuple | None) -> None:
        parts: list[tuple[np.ndarray, int]] = []
        spans = []
        for name in names:
            p = preps[name].partitions()
            spans.append((len(parts), len(parts) + len(p)))
            parts.extend(p)
        for chunk in _partition_weight_chunks(parts, codes, n_boot, seed, joint):
            for name, (a, b) in zip(names, spans):
                for m, v in _model_replicates(preps[name], chunk[a:b], mets).items():
                    results[name][m].append(v)

    def joint_of(names: list[str]) -> tuple | None:
        if codes is not None:
            return None
        joint = _joint_cells([p for name in names for p in preps[name].partitions()])
        return joint if joint[1].size <= _JOINT_CELL_LIMIT else None

    if paired:
        names = list(preps)
        run(names, joint_of(names))
    else:
        # A model whose joint cells are few is resampled alone (exact multinomial, cheap); the
        # others share one pass of group draws. Either way a model's replicates do not depend on
        # which other models are passed in.
        shared = []
        for name in preps:
            joint = joint_of([name])
            if joint is not None:
                run([name], joint)
            else:
                shared.append(name)
        if shared:
            run(shared, None)
    reps = {name: {m: np.concatenate(v) for m, v in r.items()} for name, r in results.items()}
    return preps, reps


def bootstrap_replicates(
    y: object,
    probs_by_model: Mapping[str, object],
    groups: object = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int | None = 0,
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
    paired: bool = False,
    max_bins: int = _MAX_BINS,
) -> dict[str, dict[str, np.ndarray]]:
    """Raw bootstrap replicates {model: {metric: (n_boot,)}}; paired=True shares every resample."""
    _check_boot_args(n_boot, 0.05)
    labels, probs = _check_models(y, probs_by_model)
    K = next(iter(probs.values())).shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    mets = _resolve_metrics(metrics, K)
    return _bootstrap_core(labels, probs, groups, mets, n_boot, seed, dict(thresholds or {}), pos,
                           paired, max_bins)[1]


def _percentile_interval(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval ignoring NaN replicates (resamples where the metric is undefined)."""
    finite = reps[~np.isnan(reps)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [50.0 * alpha, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def bootstrap_models(
    y: object,
    probs_by_model: Mapping[str, object],
    groups: object = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int | None = 0,
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
    alpha: float = 0.05,
    max_bins: int = _MAX_BINS,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Leaderboard CIs for several models: {model: {metric: (point, lo, hi)}}."""
    _check_boot_args(n_boot, alpha)
    labels, probs = _check_models(y, probs_by_model)
    K = next(iter(probs.values())).shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    mets = _resolve_metrics(metrics, K)
    preps, reps = _bootstrap_core(labels, probs, groups, mets, n_boot, seed, dict(thresholds or {}),
                                  pos, False, max_bins)
    out = {}
    for name, prep in preps.items():
        point = _prep_points(prep, mets)
        out[name] = {m: (point[m], *_percentile_interval(reps[name][m], alpha)) for m in mets}
    return out


def bootstrap_all(
    y: object,
    P: object,
    groups: object = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold: float | None = None,
    pos_index: int = 1,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float, float]]:
    """(point, lo, hi) for each metric from one shared set of group resamples."""
    res = bootstrap_models(y, {"model": P}, groups, metrics, n_boot, seed,
                           {"model": threshold}, pos_index, alpha)
    return res["model"]


def _group_index_lists(groups: object, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples sorted by group and the start offset of each group (CSR layout)."""
    codes = _group_codes(groups, n)
    if codes is None:
        return np.arange(n), np.arange(n + 1)
    c, G = codes
    order = np.argsort(c, kind="stable")
    return order, np.r_[0, np.cumsum(np.bincount(c, minlength=G))]


def _explicit_resamples(groups: object, n: int, n_boot: int, seed: int | None) -> Iterator[np.ndarray]:
    """Sample indices of each cluster-bootstrap resample (slow path for callables)."""
    order, offsets = _group_index_lists(groups, n)
    G = offsets.size - 1
    sizes = np.diff(offsets)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        drawn = rng.integers(0, G, G)
        lens = sizes[drawn]
        starts = np.repeat(offsets[drawn] - np.r_[0, np.cumsum(lens)[:-1]], lens)
        yield order[starts + np.arange(lens.sum())]


def bootstrap_ci(
    y: object,
    P: object,
    metric: str | Callable[[np.ndarray, np.ndarray], float],
    groups: object = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    threshold: float | None = None,
    pos_index: int = 1,
) -> tuple[float, float, float]:
    """(point, lo, hi): percentile CI resampling groups; a callable metric(y, P) uses a slow path."""
    _check_boot_args(n_boot, alpha)
    if callable(metric):
        labels, probs = _check_y_P(y, P)
        point = float(metric(labels, probs))
        reps = np.array([float(metric(labels[i], probs[i]))
                         for i in _explicit_resamples(groups, labels.size, n_boot, seed)])
        return (point, *_percentile_interval(reps, alpha))
    name = _normalize_metric(metric, BINARY_METRICS if np.shape(np.asarray(P))[-1] == 2 else MULTICLASS_METRICS)
    return bootstrap_all(y, P, groups, [name], n_boot, seed, threshold, pos_index, alpha)[name]


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def _check_prob_1d(y_true: object, prob: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate binary labels and probabilities in [0, 1]."""
    yb = _as_bool_labels("y_true", y_true)
    p = _as_scores("prob", prob)
    _check_same_length("y_true", yb, prob=p)
    if p.size == 0:
        raise _invalid("prob", "at least one sample", "an empty array")
    if p.min() < 0 or p.max() > 1:
        raise _invalid("prob", "probabilities in [0, 1]", f"min {p.min()}, max {p.max()}")
    return yb, p


def _binned_means(values: np.ndarray, outcome: np.ndarray, n_bins: int, strategy: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin mean value, mean outcome and count (NaN means for empty bins)."""
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise _invalid("n_bins", "a positive int", repr(n_bins))
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(values, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        raise _invalid("strategy", "'uniform' or 'quantile'", repr(strategy))
    # Same binning as sklearn.calibration.calibration_curve.
    ids = np.searchsorted(edges[1:-1], values)
    counts = np.bincount(ids, minlength=n_bins)
    mean_v = np.full(n_bins, np.nan)
    mean_o = np.full(n_bins, np.nan)
    nz = counts > 0
    mean_v[nz] = np.bincount(ids, weights=values, minlength=n_bins)[nz] / counts[nz]
    mean_o[nz] = np.bincount(ids, weights=outcome.astype(np.float64), minlength=n_bins)[nz] / counts[nz]
    return mean_v, mean_o, counts


def reliability_curve(
    y_true: object, prob: object, n_bins: int = 10, strategy: str = "uniform"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_pred, frac_pos, counts) per bin, NaN for empty bins; non-empty bins match sklearn."""
    yb, p = _check_prob_1d(y_true, prob)
    return _binned_means(p, yb, n_bins, strategy)


def _ece(mean_v: np.ndarray, mean_o: np.ndarray, counts: np.ndarray) -> float:
    """Count-weighted mean |outcome - value| over non-empty bins."""
    nz = counts > 0
    return float(np.sum(counts[nz] * np.abs(mean_o[nz] - mean_v[nz])) / counts.sum())


def expected_calibration_error(y_true: object, prob: object, n_bins: int = 15) -> float:
    """ECE of the positive-class probability over equal-width bins."""
    return _ece(*reliability_curve(y_true, prob, n_bins, "uniform"))


def brier_score(y_true: object, prob: object) -> float:
    """Mean squared error of the positive-class probability (= sklearn brier_score_loss)."""
    yb, p = _check_prob_1d(y_true, prob)
    return float(np.mean((p - yb) ** 2))


def multiclass_brier_score(y: object, P: object) -> float:
    """Mean over samples of the squared distance between P and the one-hot label."""
    labels, probs = _check_y_P(y, P)
    sq = (probs**2).sum(axis=1) - 2 * probs[np.arange(labels.size), labels] + 1.0
    return float(np.mean(sq))


def top_label_reliability(
    y: object, P: object, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean confidence, accuracy, counts) per bin of the top-label confidence max(P)."""
    labels, probs = _check_y_P(y, P)
    conf = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == labels
    return _binned_means(np.clip(conf, 0.0, 1.0), correct, n_bins, "uniform")


def top_label_ece(y: object, P: object, n_bins: int = 15) -> float:
    """Confidence-based (top-label) expected calibration error."""
    return _ece(*top_label_reliability(y, P, n_bins))


def confidence_histogram(prob: object, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) over [0, 1]; a 2-D P is reduced to its top-label confidence."""
    arr = np.asarray(prob, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.max(axis=1)
    arr = _as_scores("prob", arr)
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise _invalid("bins", "a positive int", repr(bins))
    return np.histogram(arr, bins=bins, range=(0.0, 1.0))


# --------------------------------------------------------------------------------------------
# Paired comparisons
# --------------------------------------------------------------------------------------------


def _delong_components(yb: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and structural components V10 (k, m), V01 (k, n) by midranks (Sun & Xu 2014)."""
    m = int(yb.sum())
    n = yb.size - m
    if m < 2 or n < 2:
        raise _invalid("y_true", "at least 2 positive and 2 negative samples for DeLong",
                       f"{m} positive and {n} negative")
    pos = scores[:, yb]
    neg = scores[:, ~yb]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.hstack([pos, neg]), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_variance(y_true: object, score: object) -> float:
    """DeLong variance of the ROC AUC (structural components, fast midrank algorithm)."""
    yb = _as_bool_labels("y_true", y_true)
    s = _as_scores("score", score)
    _check_same_length("y_true", yb, score=s)
    _, v10, v01 = _delong_components(yb, s[None, :])
    return float(np.var(v10[0], ddof=1) / v10.shape[1] + np.var(v01[0], ddof=1) / v01.shape[1])


def delong_test(
    y_true: object, score_a: object, score_b: object, alpha: float = 0.05
) -> dict[str, float]:
    """DeLong test of AUC_a - AUC_b on the same samples, with a (1 - alpha) Wald CI."""
    yb = _as_bool_labels("y_true", y_true)
    a = _as_scores("score_a", score_a)
    b = _as_scores("score_b", score_b)
    _check_same_length("y_true", yb, score_a=a, score_b=b)
    if not 0.0 < float(alpha) < 1.0:
        raise _invalid("alpha", "a number in (0, 1)", repr(alpha))
    aucs, cov = _delong_cov(yb, np.vstack([a, b]))
    return _delong_pair(aucs, cov, 0, 1, alpha)


def _delong_cov(yb: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of k score rows and their DeLong covariance matrix (k, k)."""
    aucs, v10, v01 = _delong_components(yb, scores)
    cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, cov


def _delong_pair(aucs: np.ndarray, cov: np.ndarray, i: int, j: int, alpha: float) -> dict[str, float]:
    """DeLong z-test and Wald CI of AUC_i - AUC_j from the joint covariance."""
    var = float(cov[i, i] + cov[j, j] - 2 * cov[i, j])
    se = math.sqrt(max(var, 0.0))
    diff = float(aucs[i] - aucs[j])
    if se > 0:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    else:
        # Identical rankings: no variance, and a difference can only be zero.
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return {"auc_a": float(aucs[i]), "auc_b": float(aucs[j]), "diff": diff, "se": se, "z": z,
            "p_value": p, "ci_low": diff - half, "ci_high": diff + half}


def mcnemar_test(y: object, pred_a: object, pred_b: object, exact: bool | None = None) -> dict[str, object]:
    """McNemar's test on the discordant pairs; exact binomial when b + c < 25 (as statsmodels)."""
    yt = _as_1d("y", y)
    pa = _as_1d("pred_a", pred_a)
    pb = _as_1d("pred_b", pred_b)
    _check_same_length("y", yt, pred_a=pa, pred_b=pb)
    ca = pa == yt
    cb = pb == yt
    b = int(np.count_nonzero(ca & ~cb))  # only model a right
    c = int(np.count_nonzero(~ca & cb))  # only model b right
    use_exact = (b + c < 25) if exact is None else bool(exact)
    if use_exact:
        statistic = float(min(b, c))
        p = float(min(1.0, 2 * stats.binom.cdf(statistic, b + c, 0.5)))
        method = "exact"
    else:
        # Chi-square with continuity correction, as statsmodels (correction=True).
        if b + c == 0:
            statistic, p = math.nan, 1.0
        else:
            statistic = (abs(b - c) - 1.0) ** 2 / (b + c)
            p = float(stats.chi2.sf(statistic, 1))
        method = "chi2"
    return {"b": b, "c": c, "statistic": statistic, "p_value": p, "method": method}


def holm_correction(p_values: object) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1); NaNs stay NaN and are not counted."""
    p = _as_1d("p_values", p_values).astype(np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise _invalid("p_values", "values in [0, 1]", f"min {p[ok].min()}, max {p[ok].max()}")
    vals = p[ok]
    m = vals.size
    order = np.argsort(vals, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(vals[order] * np.arange(m, 0, -1)))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def _paired_summary(diffs: np.ndarray, point: float, alpha: float) -> tuple[float, float, float, float]:
    """(diff, lo, hi, p) with the p-value from the bootstrap distribution's side of zero."""
    finite = diffs[~np.isnan(diffs)]
    lo, hi = _percentile_interval(finite, alpha)
    if finite.size == 0:
        return point, lo, hi, math.nan
    # Two-sided: twice the smaller tail beyond 0, with the +1 rule so p is never exactly 0.
    below = (np.count_nonzero(finite <= 0) + 1) / (finite.size + 1)
    above = (np.count_nonzero(finite >= 0) + 1) / (finite.size + 1)
    return point, lo, hi, float(min(1.0, 2 * min(below, above)))


def paired_bootstrap_diff(
    y: object,
    P_a: object,
    P_b: object,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "roc_auc",
    groups: object = None,
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    pos_index: int = 1,
    alpha: float = 0.05,
) -> tuple[float, float, float, float]:
    """(metric_a - metric_b, lo, hi, p) from the same group resamples for both models."""
    _check_boot_args(n_boot, alpha)
    labels, probs = _check_models(y, {"a": P_a, "b": P_b})
    if callable(metric):
        pa, pb = probs["a"], probs["b"]
        point = float(metric(labels, pa)) - float(metric(labels, pb))
        diffs = np.array([float(metric(labels[i], pa[i])) - float(metric(labels[i], pb[i]))
                          for i in _explicit_resamples(groups, labels.size, n_boot, seed)])
        return _paired_summary(diffs, point, alpha)
    K = probs["a"].shape[1]
    name = _normalize_metric(metric, BINARY_METRICS if K == 2 else MULTICLASS_METRICS)
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    th = {"a": threshold_a, "b": threshold_b}
    preps, reps = _bootstrap_core(labels, probs, groups, [name], n_boot, seed, th, pos, True, _MAX_BINS)
    point = _prep_points(preps["a"], [name])[name] - _prep_points(preps["b"], [name])[name]
    return _paired_summary(reps["a"][name] - reps["b"][name], point, alpha)


def pairwise_comparisons(
    y: object,
    probs_by_model: Mapping[str, object],
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
    groups: object = None,
    metrics: Sequence[str] = ("roc_auc", "balanced_accuracy"),
    n_boot: int = 1000,
    seed: int | None = 0,
    alpha: float = 0.05,
) -> list[dict[str, object]]:
    """Every pair (a, b): DeLong, McNemar and paired-bootstrap differences, Holm-adjusted over pairs.

    Binary rows carry auc_*/delong_* for the positive class; multiclass rows carry
    ``delong_by_class`` (one dict per class, Holm-adjusted per class over the pairs). Bootstrap
    keys are ``<metric>_diff``, ``<metric>_ci_low``, ``<metric>_ci_high``, ``<metric>_p``,
    ``<metric>_p_holm``; differences are a - b.
    """
    labels, probs = _check_models(y, probs_by_model)
    _check_boot_args(n_boot, alpha)
    names = list(probs)
    if len(names) < 2:
        raise _invalid("probs_by_model", "at least 2 models to compare", f"{len(names)} model")
    K = probs[names[0]].shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    thresholds = dict(thresholds or {})
    mets = _resolve_metrics(list(metrics), K) if metrics else []
    preds = {n: predict_labels(P, thresholds.get(n), pos) for n, P in probs.items()}
    if mets:
        preps, reps = _bootstrap_core(labels, probs, groups, mets, n_boot, seed, thresholds, pos, True,
                                      _MAX_BINS)
        points = {n: _prep_points(p, mets) for n, p in preps.items()}
    classes = [pos] if K == 2 else list(range(K))
    # Structural components per model once (one set of ranks each), not once per pair.
    delong: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
    for k in classes:
        yb = labels == k
        ok = 2 <= yb.sum() <= yb.size - 2
        delong[k] = _delong_cov(yb, np.vstack([probs[n][:, k] for n in names])) if ok else None
    rows: list[dict[str, object]] = []
    for a, b in itertools.combinations(names, 2):
        row: dict[str, object] = {"model_a": a, "model_b": b}
        by_class = []
        for k in classes:
            dk = delong[k]
            if dk is not None:
                aucs, cov = dk
                d = _delong_pair(aucs, cov, names.index(a), names.index(b), alpha)
            else:
                d = dict.fromkeys(("auc_a", "auc_b", "diff", "se", "z", "p_value", "ci_low", "ci_high"), math.nan)
            by_class.append({"class": k, **d})
        if K == 2:
            d = by_class[0]
            row.update(auc_a=d["auc_a"], auc_b=d["auc_b"], auc_diff=d["diff"], auc_se=d["se"],
                       auc_ci_low=d["ci_low"], auc_ci_high=d["ci_high"], delong_z=d["z"],
                       delong_p=d["p_value"])
        else:
            row["delong_by_class"] = by_class
        mc = mcnemar_test(labels, preds[a], preds[b])
        row.update(mcnemar_b=mc["b"], mcnemar_c=mc["c"], mcnemar_statistic=mc["statistic"],
                   mcnemar_p=mc["p_value"], mcnemar_method=mc["method"],
                   disagreement=float(np.mean(preds[a] != preds[b])))
        for m in mets:
            diff, lo, hi, p = _paired_summary(reps[a][m] - reps[b][m], points[a][m] - points[b][m], alpha)
            row.update({f"{m}_diff": diff, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_p": p})
        rows.append(row)
    if K == 2:
        for key in ["delong_p", "mcnemar_p"] + [f"{m}_p" for m in mets]:
            adj = holm_correction([r[key] for r in rows])
            for r, v in zip(rows, adj):
                r[f"{key}_holm"] = float(v)
    else:
        for key in ["mcnemar_p"] + [f"{m}_p" for m in mets]:
            adj = holm_correction([r[key] for r in rows])
            for r, v in zip(rows, adj):
                r[f"{key}_holm"] = float(v)
        for i in range(K):
            adj = holm_correction([r["delong_by_class"][i]["p_value"] for r in rows])  # type: ignore[index]
            for r, v in zip(rows, adj):
                r["delong_by_class"][i]["p_holm"] = float(v)  # type: ignore[index]
    return rows


# --------------------------------------------------------------------------------------------
# Disagreement and ensembles
# --------------------------------------------------------------------------------------------


def _stack_preds(preds_by_model: Mapping[str, object]) -> tuple[list[str], np.ndarray]:
    """Names and an (m, n) array of predicted labels, lengths checked."""
    if not isinstance(preds_by_model, Mapping) or not preds_by_model:
        raise _invalid("preds_by_model", "a non-empty dict {model name: labels}", type(preds_by_model).__name__)
    names = list(preds_by_model)
    arrays = [_as_1d(f"preds_by_model[{n!r}]", preds_by_model[n]) for n in names]
    for n, a in zip(names[1:], arrays[1:]):
        _check_same_length(f"preds_by_model[{names[0]!r}]", arrays[0], **{f"preds_by_model[{n!r}]": a})
    return names, np.vstack(arrays)


def disagreement_matrix(preds_by_model: Mapping[str, object]) -> tuple[list[str], np.ndarray]:
    """(names, M) with M[i, j] the fraction of samples where models i and j predict differently."""
    names, stacked = _stack_preds(preds_by_model)
    m = len(names)
    out = np.zeros((m, m))
    for i, j in itertools.combinations(range(m), 2):
        out[i, j] = out[j, i] = np.mean(stacked[i] != stacked[j]) if stacked.shape[1] else math.nan
    return names, out


def unique_correct(y: object, preds_by_model: Mapping[str, object]) -> dict[str, int]:
    """Per model, the number of samples that only this model classifies correctly."""
    names, stacked = _stack_preds(preds_by_model)
    yt = _as_1d("y", y)
    _check_same_length("y", yt, preds_by_model=stacked[0])
    correct = stacked == yt[None, :]
    only = correct & (correct.sum(axis=0) == 1)[None, :]
    return {n: int(c) for n, c in zip(names, only.sum(axis=1))}


def ensemble_mean(probs_by_model: Mapping[str, object]) -> np.ndarray:
    """Mean probability over models (the ensemble row of the leaderboard)."""
    if not isinstance(probs_by_model, Mapping) or not probs_by_model:
        raise _invalid("probs_by_model", "a non-empty dict {model name: P}", type(probs_by_model).__name__)
    arrays = {n: _as_probs(f"probs_by_model[{n!r}]", P) for n, P in probs_by_model.items()}
    first_name, first = next(iter(arrays.items()))
    for n, a in arrays.items():
        if a.shape != first.shape:
            raise _invalid(f"probs_by_model[{n!r}]", f"shape {first.shape} like {first_name!r}", f"shape {a.shape}")
    return np.asarray(np.mean(np.stack(list(arrays.values())), axis=0))
