"""The point summary of a model: every leaderboard metric at once (binary at a threshold, multiclass macro)."""

from __future__ import annotations

import math

from numpy.typing import ArrayLike

from pipeline.metrics._bootstrap import UndefinedAUC, _point_metrics, _undefined_auc_metrics
from pipeline.metrics._multiclass import _check_y_P
from pipeline.metrics._validation import LEADERBOARD_METRICS, _check_pos_index


def classification_summary(
    y: ArrayLike,
    P: ArrayLike,
    *,
    threshold: float | None = None,
    pos_index: int = 1,
    undefined_auc: UndefinedAUC = "raise",
) -> dict[str, float]:
    """Leaderboard metrics (binary at the threshold; multiclass macro-averaged, OvR AUCs).

    `undefined_auc`: "raise" (ValueError when the labels hold one class) or "nan" (AUCs NaN, the threshold
    metrics computed as usual).
    """
    labels, probs = _check_y_P(y, P)
    K = probs.shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    undefined = _undefined_auc_metrics(labels, K, pos, LEADERBOARD_METRICS, undefined_auc)
    computed = [m for m in LEADERBOARD_METRICS if m not in undefined]
    out = _point_metrics(labels, probs, threshold, pos, computed)
    return {m: out.get(m, math.nan) for m in LEADERBOARD_METRICS}
