"""Swagger UI and ReDoc come from this site's static files (drf-spectacular-sidecar), so they
work offline and under the site's Content-Security-Policy (scripts only from 'self')."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_load_everything_from_this_site(url):
    r = Client().get(url)
    assert r.status_code == 200
    page = r.content.decode()
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page)
    links = re.findall(r'<link[^>]*\bhref="([^"]+)"', page)
    assert scripts, "the page loads its viewer from a script file"
    assert "<script>" not in page  # no inline script: CSP script-src 'self' forbids it
    for src in scripts + [h for h in links if not h.startswith("data:")]:
        assert src.startswith("/"), f"{src} is not served by this site"
        if src.startswith("/static/"):
            assert finders.find(src.removeprefix("/static/")), f"{src} is not a static file"
    csp = r["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", csp)[1].split()
    assert script_src == ["'self'"]
    assert "cdn" not in csp and "http" not in csp


def test_swagger_start_script_points_at_the_schema():
    r = Client().get("/api/docs/?script=")
    assert r.status_code == 200 and "/api/schema/" in r.content.decode()
    assert Client().get("/api/schema/").status_code == 200
