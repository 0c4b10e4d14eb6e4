"""Browser tests: Debian's headless Chromium driven by Playwright against pytest-django's
live_server. Never downloads a browser; skips when /usr/bin/chromium is missing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from leaderboards.pdf import CHROMIUM_ARGS
from tests.platform.conftest import human_test_root, live_worker  # noqa: F401 - shared fixtures

CHROMIUM = "/usr/bin/chromium"
ARGS = CHROMIUM_ARGS
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    """One Chromium per module. Playwright's sync API keeps an event loop alive in this
    thread, so Django's async-safety check must be relaxed while it runs (the ORM calls in
    the tests are plain synchronous calls); restored afterwards."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (not installed)")
    from playwright.sync_api import sync_playwright

    old = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            yield b
            b.close()
    finally:
        if old is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = old


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def page(browser, request):
    """A fresh browser context per test; a full-page screenshot on failure."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.nodeid)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a screenshot must not hide the real failure
            pass
    context.close()
