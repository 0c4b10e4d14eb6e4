"""Swagger UI and ReDoc render in a real browser from this site's files alone, under the
site's Content-Security-Policy: every request outside the site is blocked, and a CSP
violation or a failed request fails the test."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "url, rendered",
    [("/api/docs/", ".swagger-ui .info .title"), ("/api/redoc/", "h1:has-text('XenoBench API')")],
)
def test_api_docs_render_offline(page, live_server, url, rendered):
    outside: list[str] = []
    problems: list[str] = []

    def route(r):
        if r.request.url.startswith(live_server.url):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
    page.goto(live_server.url + url)
    page.wait_for_selector(rendered)
    assert "XenoBench API" in page.inner_text(rendered)
    page.wait_for_load_state("networkidle")
    assert outside == [], f"requests leaving the site: {outside}"
    # ReDoc's sidebar always tries its maker's logo from their CDN and hides it when that
    # fails: the one outside resource, an image the CSP blocks, and nothing it needs.
    problems = [p for p in problems if "cdn.redoc.ly/redoc/logo-mini.svg" not in p]
    assert not [p for p in problems if "Content Security Policy" in p or "failed" in p], problems
