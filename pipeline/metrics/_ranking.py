"""Sorted sweeps, ROC and precision-recall curves, their areas, and threshold choice.

One sort per (labels, score); then any threshold is answered in O(log n). Curves and areas equal
scikit-learn's (``roc_curve(drop_intermediate=False)``, ``precision_recall_curve``, ``roc_auc_score``,
``average_precision_score``), with ties."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pipeline.errors import invalid_argument
from pipeline.metrics._validation import (
    _as_1d,
    _as_bool_labels,
    _as_scores,
    _check_fraction,
    _check_same_length,
    _check_threshold,
    _safe_div,
)

# Points kept when a curve is drawn (pages and report alike): finer than a screen shows, light to send.
MAX_CURVE_POINTS = 2000

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


def make_sweep(y_true: ArrayLike, score: ArrayLike, sample_weight: ArrayLike | None = None) -> Sweep:
    """Sort once and accumulate TP/FP at each distinct score (the threshold-tuning core)."""
    y = _as_bool_labels("y_true", y_true)
    s = _as_scores("score", score)
    _check_same_length("y_true", y, score=s)
    if y.size == 0:
        raise invalid_argument("y_true", "at least one sample", "an empty array")
    w = None
    if sample_weight is not None:
        w = _as_scores("sample_weight", sample_weight)
        _check_same_length("y_true", y, sample_weight=w)
        if (w < 0).any():
            raise invalid_argument("sample_weight", "non-negative weights", f"min {w.min()}")
        keep = w != 0  # as scikit-learn: zero-weight samples add no threshold
        if not keep.any():
            raise invalid_argument("sample_weight", "at least one positive weight", "all zeros")
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
        raise invalid_argument("threshold", "real numbers", "NaN values")
    k = _counts_index(sweep, ts)
    tps = np.r_[0, sweep.tps][k]
    fps = np.r_[0, sweep.fps][k]
    return (sweep.n_neg - fps, fps, sweep.n_pos - tps, tps)


def _binary_count_metrics(tn: ArrayLike, fp: ArrayLike, fn: ArrayLike, tp: ArrayLike) -> dict[str, np.ndarray]:
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
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "threshold": float(threshold),
    }


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


def _require_both_classes(sweep: Sweep, what: str) -> None:
    """Raise the clear error for a curve or AUC on one class only."""
    if sweep.n_pos <= 0 or sweep.n_neg <= 0:
        raise invalid_argument(
            "y_true",
            f"both classes present for {what}",
            f"{sweep.n_pos} positive and {sweep.n_neg} negative samples",
        )


def roc_curve(sweep: Sweep) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(fpr, tpr, thresholds) like sklearn.metrics.roc_curve(drop_intermediate=False)."""
    _require_both_classes(sweep, "a ROC curve")
    fpr = np.r_[0.0, sweep.fps / sweep.n_neg]
    tpr = np.r_[0.0, sweep.tps / sweep.n_pos]
    return fpr, tpr, np.r_[np.inf, sweep.thresholds]


def pr_curve(sweep: Sweep) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(precision, recall, thresholds) like sklearn.metrics.precision_recall_curve."""
    if sweep.n_pos <= 0:
        raise invalid_argument("y_true", "at least one positive sample for a PR curve", "no positives")
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
        raise invalid_argument("y_true", "at least one positive sample for average precision", "no positives")
    d_tps = np.diff(np.r_[0, sweep.tps])
    return float(np.dot(d_tps, _safe_div(sweep.tps, sweep.tps + sweep.fps)) / sweep.n_pos)


def sweep_roc_auc(sweep: Sweep) -> float:
    """ROC AUC of an existing sweep (no re-sort); equals roc_auc on the same data."""
    return _sweep_auc(sweep)


def sweep_average_precision(sweep: Sweep) -> float:
    """Average precision of an existing sweep (no re-sort); equals average_precision."""
    return _sweep_ap(sweep)


def roc_auc(y_true: ArrayLike, score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """ROC AUC equal to sklearn.metrics.roc_auc_score (ties count one half)."""
    return _sweep_auc(make_sweep(y_true, score, sample_weight))


def average_precision(y_true: ArrayLike, score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Average precision equal to sklearn.metrics.average_precision_score."""
    return _sweep_ap(make_sweep(y_true, score, sample_weight))


def downsample_curve(
    x: ArrayLike, y: ArrayLike, thr: ArrayLike, max_points: int = MAX_CURVE_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep at most ~max_points points evenly spaced along the curve's length, ends included."""
    xa, ya, ta = (_as_1d(n, a) for n, a in (("x", x), ("y", y), ("thr", thr)))
    _check_same_length("x", xa, y=ya, thr=ta)
    if not isinstance(max_points, (int, np.integer)) or max_points < 2:
        raise invalid_argument("max_points", "an int >= 2", repr(max_points))
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


def curve_summary(sweep: Sweep, max_points: int = MAX_CURVE_POINTS) -> dict[str, Any]:
    """Downsampled ROC (fpr, tpr, thr) and PR (recall, precision, thr) of a sweep, with AUC, AP and prevalence."""
    out: dict[str, Any] = {
        "roc": None,
        "pr": None,
        "roc_auc": float("nan"),
        "ap": float("nan"),
        "prevalence": sweep.n_pos / sweep.n if sweep.n else float("nan"),
    }
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
        raise invalid_argument("y_true", "at least one positive sample", "no positives")
    tpr = sweep.tps / sweep.n_pos
    k = int(np.searchsorted(tpr, target, side="left"))  # tpr is non-decreasing
    return float(sweep.thresholds[min(k, tpr.size - 1)])


def youden_threshold(sweep: Sweep) -> float:
    """Observed score maximising Youden's J = TPR - FPR (the largest on ties)."""
    _require_both_classes(sweep, "Youden's J")
    j = sweep.tps / sweep.n_pos - sweep.fps / sweep.n_neg
    return float(sweep.thresholds[int(np.argmax(j))])
