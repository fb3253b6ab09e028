"""Metrics over repeated runs: spread, wins, rank stability (by hand) and the corrected resampled t-test
(scipy's paired t-test as the reference at zero correction; Nadeau & Bengio's formula by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pipeline import metrics as mt


def test_run_spread_by_hand():
    s = mt.run_spread([0.80, 0.90, 0.85, float("nan")])
    assert (s.mean, s.low, s.high, s.n) == (pytest.approx(0.85), 0.80, 0.90, 3)
    assert s.sd == pytest.approx(math.sqrt(((0.05) ** 2 + 0 + (0.05) ** 2) / 2))
    assert math.isnan(mt.run_spread([0.7]).sd) and mt.run_spread([]).n == 0


def test_wins_counts_paired_runs():
    assert mt.wins([0.9, 0.8, 0.7], [0.85, 0.8, 0.75]) == (1, 3)  # a tie is not a win
    assert mt.wins([0.9, float("nan")], [0.1, 0.2]) == (1, 1)
    with pytest.raises(ValueError, match=r"argument `b`.*Expected as many runs as `a` \(2\).*Received: 3"):
        mt.wins([1, 2], [1, 2, 3])


def test_rank_first_frequency_by_hand():
    # one run each: the bootstrap columns decide; column 2 is a tie between a and b (half a win each)
    reps = {"a": [[0.9, 0.7, 0.8, 0.6]], "b": [[0.8, 0.8, 0.8, 0.5]], "c": [[0.1, 0.1, 0.1, 0.9]]}
    assert mt.rank_first_frequency(reps) == pytest.approx({"a": 1.5 / 4, "b": 1.5 / 4, "c": 1 / 4})
    # two runs of "a": one always best, one always worst; a fair random run choice gives it ~half the draws
    reps2 = {"a": [[0.99] * 50, [0.0] * 50], "b": [[0.5] * 50]}
    freq = mt.rank_first_frequency(reps2, n_draws=4000)
    assert freq["a"] == pytest.approx(0.5, abs=0.03) and freq["a"] + freq["b"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number of bootstrap columns"):
        mt.rank_first_frequency({"a": [[1, 2]], "b": [[1, 2, 3]]})


def test_corrected_ttest_without_correction_is_scipys_paired_ttest():
    rng = np.random.default_rng(0)
    a, b = 0.85 + 0.02 * rng.standard_normal(5), 0.83 + 0.02 * rng.standard_normal(5)
    ours = mt.corrected_resampled_ttest(a - b)
    ref = stats.ttest_rel(a, b)
    assert ours.t == pytest.approx(ref.statistic) and ours.p == pytest.approx(ref.pvalue) and ours.df == 4
    ci = stats.t.interval(0.95, 4, loc=np.mean(a - b), scale=stats.sem(a - b))
    assert (ours.low, ours.high) == pytest.approx(ci)


def test_nadeau_bengio_correction_by_hand():
    # 10-fold CV: n_test / n_train = 1/9. Differences chosen so the numbers are easy to follow.
    d = np.array([0.02, 0.03, 0.01, 0.04, 0.00, 0.02, 0.03, 0.01, 0.02, 0.02])
    r = mt.corrected_resampled_ttest(d, test_train_ratio=1 / 9)
    s2 = np.var(d, ddof=1)
    t = d.mean() / math.sqrt((1 / 10 + 1 / 9) * s2)
    assert r.t == pytest.approx(t) and r.p == pytest.approx(2 * stats.t.sf(t, 9))
    plain = mt.corrected_resampled_ttest(d)
    assert r.p > plain.p  # the correction can only make the test more cautious
    with pytest.raises(ValueError, match=r"argument `test_train_ratio`.*Received: -1"):
        mt.corrected_resampled_ttest(d, test_train_ratio=-1)
    assert math.isnan(mt.corrected_resampled_ttest([0.1]).p)


def test_mean_curve_over_runs_is_sklearns_interpolated_roc_averaged():
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400).astype(bool)
    scores = [y * s + rng.normal(0, 1, 400) for s in (0.8, 1.2, 1.6)]
    roc = mt.mean_curve_over_runs(y, scores, kind="roc", grid_points=51)
    grid = np.linspace(0, 1, 51)
    rows = []
    for s in scores:  # scikit-learn's cross-validated ROC example, by hand
        fpr, tpr, _ = roc_curve(y, s)
        row = np.interp(grid, fpr, tpr)
        row[0] = 0.0
        rows.append(row)
    rows = np.array(rows)
    assert roc.n == 3 and roc.grid == pytest.approx(grid)
    assert roc.mean == pytest.approx(rows.mean(0)) and roc.sd == pytest.approx(rows.std(0, ddof=1))
    assert roc.low == pytest.approx(rows.min(0)) and roc.high == pytest.approx(rows.max(0))
    assert roc.areas == pytest.approx([roc_auc_score(y, s) for s in scores])
    pr = mt.mean_curve_over_runs(y, scores, kind="pr", grid_points=51)
    p0, r0, _ = precision_recall_curve(y, scores[0])
    assert pr.low[20] <= np.interp(grid[20], r0[::-1], p0[::-1]) <= pr.high[20]
    assert pr.areas[2] == pytest.approx(average_precision_score(y, scores[2]))
    assert np.isnan(mt.mean_curve_over_runs(y, scores[:1]).sd).all()  # one run: no SD
    assert mt.mean_curve_over_runs(np.zeros(4), [np.arange(4.0)]) is None  # one class: undefined
    with pytest.raises(ValueError, match=r"argument `kind`.*Received: 'det'"):
        mt.mean_curve_over_runs(y, scores, kind="det")
    with pytest.raises(ValueError, match=r"argument `scores`.*Expected 400 scores per run. Received: 3"):
        mt.mean_curve_over_runs(y, [np.zeros(3)])
