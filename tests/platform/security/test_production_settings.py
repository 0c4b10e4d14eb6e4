"""Production security settings: HSTS, secure cookies, and the https redirect that is switched
on behind a TLS-terminating proxy (SECURE_PROXY_SSL), with /healthz exempt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NAMES = (
    "SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_HSTS_SECONDS SECURE_SSL_REDIRECT "
    "SECURE_PROXY_SSL_HEADER SECURE_REDIRECT_EXEMPT HEALTHZ_PUBLIC_DETAILS"
).split()


def production_settings(tmp_path, **env: str) -> dict:
    code = (
        "import json, sys; sys.path.append('platform'); import xenobench.settings as s;"
        f"print(json.dumps({{n: getattr(s, n, None) for n in {NAMES!r}}}))"
    )
    base = {
        "PATH": "/usr/bin:/bin",
        "DATA_ROOT": str(tmp_path),
        "HOME": str(tmp_path),
        "XENOBENCH_PRODUCTION": "1",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "bench.example.org",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_production_defaults_are_secure(tmp_path):
    s = production_settings(tmp_path)
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SECURE_HSTS_SECONDS"] >= 31536000
    assert not s["SECURE_SSL_REDIRECT"] and s["SECURE_PROXY_SSL_HEADER"] is None
    assert s["HEALTHZ_PUBLIC_DETAILS"] is False


def test_behind_a_tls_proxy_http_is_redirected_except_healthz(tmp_path):
    s = production_settings(tmp_path, SECURE_PROXY_SSL="1", SECURE_HSTS_SECONDS="600")
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["SECURE_SSL_REDIRECT"] is True and s["SECURE_HSTS_SECONDS"] == 600
    assert s["SECURE_REDIRECT_EXEMPT"] == ["^healthz$"]
    assert (
        production_settings(tmp_path, SECURE_PROXY_SSL="1", SECURE_SSL_REDIRECT="0")[
            "SECURE_SSL_REDIRECT"
        ]
        is False
    )


def test_https_redirect_and_hsts_through_the_middleware(client, settings, db):
    """The same settings in a running site: plain http is redirected, the proxy's https is
    served with HSTS, /healthz is answered over http (container health checks)."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    settings.SECURE_HSTS_SECONDS = 600
    resp = client.get("/")
    assert resp.status_code == 301 and resp["Location"].startswith("https://")
    resp = client.get("/", HTTP_X_FORWARDED_PROTO="https")
    assert resp.status_code == 200 and resp["Strict-Transport-Security"] == "max-age=600"
    assert client.get("/healthz").status_code in (200, 503)
