"""The point summary of a model: every leaderboard metric at once (binary at a threshold, multiclass macro)."""

from __future__ import annotations

from pipeline.metrics._bootstrap import _point_metrics
from pipeline.metrics._multiclass import _check_y_P
from pipeline.metrics._validation import LEADERBOARD_METRICS, _check_pos_index


def classification_summary(
    y: object, P: object, threshold: float | None = None, pos_index: int = 1
) -> dict[str, float]:
    """Leaderboard metrics (binary at the threshold; multiclass macro-averaged, OvR AUCs)."""
    labels, probs = _check_y_P(y, P)
    pos = _check_pos_index(pos_index, probs.shape[1]) if probs.shape[1] == 2 else 0
    return _point_metrics(labels, probs, threshold, pos, LEADERBOARD_METRICS)
