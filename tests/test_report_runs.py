"""The meeting report on a multi-run experiment: the Runs & stability section (numbers from compare_runs, checked
against scikit-learn and scipy), its absence on a one-run experiment, and where each threshold came from."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from pipeline import report as rp
from pipeline.fake import make_fake_experiment
from tests.conftest import truth


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("report-runs")
    make_fake_experiment(base, "runs", n_samples=240, n_models=2, seed=8, runs=3, thumbnails=False)
    make_fake_experiment(base, "one", n_samples=200, n_models=2, seed=3, thumbnails=False)
    return base


def test_report_runs_section_mean_sd_wins_and_ttest(root):
    text = rp.render_report_html(root / "runs", ["MobileNetV2", "ResNet50"], "test", {"ResNet50": 0.4}, n_boot=50)
    section = re.search(r'<section id="runs">(.*?)</section>', text, re.S).group(1)
    aucs = {}
    for b in ("MobileNetV2", "ResNet50"):
        vals = []
        for m in (b, f"{b}@s1", f"{b}@s2"):
            y, P, _ = truth(root, "runs", m)
            vals.append(roc_auc_score(y == 1, P[:, 1]))
        aucs[b] = np.array(vals)
        assert f"{aucs[b].mean():.3f} ± {aucs[b].std(ddof=1):.3f}" in section
        assert f"{aucs[b].min():.3f} – {aucs[b].max():.3f}" in section
    a, b = sorted(aucs, key=lambda k: -aucs[k].mean())
    k = int((aucs[a] > aucs[b]).sum())
    assert f"<b>Top pair:</b> {a} beats {b} in {k} of 3 runs" in section
    p = stats.ttest_rel(aucs[a], aucs[b]).pvalue
    assert rp.format_p(p) in section and "paired t-test over seeds" in section
    assert "ranks first" in section and "Trust a difference only when both agree" in section
    glance = re.search(r'<section id="summary">(.*?)</section>', text, re.S).group(1)
    assert (
        f"<li>Over runs (paired t-test over seeds (same split and test set)): {a} beats {b} in {k} of 3 runs" in glance
    )
    assert '<a href="#runs">runs</a>' in glance
    # thresholds: where they came from
    header = text.split("</header>")[0]
    assert "<b>ResNet50</b> 0.400 (given)" in header and "<b>MobileNetV2</b> 0.500 (default 0.5)" in header


def test_report_without_repeated_runs_has_no_runs_section_and_names_dashboard_sources(root):
    text = rp.render_report_html(
        root / "one",
        None,
        "test",
        {"ResNet50": 0.31},
        n_boot=20,
        threshold_sources={"ResNet50": "Youden's J on val"},
    )
    assert '<section id="runs">' not in text
    assert "<b>ResNet50</b> 0.310 (Youden&#x27;s J on val)" in text


def test_report_from_the_dashboard_says_the_threshold_was_chosen_on_val(tmp_path, monkeypatch):
    from tests.conftest import no_exceptions, open_app

    make_fake_experiment(tmp_path, "r", n_samples=200, n_models=2, seed=8, runs=2, eval_sets=("test", "val"))
    monkeypatch.setenv("MEDCOMPARE_ARTIFACTS", str(tmp_path))
    reports: list[str] = []
    build = rp.build_report

    def spy(*args, **kwargs):
        out = build(*args, **kwargs)
        reports.append(out.read_text(encoding="utf-8"))
        return out

    monkeypatch.setattr(rp, "build_report", spy)
    at = open_app("r", "thresholds")
    at.selectbox(key="thr_model").set_value("MobileNetV2").run()
    assert at.selectbox(key="thr_choose_on").value == "val"
    at.button(key="thr_btn_target").click().run()
    t_val = at.slider[0].value
    at.switch_page("app_pages/compare.py").run()
    at.button(key="compare_build_report").click().run()
    no_exceptions(at)
    header = reports[-1].split("</header>")[0]
    assert f"<b>MobileNetV2</b> {t_val:.3f} (sensitivity ≥ 0.95 on val" in header
    assert "<b>ResNet50</b> 0.500 (default 0.5)" in header
    assert '<section id="runs">' in reports[-1]
