"""Real-browser test of the Subgroups page: served as `make run` serves it, driven by headless Debian chromium, on
a small experiment whose hospital C the models get wrong. The forest plot and the tables render, hospital C's
AUC sits below the other sites', and clicking its marker opens hospital C's samples in the gallery.

Skipped (like tests/browser/test_browser.py) when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard.widgets import GALLERY_PAGE_SIZE
from tests.browser.serve import serve_dashboard
from tests.browser.test_browser import (  # noqa: F401 - fixtures
    _MISSING,
    REQUIRED,
    assert_no_exception,
    browser,
    open_page,
    page,
    settle,
    shot,
)

pytestmark = pytest.mark.browser
if _MISSING and not REQUIRED:
    pytest.skip(_MISSING, allow_module_level=True)

SITES = ("hospital A", "hospital B", "hospital C")


def _experiment_with_a_hard_site(root: Path) -> Path:
    """A binary fake experiment with a `site` column (one site per patient); at hospital C every model's scores
    are noise, so its AUC is near 0.5 while the other sites keep the fake models' skill."""
    from pipeline.fake import make_fake_experiment

    path = make_fake_experiment(root, "sites", n_samples=360, n_models=2, n_classes=2, seed=21)
    samples = pd.read_parquet(path / "samples.parquet")
    codes = pd.factorize(samples["group"])[0] % 3
    samples["site"] = np.asarray(SITES, dtype=object)[codes]
    samples.to_parquet(path / "samples.parquet", index=False)
    hard = set(samples.loc[samples["site"] == "hospital C", "sample_id"])
    rng = np.random.default_rng(0)
    for model_dir in sorted((path / "models").iterdir()):
        preds = pd.read_parquet(model_dir / "predictions.parquet")
        at_c = preds["sample_id"].isin(hard).to_numpy()
        noise = rng.random(int(at_c.sum()))
        preds.loc[at_c, "prob_1"] = noise
        preds.loc[at_c, "prob_0"] = 1.0 - noise
        preds.to_parquet(model_dir / "predictions.parquet", index=False)
    meta = json.loads((path / "experiment.json").read_text())
    meta["config"] = {**(meta.get("config") or {}), "subgroups": {"columns": ["site"], "min_size": 20}}
    (path / "experiment.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def sites_server(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("subgroups-browser")
    _experiment_with_a_hard_site(root)
    with serve_dashboard(root, timeout=60) as url:
        yield url


def test_forest_plot_shows_the_hard_site_and_a_click_opens_its_samples(sites_server, page):  # noqa: F811
    open_page(page, f"{sites_server}/subgroups?exp=sites")
    assert page.locator("h1").first.inner_text().strip() == "Subgroups"
    forest = page.locator(".js-plotly-plot").first
    forest.locator(".scatterlayer path.point").first.wait_for(state="attached")
    settle(page, 1.0)
    assert_no_exception(page)
    # The table and the gap table are drawn (Streamlit dataframes), the forest plot has one row per site.
    assert page.locator('[data-testid="stDataFrame"]').count() >= 2
    ticks = [t.strip() for t in forest.locator(".ytick text").all_text_contents()]
    assert sorted(ticks) == sorted(SITES)
    # What the browser drew (the ROC AUC by default): per model, hospital C's AUC below both other sites'.
    assert page.locator("h3", has_text="ROC AUC per subgroup").count() == 1
    data = forest.evaluate("gd => gd._fullData.map(t => ({name: t.name, x: Array.from(t.x)}))")
    assert len(data) == 2
    for trace in data:
        auc = dict(zip(SITES, trace["x"]))
        assert auc["hospital C"] < min(auc["hospital A"], auc["hospital B"]) - 0.1, auc
    shot(page, "subgroups_forest")
    # Click the first model's hospital C marker, where a user would.
    model = data[0]["name"]
    point = forest.locator(".scatterlayer .trace").first.locator("path.point").nth(SITES.index("hospital C"))
    point.scroll_into_view_if_needed()
    settle(page, 0.5)
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    heading = page.locator("h3", has_text=f"{model}: site = hospital C")
    heading.wait_for()
    settle(page, 1.0)
    shown, total = (
        int(x.replace(",", "")) for x in re.search(r"\(([\d,]+) of ([\d,]+) samples", heading.inner_text()).groups()
    )
    assert 0 < shown <= total
    images = page.locator('[data-testid="stImage"]')
    assert images.count() == min(shown, GALLERY_PAGE_SIZE)
    assert " · p=" in page.locator('[data-testid="stImageCaption"]').first.inner_text()
    assert_no_exception(page)
    shot(page, "subgroups_clicked_hospital_c")
