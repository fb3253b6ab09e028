"""Real-browser test of a multi-run experiment (3 seeds per backbone): Overview and Runs & stability, served as
`make run` serves them and driven by headless Debian chromium. The mean ± SD over runs and the rank-stability
numbers must render without an exception and equal scikit-learn's on the Parquet files.

Skipped (like tests/browser/test_browser.py) when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.browser.serve import serve_dashboard
from tests.browser.test_browser import (  # noqa: F401 - fixtures
    _MISSING,
    REQUIRED,
    assert_no_exception,
    browser,
    open_page,
    page,
    shot,
)
from tests.conftest import truth

pytestmark = pytest.mark.browser
if _MISSING and not REQUIRED:
    pytest.skip(_MISSING, allow_module_level=True)

BACKBONES = ("MobileNetV2", "ResNet50", "EfficientNetB0")


@pytest.fixture(scope="module")
def runs_server(tmp_path_factory):
    from pipeline.fake import make_fake_experiment

    root: Path = tmp_path_factory.mktemp("runs-browser")
    make_fake_experiment(root, "runs", n_samples=300, n_models=3, seed=8, runs=3, eval_sets=("test", "val"))
    with serve_dashboard(root, timeout=60) as url:
        yield url, root


def _aucs(root: Path, backbone: str) -> np.ndarray:
    out = []
    for m in (backbone, f"{backbone}@s1", f"{backbone}@s2"):
        y, P, _ = truth(root, "runs", m)
        out.append(roc_auc_score(y == 1, P[:, 1]))
    return np.array(out)


def _traces(pg) -> list[dict]:
    """Every Plotly trace drawn on the page: name, x values and hover template (read from the live figures)."""
    return pg.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(p => (p.data || []).map(t => ({
            name: t.name || '', x: Array.from(t.x || []), hover: t.hovertemplate || ''})))"""
    )


def _check_run_figure(traces: list[dict], root: Path) -> None:
    for b in BACKBONES:
        ref = _aucs(root, b)
        dots = next(t for t in traces if t["name"] == f"{b} runs")
        mean = next(t for t in traces if t["name"] == f"{b} mean")
        assert sorted(dots["x"]) == pytest.approx(sorted(ref))
        assert mean["x"] == pytest.approx([ref.mean()])
        assert f"± {ref.std(ddof=1):.4f} (SD over 3 runs)" in mean["hover"]


def test_overview_shows_mean_sd_over_runs(runs_server, page):  # noqa: F811 - fixture
    url, root = runs_server
    open_page(page, f"{url}/?exp=runs")
    assert page.locator("h1").first.inner_text().strip() == "Overview"
    assert_no_exception(page)
    page.wait_for_selector("[data-testid='stDataFrame']")
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "ROC AUC over runs: mean ± SD (min–max, number of runs)" in main.replace("*", "")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".some(p => (p.data || []).some(t => (t.name || '').endsWith(' mean')))"
    )
    _check_run_figure(_traces(page), root)
    shot(page, "runs_overview")


def test_runs_page_shows_rank_stability(runs_server, page):  # noqa: F811 - fixture
    url, root = runs_server
    open_page(page, f"{url}/runs?exp=runs")
    assert page.locator("h1").first.inner_text().strip() == "Runs & stability"
    assert_no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".some(p => (p.data || []).some(t => (t.name || '').endsWith(' mean')))"
    )
    _check_run_figure(_traces(page), root)
    main = page.locator('[data-testid="stMain"]').inner_text()
    # the rank-stability numbers the page computed (same code, same seed) are the ones rendered
    from pipeline import artifacts as art
    from pipeline.run_summary import compare_runs

    res = compare_runs(art.load_experiment(root / "runs"), "test", metric="roc_auc", n_boot=200)
    ranked = sorted(zip(res.table["backbone"], res.table["rank_first"]), key=lambda bf: -bf[1])
    assert "Ranks first: " + " · ".join(f"{b} {f:.0%}" for b, f in ranked) in main
    assert sum(f for _, f in ranked) == pytest.approx(1.0)
    assert "Pairs over runs" in main and "paired t-test over seeds" in main
    shot(page, "runs_stability")
