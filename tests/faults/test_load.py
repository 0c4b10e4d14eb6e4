"""Load: 200 submissions from 20 participants through the REST API on PostgreSQL and Redis,
real bwrap sandboxes, 2 worker processes x 2: all finish, none lost or duplicated, quotas
exact (issue 10)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.services import postgres_database, reachable

from .services import private_redis
from .stack import Stack, api, api_submit

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not reachable("127.0.0.1", 5432), reason="PostgreSQL not running on :5432"),
]
PARTICIPANTS, EACH = 20, 10


def test_200_submissions_from_20_participants(tmp_path):
    with private_redis(tmp_path / "redis") as redis, postgres_database() as db:
        stack = Stack(
            tmp_path / "data",
            database_url=db,
            redis_url=redis.url,
            WORKER_HEARTBEAT_SECONDS=1,
            WORKER_STALE_SECONDS=20,
            RECONCILE_EVERY_SECONDS=5,
            RECONCILE_LOST_MESSAGE_SECONDS=90,
        )
        try:
            stack.migrate()
            built = stack.setup(
                subjects=1, images=1, participants=PARTICIPANTS, per_day=EACH, n_bootstrap=10
            )
            url = stack.web(workers=2)
            for name in ("w1", "w2"):  # evaluation; rankings on their own worker
                stack.worker(name, concurrency=2, queues="evaluation,default")
            stack.worker("stats", queues="statistics")
            stack.beat()
            model, phase = Path(built["model"]), built["phase"]
            jobs = [(u["token"], k) for k in range(EACH) for u in built["users"]]
            start = time.monotonic()

            def send(job):
                token, k = job
                return api_submit(url, token, phase, model, f"run {k}")

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(send, jobs))
            assert [c for c, _ in results] == [201] * len(jobs), [
                r for r in results if r[0] != 201
            ][:3]
            ids = [body["id"] for _, body in results]
            assert len(set(ids)) == PARTICIPANTS * EACH
            # The quota is exact: the 11th is refused for everybody.
            for u in built["users"][:3]:
                code, body = api_submit(url, u["token"], phase, model, "one too many")
                assert code == 400 and "submissions" in str(body), body
            subs = stack.wait_final(ids, timeout=300)
            elapsed = time.monotonic() - start
            assert {s["status"] for s in subs.values()} == {"succeeded"}, [
                s for s in subs.values() if s["status"] != "succeeded"
            ][:3]
            assert len(stack.submissions()) == PARTICIPANTS * EACH  # nothing extra either
            n_cases = stack.sql("SELECT count(*) FROM submissions_casescore")[0][0]
            assert n_cases == PARTICIPANTS * EACH * built["cases"]
            assert stack.duplicate_rows() == 0
            for u in built["users"]:
                code, quota = api(f"{url}/api/phases/{phase}/quota/", u["token"])
                assert code == 200 and quota["used_total"] == EACH and quota["remaining_total"] == 0
                assert quota["running"] == 0
            print(
                f"\n200 submissions finished in {elapsed:.1f} s "
                f"({PARTICIPANTS * EACH / elapsed:.2f}/s)"
            )
        finally:
            stack.close()
