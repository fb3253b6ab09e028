"""Statistics in pipeline.metrics: the cluster bootstrap (exactness, approximation, coverage,
grouping), DeLong, McNemar, Holm, paired bootstrap and pairwise comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from pipeline import metrics as M
from pipeline.metrics._bootstrap import _model_replicates, _prepare_model


def _binormal(rng: np.random.Generator, n: int, d: float = 1.0, pos_rate: float = 0.5):
    """Labels and P = [1 - s, s] with logit(s) ~ N(d * y, 1): AUC = Phi(d / sqrt 2)."""
    y = (rng.random(n) < pos_rate).astype(int)
    z = rng.normal(size=n) + d * y
    s = 1 / (1 + np.exp(-z))
    return y, np.c_[1 - s, s], z


def _engine_replicates(y, P, w, metrics, threshold=None, max_bins=512):
    """Replicates of the bootstrap engine for explicit per-sample weights w (n,)."""
    prep = _prepare_model(np.asarray(y), np.asarray(P, float), threshold, 1 if P.shape[1] == 2 else 0, True, max_bins)
    weights = [np.bincount(c, weights=w, minlength=k).astype(float)[:, None] for c, k in prep.partitions()]
    return {m: float(v[0]) for m, v in _model_replicates(prep, weights, metrics).items()}


# ---------------------------------------------------------------------------- engine exactness


@pytest.mark.parametrize("seed", range(3))
def test_engine_equals_sklearn_on_explicit_repeats_binary(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.4).astype(int)
    s = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1), 2)  # ties
    P = np.c_[1 - s, s]
    groups = rng.integers(0, 60, n)
    # A cluster-bootstrap resample: multiplicities per group, spread to the samples.
    w = rng.multinomial(60, np.full(60, 1 / 60))[groups].astype(float)
    ry, rs = np.repeat(y, w.astype(int)), np.repeat(s, w.astype(int))
    for threshold in [None, 0.45]:
        rep = _engine_replicates(y, P, w, M.BINARY_METRICS, threshold)
        pred = (rs >= threshold) if threshold is not None else (rs > 0.5)
        assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(ry, rs), abs=1e-10)
        assert rep["pr_auc"] == pytest.approx(skm.average_precision_score(ry, rs), abs=1e-10)
        assert rep["roc_auc"] == pytest.approx(M.roc_auc(y, s, sample_weight=w), abs=1e-10)
        assert rep["accuracy"] == pytest.approx(skm.accuracy_score(ry, pred), abs=1e-12)
        assert rep["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(ry, pred), abs=1e-12)
        assert rep["sensitivity"] == pytest.approx(skm.recall_score(ry, pred), abs=1e-12)
        assert rep["specificity"] == pytest.approx(skm.recall_score(1 - ry, ~pred), abs=1e-12)
        assert rep["precision"] == pytest.approx(skm.precision_score(ry, pred, zero_division=0), abs=1e-12)
        assert rep["f1"] == pytest.approx(skm.f1_score(ry, pred), abs=1e-12)


def test_engine_equals_sklearn_on_explicit_repeats_multiclass():
    rng = np.random.default_rng(3)
    n, K = 300, 3
    y = rng.integers(0, K, n)
    logits = rng.normal(size=(n, K)) + np.eye(K)[y]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.multinomial(n, np.full(n, 1 / n)).astype(float)
    ry, rP = np.repeat(y, w.astype(int)), np.repeat(P, w.astype(int), axis=0)
    rep = _engine_replicates(y, P, w, M.MULTICLASS_METRICS, max_bins=4096)  # bins = single scores
    pred = rP.argmax(axis=1)
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(ry, pred), abs=1e-12)
    assert rep["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(ry, pred), abs=1e-12)
    assert rep["f1"] == pytest.approx(skm.f1_score(ry, pred, average="macro"), abs=1e-12)
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(ry, rP, multi_class="ovr"), abs=1e-10)
    assert rep["pr_auc"] == pytest.approx(skm.average_precision_score(np.eye(K)[ry], rP), abs=1e-10)


def test_binned_engine_is_close_to_exact_on_large_data():
    # Past max_bins distinct scores the rank replicates use score bins; their error must be tiny
    # next to the bootstrap spread itself.
    rng = np.random.default_rng(4)
    n = 20_000
    y, P, _ = _binormal(rng, n, d=1.0, pos_rate=0.1)
    exact, approx = [], []
    for _ in range(12):
        w = rng.multinomial(n, np.full(n, 1 / n)).astype(float)
        rep = _engine_replicates(y, P, w, ["roc_auc", "pr_auc"], max_bins=64)
        approx.append([rep["roc_auc"], rep["pr_auc"]])
        exact.append([M.roc_auc(y, P[:, 1], w), M.average_precision(y, P[:, 1], w)])
    exact, approx = np.array(exact), np.array(approx)
    spread = exact.std(axis=0)
    err = np.abs(exact - approx).max(axis=0)
    # The binned replicate is (about) the conditional mean of the exact one given the bin totals,
    # so its error is noise orthogonal to it: at 8% of the spread it narrows the interval by
    # less than 0.5%.
    assert err[0] < 0.08 * spread[0]
    assert err[1] < 0.12 * spread[1]
    # Unresampled, both are exact.
    unit = _engine_replicates(y, P, np.ones(n), ["roc_auc", "pr_auc"], max_bins=64)
    assert unit["roc_auc"] == pytest.approx(skm.roc_auc_score(y, P[:, 1]), abs=1e-10)
    assert unit["pr_auc"] == pytest.approx(skm.average_precision_score(y, P[:, 1]), abs=1e-10)


# ---------------------------------------------------------------------------- bootstrap API


def test_bootstrap_all_points_match_summary_and_intervals_bracket_them():
    rng = np.random.default_rng(5)
    y, P, _ = _binormal(rng, 800)
    res = M.bootstrap_all(y, P, n_boot=300, seed=1)
    summ = M.classification_summary(y, P)
    assert set(res) == set(M.LEADERBOARD_METRICS)
    for m, (point, lo, hi) in res.items():
        assert point == pytest.approx(summ[m], abs=1e-12)
        assert lo <= point <= hi, m
    # Same seed, same answer; alone or next to another model, same answer.
    assert M.bootstrap_all(y, P, n_boot=300, seed=1) == res
    both = M.bootstrap_models(y, {"m": P, "other": P[:, ::-1]}, n_boot=300, seed=1)
    assert both["m"] == res


def test_bootstrap_multiclass_and_groups_run_and_bracket_points():
    rng = np.random.default_rng(6)
    n, K = 900, 3
    y = rng.integers(0, K, n)
    logits = rng.normal(size=(n, K)) + 1.2 * np.eye(K)[y]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    groups = np.arange(n) // 3
    res = M.bootstrap_all(y, P, groups=groups, n_boot=200)
    summ = M.classification_summary(y, P)
    for m, (point, lo, hi) in res.items():
        assert point == pytest.approx(summ[m], abs=1e-12)
        assert lo <= point <= hi, m


def test_bootstrap_ci_string_and_callable_agree():
    rng = np.random.default_rng(7)
    y, P, _ = _binormal(rng, 400)
    point, lo, hi = M.bootstrap_ci(y, P, "roc_auc", n_boot=400)
    assert point == pytest.approx(skm.roc_auc_score(y, P[:, 1]))
    cpoint, clo, chi = M.bootstrap_ci(y, P, lambda yy, pp: skm.roc_auc_score(yy, pp[:, 1]), n_boot=400)
    assert cpoint == pytest.approx(point)
    # Different random draws, same distribution: endpoints agree to Monte Carlo error.
    assert abs(clo - lo) < 0.015 and abs(chi - hi) < 0.015
    groups = np.arange(400) // 4
    gp, glo, ghi = M.bootstrap_ci(y, P, lambda yy, pp: float(np.mean(pp.argmax(1) == yy)), groups=groups, n_boot=100)
    assert glo <= gp <= ghi


def test_coverage_of_the_percentile_interval():
    # 200 simulated data sets with known AUC and accuracy: the 95% interval must cover the
    # truth close to 95% of the time (binomial sd over 200 sets is 1.5 points).
    rng = np.random.default_rng(2024)
    true_auc = stats.norm.cdf(1 / math.sqrt(2))
    true_acc = 0.5 * stats.norm.cdf(1.0) + 0.5 * 0.5  # threshold 0.5 <=> logit >= 0
    hit_auc = hit_acc = 0
    sims = 200
    for i in range(sims):
        y, P, _ = _binormal(rng, 200)
        res = M.bootstrap_all(y, P, metrics=["roc_auc", "accuracy"], n_boot=300, seed=i, threshold=0.5)
        hit_auc += res["roc_auc"][1] <= true_auc <= res["roc_auc"][2]
        hit_acc += res["accuracy"][1] <= true_acc <= res["accuracy"][2]
    assert 0.89 <= hit_auc / sims <= 0.99
    assert 0.89 <= hit_acc / sims <= 0.99


def _clustered(rng: np.random.Generator, n_patients: int = 80, per_patient: int = 10):
    """Patients with one label each and a strong patient effect on every image's score."""
    y_pat = rng.random(n_patients) < 0.5
    effect = rng.normal(0, 1.2, n_patients)
    groups = np.repeat(np.arange(n_patients), per_patient)
    y = y_pat[groups].astype(int)
    z = 0.8 * y + effect[groups] + rng.normal(0, 0.5, groups.size)
    s = 1 / (1 + np.exp(-z))
    return y, np.c_[1 - s, s], groups


def test_grouping_widens_the_interval_for_correlated_samples():
    y, P, groups = _clustered(np.random.default_rng(8))
    flat = M.bootstrap_all(y, P, metrics=["roc_auc", "accuracy"], n_boot=400)
    grouped = M.bootstrap_all(y, P, groups=groups, metrics=["roc_auc", "accuracy"], n_boot=400)
    for m in ["roc_auc", "accuracy"]:
        assert grouped[m][0] == flat[m][0]
        assert (grouped[m][2] - grouped[m][1]) > 1.8 * (flat[m][2] - flat[m][1]), m


def test_grouped_bootstrap_covers_under_clustering():
    # With correlated images, resampling patients keeps nominal coverage of the patient-level
    # truth; the test checks it stays near 95% (the per-image bootstrap falls far below).
    rng = np.random.default_rng(9)
    big_y, big_P, _ = _clustered(rng, n_patients=20_000, per_patient=10)
    truth = skm.roc_auc_score(big_y, big_P[:, 1])
    hits = flat_hits = 0
    sims = 60
    for i in range(sims):
        y, P, groups = _clustered(rng, n_patients=60, per_patient=10)
        lo, hi = M.bootstrap_all(y, P, groups=groups, metrics=["roc_auc"], n_boot=200, seed=i)["roc_auc"][1:]
        flo, fhi = M.bootstrap_all(y, P, metrics=["roc_auc"], n_boot=200, seed=i)["roc_auc"][1:]
        hits += lo <= truth <= hi
        flat_hits += flo <= truth <= fhi
    assert hits / sims >= 0.85
    assert flat_hits < hits


def test_resamples_where_a_metric_is_undefined_are_left_out():
    # Two patients, one per class: half the resamples hold one class only. Those say nothing
    # about sensitivity or AUC and must not drag the interval to 0.
    y = np.array([0, 0, 1, 1])
    P = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    res = M.bootstrap_all(y, P, groups=["p1", "p1", "p2", "p2"], n_boot=100)
    assert res["sensitivity"] == (1.0, 1.0, 1.0)
    assert res["specificity"] == (1.0, 1.0, 1.0)
    assert res["roc_auc"] == (1.0, 1.0, 1.0)


def test_bootstrap_errors_are_clear():
    y, P, _ = _binormal(np.random.default_rng(0), 50)
    with pytest.raises(ValueError, match=r"argument `metric`\. Expected one of .*Received: 'auroc'"):
        M.bootstrap_ci(y, P, "auroc")
    with pytest.raises(ValueError, match=r"argument `n_boot`\. Expected a positive int\. Received: 0"):
        M.bootstrap_all(y, P, n_boot=0)
    with pytest.raises(
        ValueError, match=r"argument `groups`\. Expected the same length as `y` \(50\)\. Received: length 49"
    ):
        M.bootstrap_all(y, P, groups=np.arange(49))
    with pytest.raises(ValueError, match=r"argument `probs_by_model\['b'\]`\. Expected shape \(50, 2\)"):
        M.bootstrap_models(y, {"a": P, "b": P[:40]})
    with pytest.raises(ValueError, match=r"argument `y`\. Expected both classes present for roc_auc"):
        M.bootstrap_all(np.ones(50, int), P, metrics=["roc_auc"])


# ---------------------------------------------------------------------------- DeLong


def _brute_force_delong(y, scores):
    """AUCs and their covariance straight from the definition (double loops)."""
    pos = [i for i in range(len(y)) if y[i]]
    neg = [j for j in range(len(y)) if not y[j]]
    m, n = len(pos), len(neg)

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    v10 = np.array([[sum(psi(s[i], s[j]) for j in neg) / n for i in pos] for s in scores])
    v01 = np.array([[sum(psi(s[i], s[j]) for i in pos) / m for j in neg] for s in scores])
    aucs = v10.mean(axis=1)
    k = len(scores)
    cov = np.empty((k, k))
    for r in range(k):
        for c in range(k):
            s10 = sum((v10[r, i] - aucs[r]) * (v10[c, i] - aucs[c]) for i in range(m)) / (m - 1)
            s01 = sum((v01[r, j] - aucs[r]) * (v01[c, j] - aucs[c]) for j in range(n)) / (n - 1)
            cov[r, c] = s10 / m + s01 / n
    return aucs, cov


@pytest.mark.parametrize("seed", range(5))
def test_delong_variance_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 40
    y = rng.random(n) < 0.45
    y[:2], y[2:4] = True, False
    a = np.round(rng.normal(0.5 * y, 1), 1)  # ties, within and across classes
    b = np.round(a + rng.normal(0, 0.7, n), 1)
    aucs, cov = _brute_force_delong(y, [a, b])
    assert M.delong_variance(y, a) == pytest.approx(cov[0, 0], rel=1e-12)
    assert M.delong_variance(y, b) == pytest.approx(cov[1, 1], rel=1e-12)
    res = M.delong_test(y, a, b)
    assert res["auc_a"] == pytest.approx(skm.roc_auc_score(y, a), abs=1e-12)
    assert res["auc_b"] == pytest.approx(aucs[1], abs=1e-12)
    assert res["se"] == pytest.approx(math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), rel=1e-10)


def test_delong_hand_checked():
    # Positives a = (.9, .6, .4), negatives a = (.5, .1): V10 = (1, 1, .5), V01 = (2/3, 1),
    # AUC = 5/6, Var = (1/12)/3 + (1/18)/2 = 1/18.
    y = np.array([1, 1, 1, 0, 0])
    a = np.array([0.9, 0.6, 0.4, 0.5, 0.1])
    assert M.delong_variance(y, a) == pytest.approx(1 / 18)
    # b: positives (.8, .2, .7), negatives (.5, .6): V10 = (1, 0, 1), V01 = (2/3, 2/3), AUC 2/3.
    # S_aa = 1/18, S_bb = 1/9, S_ab = -1/36  =>  Var(diff) = 2/9.
    b = np.array([0.8, 0.2, 0.7, 0.5, 0.6])
    res = M.delong_test(y, a, b)
    assert res["auc_a"] == pytest.approx(5 / 6)
    assert res["auc_b"] == pytest.approx(2 / 3)
    assert res["diff"] == pytest.approx(1 / 6)
    assert res["se"] == pytest.approx(math.sqrt(2 / 9))
    z = (1 / 6) / math.sqrt(2 / 9)
    assert res["z"] == pytest.approx(z)
    assert res["p_value"] == pytest.approx(2 * stats.norm.sf(z))
    assert res["ci_low"] == pytest.approx(1 / 6 - 1.959963984540054 * math.sqrt(2 / 9))
    same = M.delong_test(y, a, a)
    assert same["diff"] == 0 and same["p_value"] == 1.0


def test_delong_agrees_with_a_large_paired_bootstrap():
    rng = np.random.default_rng(10)
    n = 400
    y = (rng.random(n) < 0.5).astype(int)
    z = rng.normal(size=n)
    sa = 1.0 * y + z + rng.normal(0, 0.6, n)
    sb = 0.8 * y + z + rng.normal(0, 0.6, n)
    Pa, Pb = (np.c_[1 - 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-s))] for s in (sa, sb))
    d = M.delong_test(y, Pa[:, 1], Pb[:, 1])
    reps = M.bootstrap_replicates(y, {"a": Pa, "b": Pb}, metrics=["roc_auc"], n_boot=4000, seed=3, paired=True)
    diffs = reps["a"]["roc_auc"] - reps["b"]["roc_auc"]
    assert 0.9 < diffs.std(ddof=1) / d["se"] < 1.1
    diff, lo, hi, p = M.paired_bootstrap_diff(y, Pa, Pb, "roc_auc", n_boot=4000, seed=3)
    assert diff == pytest.approx(d["diff"], abs=1e-12)
    assert 0.001 < d["p_value"] < 0.5  # a case where the comparison is informative
    assert abs(p - d["p_value"]) < 0.03
    assert abs(lo - d["ci_low"]) < 0.01 and abs(hi - d["ci_high"]) < 0.01


def test_delong_needs_two_of_each_class():
    with pytest.raises(
        ValueError, match=r"argument `y_true`\. Expected at least 2 positive and 2 negative.*Received: 1 positive"
    ):
        M.delong_variance([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3])


# ---------------------------------------------------------------------------- McNemar and Holm


def test_mcnemar_hand_checked():
    # 10 samples only model a gets right, 2 only model b: exact p = 2 * P(X <= 2 | 12, 1/2).
    y = np.zeros(20, int)
    pred_a = np.r_[np.zeros(10), np.ones(2), np.zeros(8)].astype(int)
    pred_b = np.r_[np.ones(10), np.zeros(2), np.zeros(8)].astype(int)
    res = M.mcnemar_test(y, pred_a, pred_b)
    assert (res["b"], res["c"], res["method"]) == (10, 2, "exact")
    assert res["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    chi = M.mcnemar_test(y, pred_a, pred_b, exact=False)
    assert chi["statistic"] == pytest.approx((10 - 2 - 1) ** 2 / 12)
    assert chi["p_value"] == pytest.approx(stats.chi2.sf(49 / 12, 1))


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_equals_statsmodels(seed):
    rng = np.random.default_rng(seed)
    n = [30, 80, 400][seed % 3]
    y = rng.integers(0, 3, n)
    pred_a = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
    pred_b = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    ca, cb = pred_a == y, pred_b == y
    table = [[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]]
    ours = M.mcnemar_test(y, pred_a, pred_b)
    ref = sm_mcnemar(table, exact=ours["b"] + ours["c"] < 25, correction=True)
    assert ours["statistic"] == pytest.approx(ref.statistic)
    assert ours["p_value"] == pytest.approx(ref.pvalue)
    for exact in (True, False):
        ref = sm_mcnemar(table, exact=exact, correction=True)
        ours = M.mcnemar_test(y, pred_a, pred_b, exact=exact)
        assert ours["statistic"] == pytest.approx(ref.statistic)
        assert ours["p_value"] == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("seed", range(5))
def test_holm_equals_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = rng.random(12) ** 3
    p[3] = p[7]  # ties
    np.testing.assert_allclose(M.holm_correction(p), multipletests(p, method="holm")[1], atol=1e-15)


def test_holm_hand_checked_and_nan():
    # Sorted .01, .02, .04 -> .03, .04, .04 (monotone), capped at 1.
    np.testing.assert_allclose(M.holm_correction([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
    np.testing.assert_allclose(M.holm_correction([0.5, 0.9]), [1.0, 1.0])
    out = M.holm_correction([0.01, np.nan, 0.04])
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])


# ---------------------------------------------------------------------------- paired comparisons


def test_paired_bootstrap_of_identical_models_is_zero():
    y, P, _ = _binormal(np.random.default_rng(11), 300)
    diff, lo, hi, p = M.paired_bootstrap_diff(y, P, P.copy(), "balanced_accuracy", n_boot=200)
    assert (diff, lo, hi, p) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_with_groups_and_thresholds():
    rng = np.random.default_rng(12)
    y, Pa, groups = _clustered(rng)
    Pb = np.clip(Pa + rng.normal(0, 0.1, Pa.shape), 0, 1)
    diff, lo, hi, p = M.paired_bootstrap_diff(
        y, Pa, Pb, "sensitivity", groups=groups, n_boot=300, threshold_a=0.4, threshold_b=0.6
    )
    sens_a = np.mean(Pa[y == 1, 1] >= 0.4)
    sens_b = np.mean(Pb[y == 1, 1] >= 0.6)
    assert diff == pytest.approx(sens_a - sens_b)
    assert lo <= diff <= hi and 0 < p <= 1


def test_pairwise_comparisons_binary():
    rng = np.random.default_rng(13)
    n = 500
    y = (rng.random(n) < 0.4).astype(int)
    base = rng.normal(size=n)
    probs = {}
    for name, d in [("vgg", 0.3), ("resnet", 1.2), ("effnet", 1.3)]:
        s = 1 / (1 + np.exp(-(d * y + base + rng.normal(0, 0.5, n))))
        probs[name] = np.c_[1 - s, s]
    rows = M.pairwise_comparisons(y, probs, thresholds={"vgg": 0.4}, n_boot=300)
    assert [(r["model_a"], r["model_b"]) for r in rows] == [("vgg", "resnet"), ("vgg", "effnet"), ("resnet", "effnet")]
    for r in rows:
        d = M.delong_test(y, probs[r["model_a"]][:, 1], probs[r["model_b"]][:, 1])
        assert r["delong_p"] == pytest.approx(d["p_value"])
        assert r["auc_diff"] == pytest.approx(r["roc_auc_diff"])
        for key in ["delong_p", "mcnemar_p", "roc_auc_p", "balanced_accuracy_p"]:
            assert r[f"{key}_holm"] >= r[key]
    adj = M.holm_correction([r["delong_p"] for r in rows])
    assert [r["delong_p_holm"] for r in rows] == list(adj)
    assert rows[0]["delong_p"] < 0.05  # vgg is clearly worse than resnet
    fast = M.pairwise_comparisons(y, probs, metrics=())  # DeLong and McNemar only
    assert [r["delong_p"] for r in fast] == [r["delong_p"] for r in rows]
    assert not any(k.startswith("roc_auc_") for k in fast[0])
    pred_vgg = M.predict_labels(probs["vgg"], thresholds=0.4)
    assert rows[0]["mcnemar_b"] + rows[0]["mcnemar_c"] == np.sum((pred_vgg == y) != (probs["resnet"].argmax(1) == y))


def test_pairwise_comparisons_multiclass():
    rng = np.random.default_rng(14)
    n, K = 300, 3
    y = rng.integers(0, K, n)
    probs = {}
    for name, d in [("a", 0.5), ("b", 1.5)]:
        logits = rng.normal(size=(n, K)) + d * np.eye(K)[y]
        probs[name] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = M.pairwise_comparisons(y, probs, metrics=["roc_auc"], n_boot=100)
    assert len(rows) == 1
    by_class = rows[0]["delong_by_class"]
    assert [c["class"] for c in by_class] == [0, 1, 2]
    for c in by_class:
        ref = M.delong_test(y == c["class"], probs["a"][:, c["class"]], probs["b"][:, c["class"]])
        assert c["p_value"] == pytest.approx(ref["p_value"])
    assert rows[0]["roc_auc_diff"] < 0
    with pytest.raises(ValueError, match=r"argument `probs_by_model`\. Expected at least 2 models"):
        M.pairwise_comparisons(y, {"a": probs["a"]})


def _correlated_pair(rng: np.random.Generator, n: int, d_a: float, d_b: float, noise: float = 0.75):
    """Two models sharing a per-sample effect z: score = d * y + z + N(0, noise).

    AUC = Phi(d / sqrt(2 (1 + noise^2))).
    """
    y = (rng.random(n) < 0.5).astype(int)
    z = rng.normal(size=n)
    out = []
    for d in (d_a, d_b):
        s = 1 / (1 + np.exp(-(d * y + z + rng.normal(0, noise, n))))
        out.append(np.c_[1 - s, s])
    return y, out[0], out[1]


def test_paired_difference_intervals_cover_and_tests_hold_their_level():
    # Correlated models with a known AUC difference: the paired-bootstrap percentile CI and DeLong's Wald CI
    # of the difference cover it about 95% of the time (binomial sd over 150 sets: 1.8 points); with equal
    # true AUCs both tests reject about 5% of the time.
    rng = np.random.default_rng(2025)
    scale = math.sqrt(2 * (1 + 0.75**2))
    true_diff = stats.norm.cdf(1.0 / scale) - stats.norm.cdf(0.6 / scale)
    sims = 150
    boot_hits = delong_hits = boot_rejects = delong_rejects = 0
    for i in range(sims):
        y, Pa, Pb = _correlated_pair(rng, 200, 1.0, 0.6)
        _, lo, hi, _ = M.paired_bootstrap_diff(y, Pa, Pb, "roc_auc", n_boot=300, seed=i)
        d = M.delong_test(y, Pa[:, 1], Pb[:, 1])
        boot_hits += lo <= true_diff <= hi
        delong_hits += d["ci_low"] <= true_diff <= d["ci_high"]
        y0, Qa, Qb = _correlated_pair(rng, 200, 0.8, 0.8)
        boot_rejects += M.paired_bootstrap_diff(y0, Qa, Qb, "roc_auc", n_boot=300, seed=i)[3] < 0.05
        delong_rejects += M.delong_test(y0, Qa[:, 1], Qb[:, 1])["p_value"] < 0.05
    assert 0.89 <= boot_hits / sims <= 0.99
    assert 0.89 <= delong_hits / sims <= 0.99
    assert boot_rejects / sims <= 0.11 and delong_rejects / sims <= 0.11
