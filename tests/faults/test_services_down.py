"""PostgreSQL unavailable and Redis restarted in the middle of evaluations (issue 10).

Neither shared server is touched: PostgreSQL is reached through a TCP proxy this test cuts
and restores, Redis is a private redis-server without persistence (a restart loses every
queued message: the worst case)."""

from __future__ import annotations

import time

import pytest

from tests.integration.procs import get, wait_until
from tests.integration.services import postgres_database, reachable

from .services import TcpProxy, private_redis
from .stack import Stack

pytestmark = pytest.mark.integration
SLOW = {"subjects": 1, "images": 2, "hw": (16, 16), "model": "slow"}


def _assert_complete(stack: Stack, ids: list[int], cases: int) -> None:
    for pk, s in stack.submissions(ids).items():
        assert s["status"] == "succeeded", s
        assert s["counts_against_quota"]  # a success counts once; nothing else was charged
        assert stack.row_counts(pk)[0] == cases
    assert stack.duplicate_rows() == 0


@pytest.mark.skipif(not reachable("127.0.0.1", 5432), reason="PostgreSQL not running on :5432")
def test_postgres_unavailable_healthz_503_then_recovers_and_work_resumes(tmp_path):
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.restore()
    with private_redis(tmp_path / "redis") as redis, postgres_database() as db:
        via_proxy = db.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        stack = Stack(tmp_path / "data", database_url=via_proxy, redis_url=redis.url)
        try:
            stack.migrate()
            built = stack.setup(**SLOW, submit=2)
            ids = built["submissions"]
            url = stack.web()
            stack.worker("w1")
            stack.beat()
            wait_until(lambda: get(url + "/healthz")[0] == 200, timeout=60, what="healthy")
            wait_until(
                lambda: stack.sql(
                    "SELECT 1 FROM submissions_submission WHERE status IN ('validating', 'running')"
                ),
                timeout=90,
                what="an evaluation in progress",
            )
            proxy.cut()
            status, body = wait_until(
                lambda: (r := get(url + "/healthz", timeout=15))[0] == 503 and r,
                timeout=30,
                what="503",
            )
            assert body["database"]["ok"] is False and body["status"] == "unavailable"
            time.sleep(6)  # longer than WORKER_STALE_SECONDS: heartbeats and tasks fail
            proxy.restore()
            wait_until(lambda: get(url + "/healthz")[0] == 200, timeout=60, what="recovery")
            stack.wait_final(ids, timeout=150)
            _assert_complete(stack, ids, built["cases"])
            log = stack.log("w1")
            assert "OperationalError" in log or "heartbeat failed" in log  # it did see the outage
        finally:
            stack.close()
            proxy.cut()


def test_redis_restarted_during_a_run_loses_nothing(tmp_path):
    with private_redis(tmp_path / "redis") as redis:
        stack = Stack(tmp_path / "data", redis_url=redis.url)
        try:
            stack.migrate()
            built = stack.setup(**SLOW, submit=3)
            ids = built["submissions"]
            stack.worker("w1")
            stack.beat()
            wait_until(
                lambda: stack.sql(
                    "SELECT 1 FROM submissions_submission WHERE status IN ('validating', 'running')"
                ),
                timeout=90,
                what="an evaluation in progress",
            )
            queued = stack.sql("SELECT count(*) FROM submissions_submission WHERE status='queued'")
            assert queued[0][0] >= 1  # some wait in the broker, one is running
            redis.stop()  # queued messages are gone with it
            time.sleep(4)
            redis.start()
            stack.wait_final(ids, timeout=150)
            _assert_complete(stack, ids, built["cases"])
        finally:
            stack.close()
