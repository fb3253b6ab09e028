"""Explicit resampling: the general (slow) path for a metric given as a Python callable, one call per resample.

The grouped draws are the same as the fast engine's (`_bootstrap`), so a callable metric and a named one see
the same resamples for the same seed.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from numpy.typing import ArrayLike

from pipeline.metrics._bootstrap import (
    Estimate,
    _check_boot_args,
    _percentile_interval,
    bootstrap_all,
)
from pipeline.metrics._multiclass import _check_y_P, _normalize_metric
from pipeline.metrics._validation import BINARY_METRICS, MULTICLASS_METRICS, _group_codes


def _group_index_lists(groups: ArrayLike | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples sorted by group and the start offset of each group (CSR layout)."""
    codes = _group_codes(groups, n)
    if codes is None:
        return np.arange(n), np.arange(n + 1)
    c, G = codes
    order = np.argsort(c, kind="stable")
    return order, np.r_[0, np.cumsum(np.bincount(c, minlength=G))]


def _explicit_resamples(groups: ArrayLike | None, n: int, n_boot: int, seed: int | None) -> Iterator[np.ndarray]:
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
    y: ArrayLike,
    P: ArrayLike,
    metric: str | Callable[[np.ndarray, np.ndarray], float],
    groups: ArrayLike | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    threshold: float | None = None,
    pos_index: int = 1,
) -> Estimate:
    """(point, lo, hi): percentile CI resampling groups; a callable metric(y, P) uses a slow path."""
    _check_boot_args(n_boot, alpha)
    if callable(metric):
        labels, probs = _check_y_P(y, P)
        point = float(metric(labels, probs))
        reps = np.array(
            [float(metric(labels[i], probs[i])) for i in _explicit_resamples(groups, labels.size, n_boot, seed)]
        )
        return Estimate(point, *_percentile_interval(reps, alpha))
    name = _normalize_metric(metric, BINARY_METRICS if np.shape(np.asarray(P))[-1] == 2 else MULTICLASS_METRICS)
    return bootstrap_all(
        y, P, groups, metrics=[name], n_boot=n_boot, seed=seed, threshold=threshold, pos_index=pos_index, alpha=alpha
    )[name]
