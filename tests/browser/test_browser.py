"""Real-browser test: the app served by `make run`'s command, driven by headless Debian chromium.

Starts `python -m streamlit run dashboard/app.py` on a free port against fake experiments, visits every page,
clicks a confusion-matrix cell, moves the threshold slider and restores a shared link. Screenshots go to
tests/screenshots/ (git-ignored). Skipped when /usr/bin/chromium or Playwright is missing; never downloads
a browser.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from dashboard.widgets import GALLERY_PAGE_SIZE
from tests.browser.serve import serve_dashboard
from tests.conftest import PAGE_HEADINGS, PAGE_SECTIONS, PAGE_URLS

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
SHOTS = REPO_ROOT / "tests" / "screenshots"
# The review-meeting pages from the app's own registry (the first one is served at the root URL too).
PAGES = {
    ("" if i == 0 else url): title
    for i, (url, title) in enumerate(
        (PAGE_URLS[name], PAGE_HEADINGS[name])
        for name in PAGE_URLS
        if PAGE_SECTIONS[name] == "Review meeting" and name != "compare"
    )
}  # compare: needs two models (the "single" experiment has one)
LAPTOP = {"width": 1366, "height": 768}

REQUIRED = os.environ.get("REQUIRE_BROWSER") == "1"  # set by .ci/run: there a missing browser is a failure
_MISSING = (
    f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser test"
    if not CHROMIUM.exists()
    else None
)
try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - depends on the environment
    sync_api = None
    _MISSING = _MISSING or "Playwright is not installed (pip install -r requirements-dev.txt)"
if _MISSING and not REQUIRED:
    pytest.skip(_MISSING, allow_module_level=True)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Binary (two eval sets), 7-class and one-model fake experiments."""
    from pipeline.fake import make_fake_experiment

    root = tmp_path_factory.mktemp("browser-artifacts")
    make_fake_experiment(root, "binary", n_samples=400, n_models=3, seed=1, eval_sets=("test", "uncropped"))
    make_fake_experiment(root, "multi7", n_samples=500, n_models=2, n_classes=7, seed=2)
    make_fake_experiment(root, "single", n_samples=200, n_models=1, seed=3)
    return root


@pytest.fixture(scope="module")
def server(artifacts):
    """The dashboard served exactly as `make run` serves it, on a free port; yields its base URL."""
    with serve_dashboard(artifacts, timeout=60) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium (never a downloaded browser)."""
    if _MISSING:
        pytest.fail(f"REQUIRE_BROWSER=1 but {_MISSING}", pytrace=False)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(90_000)  # generous: CI machines here are shared and slow
    yield pg
    ctx.close()


def settle(pg, extra: float = 0.6) -> None:
    """Wait until the script run has finished and the page has painted."""
    time.sleep(0.4)
    deadline = time.time() + 60
    while pg.locator('[data-testid="stStatusWidget"]').count() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(extra)


def open_page(pg, url: str) -> None:
    pg.goto(url)
    pg.wait_for_selector('[data-testid="stAppViewContainer"] h1')
    settle(pg)


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def assert_no_exception(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator(
        '[data-testid="stException"]'
    ).first.inner_text()


@pytest.mark.parametrize("exp", ["binary", "multi7", "single"])
def test_every_page_opens(server, page, exp):
    for path, title in PAGES.items():
        open_page(page, f"{server}/{path}?exp={exp}")
        assert page.locator("h1").first.inner_text().strip() == title
        assert_no_exception(page)
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        if path not in ("training",):
            page.wait_for_selector(".js-plotly-plot, [data-testid='stDataFrame']")
        shot(page, f"{exp}_{path or 'overview'}")


def test_a_link_to_the_first_page_opens_it(server, page):
    """`/overview` (the first page's own url) used to answer "Page not found": the default page is served at
    the root URL only."""
    first = next(iter(PAGE_URLS))
    open_page(page, f"{server}/{PAGE_URLS[first]}?exp=binary")
    assert page.locator("h1").first.inner_text().strip() == PAGE_HEADINGS[first]
    assert page.get_by_text("Page not found").count() == 0
    assert_no_exception(page)
    page.wait_for_selector("[data-testid='stDataFrame']")


def test_leaderboard_does_not_scroll_sideways_on_a_laptop(server, browser):
    """At 1366 x 768 with the sidebar open, the leaderboard's default columns fit without a sideways scroll."""
    ctx = browser.new_context(viewport=LAPTOP)
    pg = ctx.new_page()
    pg.set_default_timeout(90_000)
    try:
        open_page(pg, f"{server}/?exp=binary")
        grid = pg.locator("[data-testid='stDataFrame']").first
        grid.wait_for()
        settle(pg, 1.0)
        shot(pg, "laptop_overview")
        scroller = grid.locator(".dvn-scroller").first
        sizes = scroller.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert sizes[0] <= sizes[1] + 1, f"leaderboard content {sizes[0]} px wide in a {sizes[1]} px frame"
    finally:
        ctx.close()


def test_clicking_a_confusion_cell_opens_the_gallery(server, page):
    open_page(page, f"{server}/confusion?exp=binary")
    page.wait_for_selector(".js-plotly-plot .scatterlayer path.point", state="attached")
    settle(page)
    assert page.get_by_text("Click a cell of a confusion matrix").count() == 1
    # Click where the user would: on the "true benign -> predicted malignant" cell of the first matrix.
    point = page.locator(".js-plotly-plot").first.locator(".scatterlayer path.point").nth(1)
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    heading = page.locator("h3", has_text="true benign → predicted malignant")
    heading.wait_for()
    settle(page, 1.0)
    n = int(re.search(r"\((\d+) samples", heading.inner_text()).group(1))
    images = page.locator('[data-testid="stImage"]')
    assert images.count() == min(n, GALLERY_PAGE_SIZE) > 0
    assert "benign → malignant · p=" in page.locator('[data-testid="stImageCaption"]').first.inner_text()
    assert_no_exception(page)
    shot(page, "binary_confusion_clicked")


def test_threshold_slider_moves_the_operating_point(server, page):
    open_page(page, f"{server}/thresholds?exp=binary")
    value = page.locator('[data-testid="stSliderThumbValue"]').first
    assert value.inner_text().strip() == "0.500"
    sens_before = page.locator('[data-testid="stMetricValue"]').first.inner_text()
    # Click the track at 30% (as a user drags there), then nudge with the keyboard: +5 steps of 0.001.
    box = page.locator('[data-testid="stSlider"] [role="group"] > div').first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    settle(page, 1.0)
    clicked = float(value.inner_text())
    assert abs(clicked - 0.3) < 0.02
    page.locator('[data-testid="stSlider"] input[type="range"]').first.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    settle(page, 1.0)
    moved = float(value.inner_text())
    assert moved == pytest.approx(clicked + 0.005)
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() != sens_before
    assert f"thr=EfficientNetB0%3A{moved:g}" in page.url
    assert_no_exception(page)
    shot(page, "binary_thresholds_moved")
    # The threshold follows the user to the confusion matrices, whose titles show it.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Confusion matrices").click()
    settle(page, 1.0)
    assert page.get_by_text(f"EfficientNetB0 (threshold {moved:.3f})").count() == 1
    shot(page, "binary_confusion_after_threshold")


def test_a_shared_link_restores_the_view(server, page):
    open_page(page, f"{server}/?exp=multi7&models=ResNet50&cls=class_3&page=curves&thr=ResNet50%403%3A0.2")
    assert page.locator("h1").first.inner_text().strip() == "ROC & precision-recall curves"
    assert "Positive class class_3" in page.locator('[data-testid="stMain"]').inner_text()
    page.locator(".js-plotly-plot .legendtext", has_text="ResNet50 (AUC").first.wait_for()
    assert "MobileNetV2" not in page.locator('[data-testid="stMultiSelect"]').first.inner_text()
    assert_no_exception(page)
    shot(page, "multi7_shared_link")
