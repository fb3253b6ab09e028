"""Real-browser test of the Data audit page: served as `make run` serves it, driven by headless Debian chromium.

Skipped (like tests/browser/test_browser.py) when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
from tests.test_audit import _experiment_with_audit

pytestmark = pytest.mark.browser
if _MISSING and not REQUIRED:
    pytest.skip(_MISSING, allow_module_level=True)


@pytest.fixture(scope="module")
def audited_server(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("audit-browser")
    _experiment_with_audit(root)
    with serve_dashboard(root, timeout=60) as url:
        yield url


def test_audit_page_shows_pairs_side_by_side(audited_server, page):  # noqa: F811 - fixture
    open_page(page, f"{audited_server}/audit?exp=audited")
    assert page.locator("h1").first.inner_text().strip() == "Data audit"
    assert_no_exception(page)
    metrics = page.locator('[data-testid="stMetric"]')
    assert metrics.count() == 5
    assert "2 of 40" in page.locator('[data-testid="stMetric"]').nth(3).inner_text()
    # the cross-split pairs: each shows its r and the test image's thumbnail captioned with split and label
    assert page.get_by_text("r = 1.000").count() >= 1
    images = page.locator('[data-testid="stImage"] img, [data-testid="stImageContainer"] img')
    assert images.count() >= 2
    assert page.get_by_text("· test ·").count() >= 2
    shot(page, "audited_audit")
