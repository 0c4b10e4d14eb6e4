"""The foundation, with real components: worker processes, the embedded broker, Redis,
PostgreSQL, /healthz, and the stdlib `platform` module surviving our platform/ folder."""

from __future__ import annotations

import platform
import signal

import pytest

from .procs import call_task, get, manage, platform_env, stop, wait_until, web, worker
from .services import REDIS_URL, flush_redis, postgres_database, reachable

pytestmark = pytest.mark.integration


def test_embedded_broker_worker_round_trip_and_stdlib_platform(tmp_path):
    env = platform_env(tmp_path)
    manage(env, "migrate", "--noinput")
    with worker(env):
        result = call_task(env, "ops.tasks.ping", timeout=90)
        assert result["pong"] is True
        assert result["system"] == platform.system()  # stdlib module, not our folder
        assert result["db_vendor"] == "sqlite"
        assert call_task(env, "ops.tasks.add", 2, 3) == 5


def test_healthz_goes_503_when_the_worker_is_down(tmp_path):
    env = platform_env(tmp_path)
    manage(env, "migrate", "--noinput")
    with web(env) as url:
        status, body = get(url + "/healthz")
        assert status == 503 and body["workers"]["ok"] is False  # no worker yet
        assert body["database"]["ok"] and body["broker"]["ok"]
        with worker(env) as w:
            wait_until(lambda: get(url + "/healthz")[0] == 200, timeout=90, what="healthy")
            status, body = get(url + "/healthz")
            assert body["workers"]["workers"][0]["hostname"].startswith("w1@")
            stop(w, signal.SIGKILL)  # no goodbye: only the missing heartbeat tells
        status = wait_until(lambda: get(url + "/healthz")[0] == 503 and 503, timeout=30, what="503")
        assert status == 503


def test_stdlib_platform_in_running_site(tmp_path):
    env = platform_env(tmp_path)
    manage(env, "migrate", "--noinput")
    out = manage(
        env, "shell", "-c", "import platform; print(platform.system() + '|' + platform.__file__)"
    )
    system, path = out.stdout.strip().splitlines()[-1].split("|")
    assert system == platform.system()
    assert "/platform/" not in path.replace("\\", "/").rsplit("/", 1)[0] + "/"


@pytest.mark.skipif(not reachable("127.0.0.1", 6379), reason="Redis not running at 127.0.0.1:6379")
def test_redis_broker_worker_round_trip(tmp_path):
    flush_redis()
    env = platform_env(tmp_path, REDIS_URL=REDIS_URL, CELERY_BROKER_URL=REDIS_URL)
    manage(env, "migrate", "--noinput")
    try:
        with worker(env), web(env) as url:
            result = call_task(env, "ops.tasks.ping", timeout=60)
            assert result["system"] == platform.system()
            wait_until(lambda: get(url + "/healthz")[0] == 200, timeout=60, what="healthy")
            assert get(url + "/healthz")[1]["broker"]["transport"] == "redis"
    finally:
        flush_redis()


@pytest.mark.skipif(
    not reachable("127.0.0.1", 5432), reason="PostgreSQL not running at 127.0.0.1:5432"
)
def test_postgres_migrations_and_request_round_trip(tmp_path):
    with postgres_database() as db_url:
        env = platform_env(tmp_path, DATABASE_URL=db_url)
        manage(env, "migrate", "--noinput")
        manage(
            env,
            "shell",
            "-c",
            "from accounts.models import User; User.objects.create_user('pg-user', password='x')",
        )
        with worker(env), web(env) as url:
            wait_until(lambda: get(url + "/healthz")[0] == 200, timeout=90, what="healthy")
            body = get(url + "/healthz")[1]
            assert body["database"]["vendor"] == "postgresql"
            assert get(url + "/")[0] == 200
            assert call_task(env, "ops.tasks.ping")["db_vendor"] == "postgresql"
        out = manage(
            env,
            "shell",
            "-c",
            "from accounts.models import User; print(User.objects.get(username='pg-user').pk)",
        )
        assert out.stdout.strip().splitlines()[-1].isdigit()
