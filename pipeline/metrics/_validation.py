"""Metric names and input validation shared by every metrics module: messages name the argument,
what was expected and what was received."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from pipeline.errors import invalid_argument

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
# The binary decision threshold when none is chosen: positive when P[positive] >= 0.5 (`predict_labels`).
DEFAULT_THRESHOLD = 0.5
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

# --------------------------------------------------------------------------------------------
# Input validation: messages name the argument, what was expected and what was received.
# --------------------------------------------------------------------------------------------


def _as_1d(name: str, a: ArrayLike) -> np.ndarray:
    """Return `a` as a 1-D array, or raise naming `name`."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise invalid_argument(name, "a 1-D array", f"an array of shape {arr.shape}")
    return arr


def _as_bool_labels(name: str, y: ArrayLike) -> np.ndarray:
    """Return binary labels (bool or 0/1) as a bool array."""
    arr = _as_1d(name, y)
    if arr.dtype == bool:
        return arr
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise invalid_argument(name, "binary labels (bool or 0/1)", f"an array of dtype {arr.dtype}")
    is_one: np.ndarray = np.asarray(arr == 1)
    ok = is_one | (arr == 0)
    if not ok.all():
        bad = np.unique(arr[~ok])[:5]
        raise invalid_argument(name, "binary labels (bool or 0/1)", f"values {bad.tolist()}")
    return is_one


def _as_scores(name: str, s: ArrayLike) -> np.ndarray:
    """Return a finite 1-D float64 score array."""
    arr = _as_1d(name, s)
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise invalid_argument(name, "numeric scores", f"an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise invalid_argument(name, "finite scores", f"{int((~np.isfinite(arr)).sum())} NaN/inf values")
    return arr


def _as_probs(name: str, P: ArrayLike) -> np.ndarray:
    """Return a finite (n, K>=2) float64 probability array."""
    arr = np.asarray(P)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise invalid_argument(name, "a 2-D array of shape (n_samples, n_classes >= 2)", f"shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise invalid_argument(name, "numeric probabilities", f"an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise invalid_argument(name, "finite probabilities", f"{int((~np.isfinite(arr)).sum())} NaN/inf values")
    return arr


def _as_class_labels(name: str, y: ArrayLike, n_classes: int) -> np.ndarray:
    """Return int class indices in [0, n_classes)."""
    arr = _as_1d(name, y)
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise invalid_argument(name, "integer class indices", f"an array of dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise invalid_argument(name, f"class indices in [0, {n_classes - 1}]", f"min {arr.min()}, max {arr.max()}")
    return arr


def _check_same_length(ref_name: str, ref: np.ndarray, **others: np.ndarray) -> None:
    """Raise when any array in `others` has a different length from `ref`."""
    for name, arr in others.items():
        if len(arr) != len(ref):
            raise invalid_argument(name, f"the same length as `{ref_name}` ({len(ref)})", f"length {len(arr)}")


def _check_pos_index(pos_index: int, n_classes: int) -> int:
    """Validate the positive-class column index."""
    if not isinstance(pos_index, (int, np.integer)) or not 0 <= pos_index < n_classes:
        raise invalid_argument("pos_index", f"an int in [0, {n_classes - 1}]", repr(pos_index))
    return int(pos_index)


def _check_threshold(name: str, threshold: object) -> float:
    """Validate a decision threshold (a real number, not NaN)."""
    try:
        t = float(threshold)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise invalid_argument(name, "a real number", repr(threshold)) from None
    if math.isnan(t):
        raise invalid_argument(name, "a real number", "nan")
    return t


def _check_fraction(name: str, value: float, low_open: bool = True) -> float:
    """Validate a value in (0, 1] (or [0, 1])."""
    v = float(value)
    if not ((0.0 < v) if low_open else (0.0 <= v)) or v > 1.0 or math.isnan(v):
        raise invalid_argument(name, f"a number in {'(' if low_open else '['}0, 1]", repr(value))
    return v


def _group_codes(groups: ArrayLike | None, n: int) -> tuple[np.ndarray, int] | None:
    """Map group ids to codes 0..G-1; None when every sample is its own group."""
    if groups is None:
        return None
    arr = _as_1d("groups", groups)
    if len(arr) != n:
        raise invalid_argument("groups", f"the same length as `y` ({n})", f"length {len(arr)}")
    _, codes = np.unique(arr, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    n_groups = int(codes.max()) + 1 if n else 0
    if n_groups == n:
        return None  # all singletons: the per-sample bootstrap, which has a faster path
    return codes, n_groups


def _safe_div(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (scikit-learn's default zero_division)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den != 0)
    return out
