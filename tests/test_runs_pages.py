"""Pages on a multi-run experiment (3 seeds per backbone): the Overview's 'over runs' column and run dots, the
seed-ensemble row and the ROC page's mean-over-runs curve, each against scikit-learn on the Parquet files;
and a one-run experiment keeps its pages as before."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from tests.conftest import no_exceptions, open_app, plotly_array, plotly_specs, truth

RUNS = ["ResNet50", "ResNet50@s1", "ResNet50@s2"]


def _aucs(root, runs, eval_set="test"):
    out = []
    for m in runs:
        y, P, _ = truth(root, "runs", m, eval_set)
        out.append(roc_auc_score(y == 1, P[:, 1]))
    return np.array(out)


def test_overview_shows_mean_sd_range_over_runs_and_every_run(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("runs", "overview")
    no_exceptions(at)
    table = at.dataframe[0].value
    assert list(table.columns).index("ROC AUC over runs") == list(table.columns).index("ROC AUC") + 1
    assert "ROC AUC over runs" in at.dataframe[0].proto.column_order  # shown by default, not only under Columns
    ref = _aucs(fake_root, RUNS)
    assert table.loc["ResNet50", "ROC AUC over runs"] == (
        f"{ref.mean():.3f} ± {ref.std(ddof=1):.3f} ({ref.min():.3f}–{ref.max():.3f}, 3 runs)"
    )
    assert table.loc["Ensemble (mean)", "ROC AUC over runs"] == "—"
    fig = next(s for s in plotly_specs(at) if s["_id"].endswith("-overview_runs_fig"))
    dots = next(d for d in fig["data"] if d.get("name") == "ResNet50 runs")
    assert sorted(plotly_array(dots["x"])) == pytest.approx(sorted(ref)) and list(dots["customdata"]) == RUNS
    # rank by another metric: the column follows it
    at.selectbox(key="overview_rank_by").set_value("balanced_accuracy").run()
    assert "Balanced acc. over runs" in at.dataframe[0].value.columns


def test_seed_ensemble_row_equals_a_hand_average_of_the_runs(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("runs", "overview")
    assert "ResNet50 (mean of 3 runs)" not in at.dataframe[0].value.index  # off by default
    at.toggle(key="overview_seed_ensembles").set_value(True).run()
    no_exceptions(at)
    table = at.dataframe[0].value
    ys, Ps = zip(*[truth(fake_root, "runs", m)[:2] for m in RUNS])
    assert all(np.array_equal(ys[0], y) for y in ys)  # same samples, same order
    hand = np.mean([P[:, 1] for P in Ps], axis=0)
    assert table.loc["ResNet50 (mean of 3 runs)", "ROC AUC"].startswith(f"{roc_auc_score(ys[0] == 1, hand):.3f} [")
    acc = np.mean((hand >= 0.5) == (ys[0] == 1))
    assert table.loc["ResNet50 (mean of 3 runs)", "Accuracy"].startswith(f"{acc:.3f} [")


def test_roc_mean_over_runs_is_the_vertical_average_of_sklearn_curves(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("runs", "curves")
    assert not any("mean of" in str(d.get("name")) for s in plotly_specs(at) for d in s["data"])  # off by default
    at.toggle(key="curves_runs").set_value(True).run()
    no_exceptions(at)
    roc = next(s for s in plotly_specs(at) if s["_id"].endswith("-roc_chart"))
    ref = _aucs(fake_root, RUNS)
    name = f"ResNet50, mean of 3 runs (AUC {ref.mean():.3f} ± {ref.std(ddof=1):.3f})"
    line = next(d for d in roc["data"] if d.get("name") == name)
    grid = np.linspace(0, 1, 101)
    rows = []
    for m in RUNS:
        y, P, _ = truth(fake_root, "runs", m)
        fpr, tpr, _ = roc_curve(y == 1, P[:, 1])
        rows.append(np.interp(grid, fpr, tpr))
        rows[-1][0] = 0.0
    assert plotly_array(line["y"]) == pytest.approx(np.mean(rows, axis=0))
    band = next(d for d in roc["data"] if d.get("name") == f"{name} runs min–max (3 runs)")
    assert plotly_array(band["y"])[:101] == pytest.approx(np.max(rows, axis=0))
    at.segmented_control(key="curves_runs_band").set_value("sd").run()
    roc = next(s for s in plotly_specs(at) if s["_id"].endswith("-roc_chart"))
    assert any(d.get("name") == f"{name} runs mean ± SD" for d in roc["data"])


def test_one_run_experiment_has_no_runs_extras(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "overview")
    no_exceptions(at)
    assert not any("over runs" in c for c in at.dataframe[0].value.columns)
    assert not [t for t in at.toggle if t.key == "overview_seed_ensembles"]
    at.switch_page("app_pages/curves.py").run()
    assert not [t for t in at.toggle if t.key == "curves_runs"]


def test_paired_comparison_shows_the_test_over_runs_next_to_delong(fake_root, artifacts_env):
    from scipy import stats

    artifacts_env(fake_root)
    at = open_app("runs", "compare")
    no_exceptions(at)
    at.selectbox(key="compare_a").set_value("ResNet50").run()
    at.selectbox(key="compare_b").set_value("MobileNetV2").run()
    text = " ".join(m.value for m in at.markdown)
    res50, mob = _aucs(fake_root, RUNS), _aucs(fake_root, ["MobileNetV2", "MobileNetV2@s1", "MobileNetV2@s2"])
    a, b, va, vb = (
        ("ResNet50", "MobileNetV2", res50, mob)
        if res50.mean() >= mob.mean()
        else ("MobileNetV2", "ResNet50", mob, res50)
    )
    assert "**Over runs** (paired t-test over seeds" in text
    assert f"**{a}** beats **{b}** in {int((va > vb).sum())} of 3 paired runs" in text
    from pipeline.report import format_p

    assert f"p = {format_p(stats.ttest_rel(va, vb).pvalue)}." in text
    assert any("Trust a difference only when both agree" in c.value for c in at.caption)
    at = open_app("binary", "compare")  # one run per backbone: no runs line
    assert not any("Over runs" in m.value for m in at.markdown)


def test_an_unreadable_extra_run_is_named_and_the_pages_still_work(tmp_path, artifacts_env):
    from pipeline.fake import make_fake_experiment

    exp = make_fake_experiment(tmp_path, "r", n_samples=150, n_models=2, seed=4, runs=2, thumbnails=False)
    preds = exp / "models" / "ResNet50@s1" / "predictions.parquet"
    preds.write_bytes(preds.read_bytes()[:200])
    artifacts_env(tmp_path)
    at = open_app("r", "overview")
    no_exceptions(at)
    assert any("ResNet50@s1" in e.value and "predictions.parquet" in e.value for e in at.error)
    assert set(at.dataframe[0].value.index) >= {"MobileNetV2", "ResNet50"}  # the leaderboard is still drawn
    for page in ("curves", "compare", "runs"):
        at = open_app("r", page)
        if page == "curves":
            at.toggle(key="curves_runs").set_value(True).run()
        no_exceptions(at)


def test_every_page_with_the_runs_options_on_a_multiclass_multi_run_experiment(tmp_path, artifacts_env):
    from pipeline.fake import make_fake_experiment
    from tests.conftest import PAGE_FILES

    make_fake_experiment(tmp_path, "m3", n_samples=180, n_models=2, n_classes=3, seed=5, runs=2, thumbnails=False)
    artifacts_env(tmp_path)
    at = open_app("m3", "overview")
    at.toggle(key="overview_seed_ensembles").set_value(True).run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert "ResNet50 (mean of 2 runs)" in table.index and "ROC AUC over runs" in table.columns
    at.switch_page(PAGE_FILES["curves"]).run()
    at.toggle(key="curves_runs").set_value(True).run()
    no_exceptions(at)
    assert any("mean of 2 runs" in str(d.get("name")) for s in plotly_specs(at) for d in s["data"])
    for page in PAGE_FILES.values():
        at.switch_page(page).run()
        no_exceptions(at)
