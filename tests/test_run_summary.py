"""Backbones with several runs: mean/SD over runs (scikit-learn AUC per run as the oracle), rank stability,
pairwise wins and the t-test over runs (scipy's paired t-test for seeds), on a generated multi-run experiment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from pipeline import artifacts as art
from pipeline.fake import make_fake_experiment
from pipeline.run_summary import backbone_runs, compare_runs


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return art.load_experiment(make_fake_experiment(root, n_samples=600, n_models=3, runs=3, thumbnails=False))


def test_runs_are_grouped_by_backbone(exp):
    groups = backbone_runs(exp)
    assert groups == {
        "MobileNetV2": ["MobileNetV2", "MobileNetV2@s1", "MobileNetV2@s2"],
        "ResNet50": ["ResNet50", "ResNet50@s1", "ResNet50@s2"],
        "EfficientNetB0": ["EfficientNetB0", "EfficientNetB0@s1", "EfficientNetB0@s2"],
    }


def test_spread_rank_stability_and_pairs_match_references(exp):
    res = compare_runs(exp, "test", metric="roc_auc", n_boot=100)
    samples = exp.samples.set_index("sample_id")
    per_run = {}
    for backbone, runs in backbone_runs(exp).items():
        vals = []
        for m in runs:
            p = art.read_predictions(exp, m).set_index("sample_id")
            vals.append(roc_auc_score(samples.loc[p.index, "label"] == 1, p["prob_1"]))
        per_run[backbone] = vals
        row = res.table.set_index("backbone").loc[backbone]
        assert row["n_runs"] == 3 and row["values"] == pytest.approx(vals)
        assert row["mean"] == pytest.approx(np.mean(vals)) and row["sd"] == pytest.approx(np.std(vals, ddof=1))
        assert row["primary"] == backbone and row["primary_ci_low"] <= row["primary_value"] <= row["primary_ci_high"]
    assert list(res.table["mean"]) == sorted(res.table["mean"], reverse=True)
    assert res.table["rank_first"].sum() == pytest.approx(1.0)
    assert res.table["rank_first"].iloc[0] == res.table["rank_first"].max()  # the best mean ranks first most
    assert "paired t-test over seeds" in res.test_name
    for pair in res.pairs.itertuples():
        a, b = np.array(per_run[pair.a]), np.array(per_run[pair.b])
        assert (pair.wins, pair.n) == (int((a > b).sum()), 3)
        ref = stats.ttest_rel(a, b)
        assert pair.t == pytest.approx(ref.statistic) and pair.p == pytest.approx(ref.pvalue)


def test_single_run_experiments_still_compare(tmp_path):
    one = art.load_experiment(make_fake_experiment(tmp_path, n_samples=300, n_models=2, thumbnails=False))
    res = compare_runs(one, "test", n_boot=50)
    assert list(res.table["n_runs"]) == [1, 1] and res.table["sd"].isna().all()
    assert res.pairs["n"].tolist() == [1] and np.isnan(res.pairs["p"].iloc[0])


def test_runs_spread_equals_sklearn_per_run_at_each_runs_threshold(exp):
    from sklearn.metrics import balanced_accuracy_score

    from pipeline.run_summary import runs_spread

    thresholds = {"ResNet50": 0.3, "ResNet50@s1": 0.6}  # the others at 0.5
    out = runs_spread(exp, "test", models=["ResNet50"], metrics=["roc_auc", "balanced_accuracy"], thresholds=thresholds)
    samples = exp.samples.set_index("sample_id")
    auc, bacc = [], []
    for m in ["ResNet50", "ResNet50@s1", "ResNet50@s2"]:
        p = art.read_predictions(exp, m).set_index("sample_id")
        y = samples.loc[p.index, "label"] == 1
        auc.append(roc_auc_score(y, p["prob_1"]))
        bacc.append(balanced_accuracy_score(y, p["prob_1"] >= thresholds.get(m, 0.5)))
    for metric, ref in (("roc_auc", auc), ("balanced_accuracy", bacc)):
        row = out[metric].iloc[0]
        assert list(out[metric]["backbone"]) == ["ResNet50"] and row["runs"] == [
            "ResNet50",
            "ResNet50@s1",
            "ResNet50@s2",
        ]
        assert row["values"] == pytest.approx(ref) and row["mean"] == pytest.approx(np.mean(ref))
        assert row["sd"] == pytest.approx(np.std(ref, ddof=1))
        assert (row["low"], row["high"]) == pytest.approx((min(ref), max(ref)))


def test_seed_ensembles_name_backbones_with_several_runs():
    from pipeline.run_summary import seed_ensembles

    assert seed_ensembles({"A": ["A", "A@s1"], "B": ["B"]}) == {"A (mean of 2 runs)": ["A", "A@s1"]}


def test_kfold_runs_use_the_nadeau_bengio_correction(tmp_path):
    import json
    import math

    root = make_fake_experiment(tmp_path, n_samples=300, n_models=2, runs=3, thumbnails=False)
    for cfg_path in (root / "models").glob("*/config.json"):  # as `[train] folds = 3` writes them
        cfg = json.loads(cfg_path.read_text())
        cfg_path.write_text(json.dumps({**cfg, "folds": 3}))
    kfold = art.load_experiment(root)
    res = compare_runs(kfold, "test", n_boot=20)
    assert res.test_name.startswith("corrected resampled t-test (Nadeau & Bengio), 3-fold")
    samples = kfold.samples.set_index("sample_id")
    vals = {}
    for backbone, runs in backbone_runs(kfold).items():
        vals[backbone] = []
        for m in runs:
            p = art.read_predictions(kfold, m).set_index("sample_id")
            vals[backbone].append(roc_auc_score(samples.loc[p.index, "label"] == 1, p["prob_1"]))
    pair = res.pairs.iloc[0]
    d = np.array(vals[pair["a"]]) - np.array(vals[pair["b"]])
    t = d.mean() / math.sqrt((1 / 3 + 1 / 2) * np.var(d, ddof=1))  # n_test / n_train = 1 / (k - 1)
    assert pair["t"] == pytest.approx(t) and pair["p"] == pytest.approx(2 * stats.t.sf(abs(t), 2))


@pytest.mark.parametrize("one_class", [False, True])
def test_runs_spread_equals_classification_summary_for_every_metric(exp, tmp_path, one_class):
    import pandas as pd

    from pipeline import metrics as mt
    from pipeline.comparison import load_aligned
    from pipeline.run_summary import runs_spread

    e = exp
    if one_class:  # a set of negatives only: AUCs undefined (NaN), the threshold metrics still computed
        root = make_fake_experiment(tmp_path, n_samples=90, n_models=1, runs=2, thumbnails=False)
        samples = pd.read_parquet(root / "samples.parquet")
        samples["label"] = 0
        samples.to_parquet(root / "samples.parquet", index=False)
        e = art.load_experiment(root)
    thresholds = {m: 0.2 + 0.1 * i for i, m in enumerate(e.models)}
    out = runs_spread(e, "test", thresholds=thresholds)
    aligned = load_aligned(e, e.models, "test")
    for metric, table in out.items():
        for row in table.itertuples():
            for run, value in zip(row.runs, row.values):
                ref = mt.classification_summary(
                    aligned.y,
                    aligned.probs[run],
                    threshold=thresholds[run],
                    pos_index=e.positive_index,
                    undefined_auc="nan",
                )[metric]
                assert value == pytest.approx(ref, abs=1e-12, nan_ok=True), (metric, run)
