"""Calibration: reliability curves, expected calibration error, Brier scores, confidence histograms."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pipeline.errors import invalid_argument
from pipeline.metrics._multiclass import _check_y_P
from pipeline.metrics._validation import _as_bool_labels, _as_scores, _check_same_length

# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def _check_prob_1d(y_true: ArrayLike, prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate binary labels and probabilities in [0, 1]."""
    yb = _as_bool_labels("y_true", y_true)
    p = _as_scores("prob", prob)
    _check_same_length("y_true", yb, prob=p)
    if p.size == 0:
        raise invalid_argument("prob", "at least one sample", "an empty array")
    if p.min() < 0 or p.max() > 1:
        raise invalid_argument("prob", "probabilities in [0, 1]", f"min {p.min()}, max {p.max()}")
    return yb, p


def _binned_means(
    values: np.ndarray, outcome: np.ndarray, n_bins: int, strategy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin mean value, mean outcome and count (NaN means for empty bins)."""
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise invalid_argument("n_bins", "a positive int", repr(n_bins))
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(values, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        raise invalid_argument("strategy", "'uniform' or 'quantile'", repr(strategy))
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
    y_true: ArrayLike, prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_pred, frac_pos, counts) per bin, NaN for empty bins; non-empty bins match sklearn."""
    yb, p = _check_prob_1d(y_true, prob)
    return _binned_means(p, yb, n_bins, strategy)


def _ece(mean_v: np.ndarray, mean_o: np.ndarray, counts: np.ndarray) -> float:
    """Count-weighted mean |outcome - value| over non-empty bins."""
    nz = counts > 0
    return float(np.sum(counts[nz] * np.abs(mean_o[nz] - mean_v[nz])) / counts.sum())


def expected_calibration_error(y_true: ArrayLike, prob: ArrayLike, n_bins: int = 15) -> float:
    """ECE of the positive-class probability over equal-width bins."""
    return _ece(*reliability_curve(y_true, prob, n_bins, "uniform"))


def brier_score(y_true: ArrayLike, prob: ArrayLike) -> float:
    """Mean squared error of the positive-class probability (= sklearn brier_score_loss)."""
    yb, p = _check_prob_1d(y_true, prob)
    return float(np.mean((p - yb) ** 2))


def multiclass_brier_score(y: ArrayLike, P: ArrayLike) -> float:
    """Mean over samples of the squared distance between P and the one-hot label."""
    labels, probs = _check_y_P(y, P)
    sq = (probs**2).sum(axis=1) - 2 * probs[np.arange(labels.size), labels] + 1.0
    return float(np.mean(sq))


def top_label_reliability(y: ArrayLike, P: ArrayLike, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean confidence, accuracy, counts) per bin of the top-label confidence max(P)."""
    labels, probs = _check_y_P(y, P)
    conf = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == labels
    return _binned_means(np.clip(conf, 0.0, 1.0), correct, n_bins, "uniform")


def top_label_ece(y: ArrayLike, P: ArrayLike, n_bins: int = 15) -> float:
    """Confidence-based (top-label) expected calibration error."""
    return _ece(*top_label_reliability(y, P, n_bins))


def confidence_histogram(prob: ArrayLike, bins: int = 10) -> tuple[NDArray[np.integer[Any]], NDArray[np.float64]]:
    """(counts, edges) over [0, 1]; a 2-D P is reduced to its top-label confidence."""
    arr = np.asarray(prob, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.max(axis=1)
    arr = _as_scores("prob", arr)
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise invalid_argument("bins", "a positive int", repr(bins))
    return np.histogram(arr, bins=bins, range=(0.0, 1.0))
