"""Real-browser test of the live-inference page: upload a real image file, then a bad one, then presenter mode.

Serves the app exactly as `make run` does against an experiment with real (tiny) saved Keras models, drives
headless Debian chromium, and saves screenshots to tests/screenshots/live_*.png. Skipped like the other
browser test when chromium or Playwright is missing (a failure under REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.browser.serve import serve_dashboard
from tests.browser.test_browser import assert_no_exception, browser, settle, shot  # noqa: F401 - fixtures used by name

pytest.importorskip("tensorflow")
expect = pytest.importorskip("playwright.sync_api").expect

UPLOAD_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'
LOAD_TIMEOUT_MS = 240_000  # the first request loads TensorFlow and warms up both models


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The dashboard on a free port, serving `make_live_experiment`; yields (base URL, tmp folder)."""
    from tests.test_live_page import make_live_experiment

    root = tmp_path_factory.mktemp("live-browser")
    make_live_experiment(root)
    with serve_dashboard(root, timeout=90) as url:
        yield url, root


@pytest.fixture()
def tall_page(browser):  # noqa: F811 - the fixture imported above
    ctx = browser.new_context(viewport={"width": 1500, "height": 1900})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def test_upload_real_image_bad_file_and_presenter_mode(live_server, tall_page):
    url, root = live_server
    pg = tall_page
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    good = root / "cells.png"
    cv2.imwrite(str(good), image)
    bad = root / "report.png"
    bad.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")

    pg.goto(f"{url}/?exp=live&page=live")
    pg.wait_for_selector('[data-testid="stAppViewContainer"] h1:has-text("Live inference")')
    settle(pg)

    pg.set_input_files(UPLOAD_INPUT, str(good))
    # "Latency" first matches the caption above the answers; the per-model metrics render after each
    # model's chart, so wait for them (a fixed settle raced with the charts once in a fresh-clone run).
    pg.wait_for_selector("text=Latency", timeout=LOAD_TIMEOUT_MS)
    expect(pg.locator('[data-testid="stMetric"]')).to_have_count(2, timeout=60_000)
    settle(pg, 1.5)
    assert_no_exception(pg)
    assert pg.locator(".live-decision").count() == 2
    assert pg.locator('[data-testid="stMetric"]').count() == 2
    warnings = " ".join(pg.locator('[data-testid="stAlertContentWarning"]').all_inner_texts())
    assert "EfficientNetB0 cannot answer" in warnings and "DenseNet121 cannot answer" in warnings
    shot(pg, "live_upload")

    pg.set_input_files(UPLOAD_INPUT, str(bad))
    pg.wait_for_selector('[data-testid="stAlertContentError"]')
    settle(pg)
    assert_no_exception(pg)
    errors = pg.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert len(errors) == 1 and "PDF" in errors[0], errors
    assert pg.locator(".live-decision").count() == 0
    shot(pg, "live_bad_upload")

    pg.set_input_files(UPLOAD_INPUT, str(good))
    pg.wait_for_selector(".live-decision")
    pg.get_by_text("Presenter mode").click()
    pg.wait_for_selector(".live-verdict")
    settle(pg, 1.0)
    assert_no_exception(pg)
    assert not pg.locator('section[data-testid="stSidebar"]').is_visible()
    assert pg.locator(".live-verdict").count() == 2
    shot(pg, "live_presenter")
