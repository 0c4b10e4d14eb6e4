"""The production switch refuses insecure settings; the embedded default needs nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def load_settings(tmp_path, **env: str) -> subprocess.CompletedProcess:
    code = "import sys; sys.path.append('platform'); import xenobench.settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)"
    base = {"PATH": "/usr/bin:/bin", "DATA_ROOT": str(tmp_path), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


def test_embedded_defaults(tmp_path):
    out = load_settings(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "django.db.backends.sqlite3", "filesystem://"]


def test_production_refuses_insecure_defaults(tmp_path):
    out = load_settings(tmp_path, XENOBENCH_PRODUCTION="1", DEBUG="1")
    assert out.returncode != 0
    for phrase in ("DEBUG must be off", "SECRET_KEY", "ALLOWED_HOSTS"):
        assert phrase in out.stderr


def test_production_refuses_unconfined_sandbox(tmp_path):
    out = load_settings(
        tmp_path,
        XENOBENCH_PRODUCTION="1",
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS="bench.example.org",
        SANDBOX_BACKEND="none",
    )
    assert out.returncode != 0 and "SANDBOX_BACKEND=none" in out.stderr


def test_production_accepts_secure_settings(tmp_path):
    out = load_settings(
        tmp_path,
        XENOBENCH_PRODUCTION="1",
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS="bench.example.org",
        REDIS_URL="redis://127.0.0.1:6379/3",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[2] == "redis://127.0.0.1:6379/3"


def test_home_and_admin_pages(client, admin_client):
    assert client.get("/").status_code == 200
    assert admin_client.get("/admin/").status_code == 200
    assert client.get("/api/schema/").status_code == 200
