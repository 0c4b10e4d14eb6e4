"""XENOBENCH_PRODUCTION=1 on this machine's real PostgreSQL and a private Redis: migrations,
collectstatic, gunicorn, a Celery worker with the bwrap sandbox, a submission uploaded through
the API and evaluated end to end, /healthz 200; insecure settings refused."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests.faults.services import private_redis
from tests.faults.stack import Stack, api, api_submit

from .procs import PY, ROOT, get, manage, platform_env, wait_until
from .services import postgres_database, reachable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not reachable("127.0.0.1", 5432), reason="PostgreSQL not running on :5432"),
]


def test_production_settings_refuse_insecure_values(tmp_path):
    env = platform_env(tmp_path, XENOBENCH_PRODUCTION="1", SECRET_KEY="short", ALLOWED_HOSTS="*")
    out = subprocess.run(
        [PY, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "SECRET_KEY" in out.stderr and "ALLOWED_HOSTS" in out.stderr


def test_production_profile_end_to_end(tmp_path):
    with private_redis(tmp_path / "redis") as redis, postgres_database() as db:
        stack = Stack(
            tmp_path / "data",
            database_url=db,
            redis_url=redis.url,
            XENOBENCH_PRODUCTION="1",
            SECRET_KEY=secrets.token_urlsafe(50),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_COOKIES="0",
        )
        try:
            stack.migrate()
            manage(stack.env, "collectstatic", "--noinput", timeout=180)
            check = manage(stack.env, "check", "--deploy", "--fail-level", "ERROR")
            assert check.returncode == 0
            built = stack.setup(subjects=1, images=2)
            url = stack.web()
            stack.worker("prod")
            wait_until(lambda: get(url + "/healthz")[0] == 200, timeout=90, what="healthy")
            status, body = get(url + "/healthz")
            assert body["database"]["vendor"] == "postgresql"
            assert body["broker"]["transport"] == "redis"
            token = built["users"][0]["token"]
            code, sub = api_submit(url, token, built["phase"], Path(built["model"]), "prod e2e")
            assert code == 201, sub
            state = stack.wait_final([sub["id"]], timeout=120)[sub["id"]]
            assert state["status"] == "succeeded", state
            assert stack.row_counts(sub["id"])[0] == built["cases"]
            code, detail = api(f"{url}/api/submissions/{sub['id']}/", token)
            assert code == 200 and detail["status"] == "succeeded"
            assert get(url + "/healthz?scope=web")[0] == 200
            static = get(url + "/static/xenobench/site.css")[0]
            assert static == 200  # whitenoise serves the collected, hashed files
        finally:
            stack.close()
