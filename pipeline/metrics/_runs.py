"""Repeated runs of a backbone (seeds, folds): spread over runs, rank stability, pairwise wins and a t-test
made for repeated training runs.

Two sources of noise decide whether "A beats B" is believable: the test sample (covered per run by the
grouped bootstrap, DeLong and McNemar) and the training itself (a rebuild with another seed moved a
demo AUC by 0.06). These functions measure the second and combine both for rank stability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class RunSpread:
    """A metric over the runs of one backbone: mean, sample SD (ddof 1; NaN with one run), range, values."""

    mean: float
    sd: float
    low: float
    high: float
    n: int
    values: tuple[float, ...]


def run_spread(values: ArrayLike) -> RunSpread:
    """Mean, SD (ddof=1), min and max of one backbone's per-run values (NaN runs left out)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if not len(v):
        nan = float("nan")
        return RunSpread(nan, nan, nan, nan, 0, ())
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
    return RunSpread(float(v.mean()), sd, float(v.min()), float(v.max()), int(len(v)), tuple(float(x) for x in v))


def wins(a: ArrayLike, b: ArrayLike) -> tuple[int, int]:
    """(k, n): in how many of the n paired runs A's value is strictly higher than B's (runs paired by position)."""
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"Invalid value for argument `b`. Expected as many runs as `a` ({len(x)}). Received: {len(y)}")
    ok = np.isfinite(x) & np.isfinite(y)
    return int(np.sum(x[ok] > y[ok])), int(ok.sum())


def rank_first_frequency(
    replicates: Mapping[str, ArrayLike], *, seed: int | None = 0, n_draws: int | None = None
) -> dict[str, float]:
    """How often each model ranks first over runs and bootstrap draws (ties share the win).

    `replicates[model]` is an (n_runs, n_boot) array of the ranking metric: row r is run r's bootstrap
    replicates, all computed on the same resamples of the test set (column b is the same resample for
    every model and run). Each draw takes bootstrap column b and, independently per model, one of its
    runs at random, so both the test-sample noise and the training noise move the ranking. Runs may
    differ in number between models; with one run each it is the bootstrap's rank-first frequency.
    """
    names = list(replicates)
    if not names:
        return {}
    reps = [np.atleast_2d(np.asarray(replicates[m], np.float64)) for m in names]
    n_boot = reps[0].shape[1]
    if any(r.shape[1] != n_boot for r in reps):
        raise ValueError(
            f"Invalid value for argument `replicates`. Expected the same number of bootstrap "
            f"columns for every model. Received: {[r.shape for r in reps]}"
        )
    rng = np.random.default_rng(seed)
    draws = n_draws or max(n_boot, 1)
    cols = np.arange(draws) % n_boot
    values = np.stack([r[rng.integers(0, r.shape[0], draws), cols] for r in reps], axis=1)  # (draws, models)
    values = np.where(np.isfinite(values), values, -np.inf)
    best = values.max(axis=1, keepdims=True)
    tied = (values == best) & np.isfinite(best)
    share = tied / np.maximum(tied.sum(axis=1, keepdims=True), 1)
    return {m: float(share[:, i].mean()) for i, m in enumerate(names)}


@dataclass(frozen=True)
class RunsTTest:
    """A paired t-test over runs: mean difference, its CI, t, degrees of freedom, two-sided p."""

    mean_diff: float
    low: float
    high: float
    t: float
    df: int
    p: float
    n_runs: int
    correction: float  # n_test / n_train of the Nadeau-Bengio correction (0: the plain paired t-test)


def corrected_resampled_ttest(diffs: ArrayLike, *, test_train_ratio: float = 0.0, alpha: float = 0.05) -> RunsTTest:
    """Nadeau and Bengio's corrected resampled t-test on per-run differences A - B (paired runs).

    Var = (1/J + n_test/n_train) * s^2 over J runs: the second term accounts for the overlap of the runs'
    training sets, which makes a plain t-test over cross-validation folds far too confident (Nadeau &
    Bengio 2003; Bouckaert & Frank 2004 for repeated k-fold). With `test_train_ratio` 0 it is the plain
    paired t-test (scipy.stats.ttest_rel), right for seeds evaluated on one fixed test set: it asks
    whether A beats B over training randomness on that test set.
    """
    from scipy import stats

    d = np.asarray(diffs, np.float64).ravel()
    d = d[np.isfinite(d)]
    if test_train_ratio < 0 or not math.isfinite(test_train_ratio):
        raise ValueError(
            f"Invalid value for argument `test_train_ratio`. Expected a finite number >= 0. "
            f"Received: {test_train_ratio!r}"
        )
    j = len(d)
    mean = float(d.mean()) if j else float("nan")
    if j < 2:
        nan = float("nan")
        return RunsTTest(mean, nan, nan, nan, max(j - 1, 0), nan, j, float(test_train_ratio))
    var = (1.0 / j + test_train_ratio) * float(np.var(d, ddof=1))
    se = math.sqrt(var)
    df = j - 1
    if se == 0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0 else 0.0
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return RunsTTest(mean, mean - half, mean + half, float(t), df, p, j, float(test_train_ratio))


def per_run_matrix(values: Mapping[str, Sequence[float]]) -> NDArray[np.float64]:
    """Models x runs array (NaN-padded) of per-run values, in the mapping's order."""
    width = max((len(v) for v in values.values()), default=0)
    out = np.full((len(values), width), np.nan)
    for i, v in enumerate(values.values()):
        out[i, : len(v)] = np.asarray(v, np.float64)
    return out


@dataclass(frozen=True)
class RunsCurve:
    """One backbone's curve averaged over runs on a common grid: mean, SD (ddof 1) and min/max per grid point."""

    kind: str  # "roc": TPR on an FPR grid; "pr": precision on a recall grid
    grid: NDArray[np.float64]
    mean: NDArray[np.float64]
    sd: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    areas: tuple[float, ...]  # each run's ROC AUC (roc) or average precision (pr)
    n: int


def mean_curve_over_runs(
    y_true: ArrayLike, scores: Sequence[ArrayLike], *, kind: str = "roc", grid_points: int = 101
) -> RunsCurve | None:
    """Vertical average of the runs' ROC (TPR at each FPR of a grid) or PR curves (precision at each recall).

    The runs score the same samples (`y_true` binary); each run's curve is scikit-learn's, linearly
    interpolated on the grid as in scikit-learn's cross-validated ROC example (TPR 0 at FPR 0). The band is
    the runs' min..max (or mean +/- SD) at each grid point: the training noise of the curve. None when the
    labels hold one class only.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    if kind not in ("roc", "pr"):
        raise ValueError(f"Invalid value for argument `kind`. Expected 'roc' or 'pr'. Received: {kind!r}")
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 2:
        raise ValueError(
            f"Invalid value for argument `grid_points`. Expected an integer >= 2. Received: {grid_points!r}"
        )
    y = np.asarray(y_true).astype(bool).ravel()
    if not len(scores):
        raise ValueError("Invalid value for argument `scores`. Expected at least one run. Received: 0 runs")
    if y.all() or not y.any():
        return None
    grid = np.linspace(0.0, 1.0, grid_points)
    rows, areas = [], []
    for s in scores:
        score = np.asarray(s, np.float64).ravel()
        if score.shape != y.shape:
            raise ValueError(
                f"Invalid value for argument `scores`. Expected {y.shape[0]} scores per run. Received: {score.shape[0]}"
            )
        if kind == "roc":
            fpr, tpr, _ = roc_curve(y, score)
            row = np.interp(grid, fpr, tpr)
            row[0] = 0.0
            areas.append(float(roc_auc_score(y, score)))
        else:
            precision, recall, _ = precision_recall_curve(y, score)
            row = np.interp(grid, recall[::-1], precision[::-1])  # recall comes out decreasing
            areas.append(float(average_precision_score(y, score)))
        rows.append(row)
    M = np.vstack(rows)
    sd = M.std(axis=0, ddof=1) if len(rows) > 1 else np.full(grid_points, np.nan)
    return RunsCurve(kind, grid, M.mean(axis=0), sd, M.min(axis=0), M.max(axis=0), tuple(areas), len(rows))
