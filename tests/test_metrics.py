"""pipeline.metrics against scikit-learn and brute force: sweeps, curves, thresholds, multiclass,
calibration, disagreement, and the clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from pipeline import metrics as M


def _tied_binary(seed: int, n: int = 400, decimals: int = 1, pos_rate: float = 0.35):
    """Random binary labels and scores with many ties (rounded), correlated with the label."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < pos_rate
    score = np.round(np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0, 1), decimals)
    return y, score


def _probs_from_score(score: np.ndarray) -> np.ndarray:
    """Binary P whose positive column is the score."""
    return np.c_[1 - score, score]


# Hand-checkable data: 3 positives, 3 negatives, one tie across classes at 0.6.
Y_TINY = np.array([1, 1, 1, 0, 0, 0])
S_TINY = np.array([0.9, 0.6, 0.2, 0.6, 0.4, 0.1])


# ---------------------------------------------------------------------------- sweep and counts


def test_tiny_counts_and_auc_by_hand():
    sweep = M.make_sweep(Y_TINY, S_TINY)
    np.testing.assert_array_equal(sweep.thresholds, [0.9, 0.6, 0.4, 0.2, 0.1])
    np.testing.assert_array_equal(sweep.tps, [1, 2, 2, 3, 3])
    np.testing.assert_array_equal(sweep.fps, [0, 1, 2, 2, 3])
    assert M.counts_at(sweep, 0.5) == (2, 1, 1, 2)  # tn, fp, fn, tp
    assert M.counts_at(sweep, 0.6) == (2, 1, 1, 2)  # ">=": the tie at 0.6 is positive
    assert M.counts_at(sweep, 0.95) == (3, 0, 3, 0)
    assert M.counts_at(sweep, -1.0) == (0, 3, 0, 3)
    # Pairs (pos, neg) ordered correctly: 0.9 beats 3, 0.6 beats 2 and ties 1, 0.2 beats 1.
    assert M.roc_auc(Y_TINY, S_TINY) == pytest.approx((3 + 2 + 0.5 + 1) / 9, abs=1e-15)
    # AP: precision at recall steps 1/3 (1/1), 2/3 (2/3 at the tie), 3/3 (3/5).
    assert M.average_precision(Y_TINY, S_TINY) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-15)


def test_tiny_metrics_at_by_hand():
    m = M.metrics_at(M.make_sweep(Y_TINY, S_TINY), 0.5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (2, 1, 1, 2)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 3)
    assert m["youden_j"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_counts_at_equals_brute_force(seed):
    y, s = _tied_binary(seed)
    sweep = M.make_sweep(y, s)
    probes = np.r_[np.unique(s), np.unique(s) + 0.05, np.unique(s) - 1e-9, -np.inf, np.inf, 2.0, -2.0]
    for t in probes:
        pred = s >= t
        brute = (int(np.sum(~pred & ~y)), int(np.sum(pred & ~y)), int(np.sum(~pred & y)), int(np.sum(pred & y)))
        assert M.counts_at(sweep, t) == brute
    # The vectorised form agrees with the scalar one.
    tn, fp, fn, tp = M.counts_at(sweep, probes)
    assert [(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(tn, fp, fn, tp)] == [
        M.counts_at(sweep, t) for t in probes
    ]


@pytest.mark.parametrize("seed", range(3))
def test_metrics_at_equals_sklearn(seed):
    y, s = _tied_binary(seed)
    sweep = M.make_sweep(y, s)
    for t in [0.2, 0.35, 0.5, 0.65, 0.8]:
        pred = s >= t
        m = M.metrics_at(sweep, t)
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
        assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
        assert m["specificity"] == pytest.approx(skm.recall_score(~y, ~pred), abs=1e-12)
        assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0), abs=1e-12)
        assert m["npv"] == pytest.approx(skm.precision_score(~y, ~pred, zero_division=0), abs=1e-12)
        assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0), abs=1e-12)


def test_metrics_at_zero_division_like_sklearn():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4])
    m = M.metrics_at(M.make_sweep(y, s), 0.9)  # nothing predicted positive
    assert m["precision"] == 0.0 == skm.precision_score(y, s >= 0.9, zero_division=0)
    assert m["f1"] == 0.0
    one_class = M.metrics_at(M.make_sweep(np.zeros(4, int), s), 0.25)
    assert one_class["balanced_accuracy"] == pytest.approx(0.5)  # specificity only, as sklearn


def test_counts_at_is_logarithmic_not_a_rescan():
    # The slider path must not touch the predictions: a sweep answers from its own arrays.
    y, s = _tied_binary(0, n=2000)
    sweep = M.make_sweep(y, s)
    s[:] = np.nan  # mutating the input afterwards changes nothing
    assert M.counts_at(sweep, 0.5) == M.counts_at(M.make_sweep(*_tied_binary(0, n=2000)), 0.5)


# ---------------------------------------------------------------------------- curves and AUCs


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_curves_and_scores_equal_sklearn(seed, decimals):
    y, s = _tied_binary(seed, n=500, decimals=decimals)
    sweep = M.make_sweep(y, s)
    fpr, tpr, thr = M.roc_curve(sweep)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-15)
    np.testing.assert_array_equal(thr, sk_thr)
    prec, rec, pthr = M.pr_curve(sweep)
    sk_p, sk_r, sk_t = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(prec, sk_p, atol=1e-15)
    np.testing.assert_allclose(rec, sk_r, atol=1e-15)
    np.testing.assert_array_equal(pthr, sk_t)
    assert abs(M.roc_auc(y, s) - skm.roc_auc_score(y, s)) < 1e-10
    assert abs(M.average_precision(y, s) - skm.average_precision_score(y, s)) < 1e-10
    assert M.sweep_roc_auc(sweep) == M.roc_auc(y, s)
    assert M.sweep_average_precision(sweep) == M.average_precision(y, s)


def test_weighted_scores_equal_sklearn_and_explicit_repeats():
    y, s = _tied_binary(7, n=300)
    w = np.random.default_rng(7).multinomial(300, np.full(300, 1 / 300))
    rep_y, rep_s = np.repeat(y, w), np.repeat(s, w)
    auc_w = M.roc_auc(y, s, sample_weight=w)
    assert abs(auc_w - skm.roc_auc_score(y, s, sample_weight=w)) < 1e-10
    assert abs(auc_w - skm.roc_auc_score(rep_y, rep_s)) < 1e-10
    ap_w = M.average_precision(y, s, sample_weight=w)
    assert abs(ap_w - skm.average_precision_score(rep_y, rep_s)) < 1e-10


def test_downsample_curve_keeps_ends_and_shape():
    rng = np.random.default_rng(0)
    y = rng.random(300_000) < 0.3
    s = rng.normal(size=y.size) + y
    fpr, tpr, thr = M.roc_curve(M.make_sweep(y, s))
    x2, y2, t2 = M.downsample_curve(fpr, tpr, thr, max_points=2000)
    assert len(x2) <= 2001
    assert (x2[0], y2[0], x2[-1], y2[-1]) == (fpr[0], tpr[0], fpr[-1], tpr[-1])
    assert np.all(np.diff(x2) >= 0)
    # The reduced curve is within a few thousandths of the full one everywhere.
    assert np.max(np.abs(np.interp(fpr, x2, y2) - tpr)) < 5e-3
    assert abs(np.trapezoid(y2, x2) - np.trapezoid(tpr, fpr)) < 1e-3
    small = M.downsample_curve([0, 1], [0, 1], [1, 0])
    assert [len(a) for a in small] == [2, 2, 2]


# ---------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 1.0])
def test_threshold_for_sensitivity_brute_force(seed, target):
    y, s = _tied_binary(seed)
    t = M.threshold_for_sensitivity(M.make_sweep(y, s), target)
    candidates = [c for c in np.unique(s) if np.sum((s >= c) & y) / y.sum() >= target]
    assert t == max(candidates)
    assert M.metrics_at(M.make_sweep(y, s), t)["sensitivity"] >= target


@pytest.mark.parametrize("seed", range(4))
def test_youden_threshold_brute_force(seed):
    y, s = _tied_binary(seed)
    t = M.youden_threshold(M.make_sweep(y, s))
    j = {c: np.sum((s >= c) & y) / y.sum() - np.sum((s >= c) & ~y) / (~y).sum() for c in np.unique(s)}
    best = max(j.values())
    assert t == max(c for c, v in j.items() if v == best)


def test_threshold_target_out_of_range_is_a_clear_error():
    sweep = M.make_sweep(Y_TINY, S_TINY)
    with pytest.raises(ValueError, match=r"argument `target`.*\(0, 1\].*Received: 1\.5"):
        M.threshold_for_sensitivity(sweep, 1.5)


# ---------------------------------------------------------------------------- multiclass


def _multiclass(seed: int, n: int = 600, K: int = 4):
    """Labels and rounded (tied) class probabilities that still sum to 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    logits = rng.normal(size=(n, K)) + 1.5 * np.eye(K)[y]
    P = np.exp(logits)
    P = np.round(P / P.sum(axis=1, keepdims=True), 2)  # ties
    # Put the rounding residue on each row's largest entry so rows still sum to 1 (sklearn checks).
    P[np.arange(n), P.argmax(axis=1)] += 1 - P.sum(axis=1)
    return y, P


@pytest.mark.parametrize("seed", range(3))
def test_confusion_matrix_equals_sklearn(seed):
    y, P = _multiclass(seed)
    pred = M.predict_labels(P)
    np.testing.assert_array_equal(M.confusion_matrix(y, pred, 4), skm.confusion_matrix(y, pred, labels=range(4)))


def test_predict_labels_binary_threshold_and_argmax():
    P = np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]])
    np.testing.assert_array_equal(M.predict_labels(P), [0, 0, 1])  # argmax, ties to class 0
    np.testing.assert_array_equal(M.predict_labels(P, thresholds=0.3), [1, 1, 1])
    np.testing.assert_array_equal(M.predict_labels(P, thresholds=0.6, pos_index=0), [0, 1, 1])
    with pytest.raises(ValueError, match=r"argument `thresholds`.*None for a multiclass"):
        M.predict_labels(np.full((2, 3), 1 / 3), thresholds=0.5)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_summary_equals_sklearn(seed):
    y, P = _multiclass(seed)
    pred = np.argmax(P, axis=1)
    summ = M.classification_summary(y, P)
    assert summ["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert summ["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    assert summ["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"), abs=1e-12)
    assert summ["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"), abs=1e-12)
    assert summ["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    spec = np.mean([skm.recall_score(y != k, pred != k) for k in range(4)])
    assert summ["specificity"] == pytest.approx(spec, abs=1e-12)
    assert abs(summ["roc_auc"] - skm.roc_auc_score(y, P, multi_class="ovr", average="macro")) < 1e-10
    onehot = np.eye(4)[y]
    assert abs(summ["pr_auc"] - skm.average_precision_score(onehot, P, average="macro")) < 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_binary_summary_equals_sklearn(seed):
    y, s = _tied_binary(seed)
    P = _probs_from_score(s)
    for threshold in [None, 0.45]:
        summ = M.classification_summary(y.astype(int), P, threshold=threshold)
        pred = P.argmax(axis=1) if threshold is None else (s >= threshold).astype(int)
        assert summ["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert summ["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
        assert summ["sensitivity"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
        assert summ["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0), abs=1e-12)
        assert summ["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
        assert abs(summ["roc_auc"] - skm.roc_auc_score(y, s)) < 1e-10
        assert abs(summ["pr_auc"] - skm.average_precision_score(y, s)) < 1e-10
    # pos_index=0 ranks by P[:, 0] with class 0 as the positive class.
    summ0 = M.classification_summary(y.astype(int), P, threshold=0.5, pos_index=0)
    assert abs(summ0["roc_auc"] - skm.roc_auc_score(~y, 1 - s)) < 1e-10


def test_one_vs_rest_and_micro_macro_equal_sklearn():
    y, P = _multiclass(5)
    curves = M.one_vs_rest_curves(y, P)
    for k in range(4):
        fpr, tpr, _ = skm.roc_curve(y == k, P[:, k], drop_intermediate=False)
        np.testing.assert_allclose(curves[k]["fpr"], fpr)
        np.testing.assert_allclose(curves[k]["tpr"], tpr)
        assert abs(curves[k]["roc_auc"] - skm.roc_auc_score(y == k, P[:, k])) < 1e-10
        assert abs(curves[k]["average_precision"] - skm.average_precision_score(y == k, P[:, k])) < 1e-10
    mm = M.micro_macro_roc(y, P)
    onehot = np.eye(4)[y]
    assert abs(mm["micro"]["roc_auc"] - skm.roc_auc_score(onehot, P, average="micro")) < 1e-10
    assert abs(mm["macro"]["roc_auc"] - skm.roc_auc_score(y, P, multi_class="ovr", average="macro")) < 1e-10
    # The macro curve starts at (0, 0), ends at (1, 1), and its area is close to the macro AUC.
    fx, fy = mm["macro"]["fpr"], mm["macro"]["tpr"]
    assert (fx[0], fy[0], fx[-1], fy[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert abs(np.trapezoid(fy, fx) - mm["macro"]["roc_auc"]) < 0.02


def test_missing_class_in_one_vs_rest_is_nan_not_an_error():
    y = np.array([0, 0, 1, 1, 0, 1])
    P = np.full((6, 3), 1 / 3)
    curves = M.one_vs_rest_curves(y, P)
    assert math.isnan(curves[2]["roc_auc"])
    assert curves[2]["fpr"].size == 0


# ---------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("seed", range(3))
def test_reliability_curve_equals_sklearn(strategy, seed):
    rng = np.random.default_rng(seed)
    prob = np.round(rng.beta(2, 3, 700), 2)
    y = rng.random(700) < prob
    mean_pred, frac_pos, counts = M.reliability_curve(y, prob, n_bins=10, strategy=strategy)
    sk_true, sk_pred = calibration_curve(y, prob, n_bins=10, strategy=strategy)
    nz = counts > 0
    np.testing.assert_allclose(mean_pred[nz], sk_pred, atol=1e-12)
    np.testing.assert_allclose(frac_pos[nz], sk_true, atol=1e-12)
    assert counts.sum() == 700
    assert np.isnan(mean_pred[~nz]).all()


def test_ece_and_brier():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    prob = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.6, 0.55, 0.45])
    assert M.brier_score(y, prob) == pytest.approx(skm.brier_score_loss(y, prob), abs=1e-15)
    # Two bins [0, .5], (.5, 1]: low bin mean .2625 with 1/4 positive, high bin .7125 with 3/4.
    assert M.expected_calibration_error(y, prob, n_bins=2) == pytest.approx(
        0.5 * abs(0.25 - 0.2625) + 0.5 * abs(0.75 - 0.7125)
    )
    perfect = np.r_[np.zeros(50), np.ones(50)]
    assert M.expected_calibration_error(perfect, perfect) == 0.0


def test_multiclass_calibration():
    y, P = _multiclass(2)
    P = P / P.sum(axis=1, keepdims=True)
    conf, acc, counts = M.top_label_reliability(y, P, n_bins=10)
    correct = P.argmax(axis=1) == y
    nz = counts > 0
    assert np.sum(counts[nz] * acc[nz]) == pytest.approx(correct.sum())
    ece = M.top_label_ece(y, P, n_bins=10)
    assert 0 <= ece <= 1
    assert ece == pytest.approx(np.sum(counts[nz] * np.abs(acc[nz] - conf[nz])) / y.size)
    brier = M.multiclass_brier_score(y, P)
    assert brier == pytest.approx(np.mean(np.sum((P - np.eye(4)[y]) ** 2, axis=1)))
    hist, edges = M.confidence_histogram(P, bins=5)
    assert hist.sum() == y.size and edges[0] == 0 and edges[-1] == 1


# ---------------------------------------------------------------------------- disagreement


def test_disagreement_unique_correct_and_ensemble():
    y = np.array([0, 1, 1, 0, 1])
    preds = {"a": np.array([0, 1, 0, 0, 1]), "b": np.array([1, 1, 1, 0, 0]), "c": np.array([0, 0, 0, 1, 1])}
    names, mat = M.disagreement_matrix(preds)
    assert names == ["a", "b", "c"]
    assert mat[0, 1] == pytest.approx(3 / 5) and mat[1, 0] == mat[0, 1]
    assert mat[0, 2] == pytest.approx(2 / 5) and np.all(np.diag(mat) == 0)
    # Sample 2 only b gets right; nothing is right for a alone; no sample is c's alone.
    assert M.unique_correct(y, preds) == {"a": 0, "b": 1, "c": 0}
    P1 = np.array([[0.2, 0.8], [0.6, 0.4]])
    P2 = np.array([[0.4, 0.6], [0.2, 0.8]])
    np.testing.assert_allclose(M.ensemble_mean({"x": P1, "y": P2}), [[0.3, 0.7], [0.4, 0.6]])


# ---------------------------------------------------------------------------- errors


def test_errors_name_the_argument_expected_and_received():
    with pytest.raises(
        ValueError, match=r"argument `score`\. Expected the same length as `y_true` \(6\)\. Received: length 5"
    ):
        M.make_sweep(Y_TINY, S_TINY[:5])
    with pytest.raises(
        ValueError,
        match=r"argument `y_true`\. Expected both classes present for ROC AUC\. "
        r"Received: 0 positive and 4",
    ):
        M.roc_auc([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(
        ValueError, match=r"argument `y_true`\. Expected binary labels \(bool or 0/1\)\. Received: values \[2\]"
    ):
        M.roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"argument `score`\. Expected finite scores\. Received: 1 NaN"):
        M.make_sweep([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match=r"argument `threshold`\. Expected a real number\. Received: nan"):
        M.counts_at(M.make_sweep(Y_TINY, S_TINY), float("nan"))
    with pytest.raises(ValueError, match=r"argument `P`\. Expected a 2-D array"):
        M.classification_summary([0, 1], [0.2, 0.8])
    with pytest.raises(ValueError, match=r"argument `y`\. Expected class indices in \[0, 1\]\. Received: min 0, max 3"):
        M.classification_summary([0, 3], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"argument `prob`\. Expected probabilities in \[0, 1\]"):
        M.brier_score([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match=r"argument `strategy`\. Expected 'uniform' or 'quantile'\. Received: 'x'"):
        M.reliability_curve([0, 1], [0.2, 0.8], strategy="x")
    with pytest.raises(ValueError, match=r"argument `y_true`\. Expected both classes present for a ROC curve"):
        M.roc_curve(M.make_sweep([1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match=r"argument `y`\. Expected both classes present for roc_auc"):
        M.classification_summary([1, 1, 1], [[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]])
    with pytest.raises(ValueError, match=r"argument `pos_index`\. Expected an int in \[0, 1\]\. Received: 2"):
        M.classification_summary([0, 1], [[0.2, 0.8], [0.4, 0.6]], pos_index=2)


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = "import sys; import pipeline.metrics; print('sklearn' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_curve_summary_matches_sklearn_and_downsamples():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from pipeline.metrics import curve_summary, make_sweep

    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 5000).astype(bool)
    s = np.round(rng.normal(y * 0.8, 1.0), 2)  # ties
    out = curve_summary(make_sweep(y, s), max_points=300)
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-10)
    assert out["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-10)
    assert out["prevalence"] == pytest.approx(y.mean())
    fpr, tpr, thr = out["roc"]
    assert len(fpr) <= 300 and fpr[0] == 0 and fpr[-1] == 1 and np.all(np.isfinite(thr))
    one_class = curve_summary(make_sweep(np.zeros(10, bool), np.arange(10.0)))
    assert one_class["roc"] is None and np.isnan(one_class["roc_auc"])


# ---------------------------------------------------------------- one source of truth


def test_decide_is_the_one_decision_rule():
    P = np.array([[0.6, 0.4], [0.4, 0.6], [0.5, 0.5], [np.nan, np.nan]])
    np.testing.assert_array_equal(M.decide(P, threshold=0.5, pos_index=1)[:3], [0, 1, 1])  # >= threshold is positive
    np.testing.assert_array_equal(M.decide(P, threshold=0.45, pos_index=0)[:3], [0, 1, 0])
    np.testing.assert_array_equal(M.decide(P[:3]), [0, 1, 0])  # no threshold: argmax
    np.testing.assert_array_equal(
        M.predict_labels(P[:3], thresholds=0.5, pos_index=1), M.decide(P[:3], threshold=0.5, pos_index=1)
    )
    P3 = np.array([[0.2, 0.5, 0.3]])
    assert M.decide(P3, threshold=0.9, pos_index=1).tolist() == [1]  # multiclass: thresholds do not apply
    assert int(M.decide(np.array([0.3, 0.7]), threshold=0.8, pos_index=1)) == 0  # one sample, shape (K,)


def test_undefined_auc_policy_is_an_explicit_option():
    y = np.zeros(40, dtype=int)
    P = np.column_stack([np.linspace(0.9, 0.1, 40), np.linspace(0.1, 0.9, 40)])
    with pytest.raises(ValueError, match="both classes present for roc_auc"):
        M.classification_summary(y, P, threshold=0.5)
    s = M.classification_summary(y, P, threshold=0.5, undefined_auc="nan")
    assert np.isnan(s["roc_auc"]) and np.isnan(s["pr_auc"])
    assert s["specificity"] == pytest.approx(np.mean(P[:, 1] < 0.5)) and list(s) == list(M.LEADERBOARD_METRICS)
    ci = M.bootstrap_all(y, P, None, n_boot=50, threshold=0.5, undefined_auc="nan")
    assert all(np.isnan(ci["roc_auc"])) and ci["specificity"][0] == pytest.approx(s["specificity"])
    # The threshold metrics are those of a computation without the AUCs (what the retry loops used to do).
    rest = [m for m in M.LEADERBOARD_METRICS if m not in ("roc_auc", "pr_auc")]
    assert {m: ci[m] for m in rest} == M.bootstrap_all(y, P, None, metrics=rest, n_boot=50, threshold=0.5)
    both = np.r_[0, 1, np.zeros(38, dtype=int)]
    assert M.classification_summary(both, P, undefined_auc="nan") == M.classification_summary(both, P)
    with pytest.raises(ValueError, match=r"argument `undefined_auc`\. Expected 'raise' or 'nan'"):
        M.bootstrap_all(y, P, undefined_auc="skip")


def test_shared_constants_and_error_helper():
    from pipeline.errors import invalid_argument

    assert M.DEFAULT_THRESHOLD == 0.5 and M.MAX_CURVE_POINTS == 2000
    err = invalid_argument("n_boot", "a positive int", 0)
    assert isinstance(err, ValueError) and str(err) == (
        "Invalid value for argument `n_boot`. Expected a positive int. Received: 0"
    )
    assert isinstance(invalid_argument("path", "a file", "x", error=FileNotFoundError), FileNotFoundError)


def test_intervals_are_typed_estimates_that_still_unpack():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    P = np.column_stack([1 - (s := np.clip(y * 0.4 + rng.random(80) * 0.6, 0, 1)), s])
    est = M.bootstrap_all(y, P, None, metrics=["roc_auc"], n_boot=50)["roc_auc"]
    assert isinstance(est, M.Estimate) and est.low <= est.point <= est.high
    point, low, high = est
    assert (point, low, high) == est and est[0] == est.point


def test_paired_difference_reads_a_pairwise_row():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 120)
    probs = {
        n: np.column_stack([1 - (s := np.clip(y * w + rng.random(120) * (1 - w), 0, 1)), s])
        for n, w in (("a", 0.5), ("b", 0.2))
    }
    row = M.pairwise_comparisons(y, probs, metrics=["accuracy"], n_boot=50)[0]
    d = M.PairedDifference.of(row, "accuracy")
    assert (d.diff, d.ci_low, d.ci_high, d.p, d.p_holm) == (
        row["accuracy_diff"],
        row["accuracy_ci_low"],
        row["accuracy_ci_high"],
        row["accuracy_p"],
        row["accuracy_p_holm"],
    )
    assert M.PairedDifference.of(row, "f1") is None


# ---------------------------------------------------------------- curve bands (moved here with the function)


def test_curve_bands_one_resample_equals_explicit_resampling():
    rng = np.random.default_rng(0)
    n = 400
    groups = rng.integers(0, 80, n)
    y = rng.random(n) < 0.3
    score = np.round(np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1), 2)  # ties on purpose
    bands = M.bootstrap_curve_bands(y, score, groups, n_boot=1, seed=5, grid_points=21)
    # Redo the same draw explicitly: the groups drawn with replacement, samples repeated.
    codes = np.unique(groups, return_inverse=True)[1]
    order = np.argsort(-score, kind="mergesort")
    drawn = np.random.default_rng(5).integers(0, codes.max() + 1, codes.max() + 1)
    idx = np.concatenate([np.flatnonzero(codes == g) for g in drawn])
    fpr, tpr, _ = skm.roc_curve(y[idx], score[idx], drop_intermediate=False)
    grid = np.linspace(0, 1, 21)
    np.testing.assert_allclose(bands["roc"][1], np.interp(grid, fpr, tpr), atol=1e-12)
    prec, rec, _ = skm.precision_recall_curve(y[idx], score[idx])
    # precision at the first operating point whose recall reaches each grid level
    rec_a, prec_a = rec[::-1][1:], prec[::-1][1:]
    k = np.minimum(np.searchsorted(rec_a, grid, side="left"), rec_a.size - 1)
    np.testing.assert_allclose(bands["pr"][1], prec_a[k], atol=1e-12)
    assert order.size == n


def test_curve_bands_cover_the_curve_and_handle_one_class():
    rng = np.random.default_rng(1)
    y = rng.random(600) < 0.4
    score = np.clip(y * 0.35 + rng.random(600) * 0.65, 0, 1)
    groups = np.arange(600) // 3
    bands = M.bootstrap_curve_bands(y, score, groups, n_boot=200, seed=0)
    grid, lo, hi = bands["roc"]
    fpr, tpr, _ = skm.roc_curve(y, score)
    mid = np.interp(grid, fpr, tpr)
    assert (lo <= hi).all() and np.mean((lo <= mid + 1e-9) & (mid <= hi + 1e-9)) > 0.95
    assert M.bootstrap_curve_bands(np.ones(5, bool), np.arange(5.0), np.arange(5))["roc"] is None
    with pytest.raises(ValueError, match="Expected equal shapes"):
        M.bootstrap_curve_bands(y, score[:-1], groups)
