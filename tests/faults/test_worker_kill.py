"""kill -9 of a worker in the middle of an evaluation (issue 10, issue 7 reconciliation).

A slow but legitimate model keeps a chunk busy for seconds; the worker running it is killed
with its whole process group (a machine going away). A second worker and the reconciler
(beat) must complete the submission exactly once: every case scored once, no duplicate
rows, succeeded, charged once. Old messages redelivered afterwards are no-ops."""

from __future__ import annotations

import pytest

from tests.integration.procs import wait_until
from tests.integration.services import postgres_database, reachable

from .services import private_redis
from .stack import Stack

pytestmark = pytest.mark.integration

SPEC = {"subjects": 2, "images": 3, "hw": (24, 32), "chunk_size": 3, "model": "slow", "submit": 1}


def _kill_mid_chunk_and_recover(stack: Stack) -> None:
    stack.migrate()
    built = stack.setup(**SPEC)
    (sub,) = built["submissions"]
    n = built["cases"]
    stack.worker("doomed")
    # Wait until the doomed worker is inside a chunk and has scored part of it.
    wait_until(
        lambda: stack.sql(
            "SELECT 1 FROM submissions_chunk c JOIN submissions_submission s "
            "ON s.id = c.submission_id WHERE c.status = 'running' AND c.worker LIKE 'doomed@%%' "
            "AND s.progress_done >= 1"
        ),
        timeout=120,
        what="a chunk in progress on the doomed worker",
    )
    killed = [c["index"] for c in stack.chunks(sub) if c["status"] == "running"]
    stack.kill("doomed")
    assert stack.submissions([sub])[sub]["status"] == "running"
    stack.worker("rescuer")
    stack.beat()
    state = stack.wait_final([sub], timeout=150)[sub]
    assert state["status"] == "succeeded", (state, stack.log("rescuer")[-3000:])
    cases, labels = stack.row_counts(sub)
    assert cases == n and stack.duplicate_rows() == 0
    chunks = stack.chunks(sub)
    assert len(chunks) == 2 and all(c["status"] == "done" for c in chunks)
    # The killed chunk ran again on the rescuer: re-queued by the reconciler (a new attempt)
    # or taken over from the redelivered message once the doomed heartbeat went stale.
    by_index = {c["index"]: c for c in chunks}
    assert killed and all(
        by_index[i]["worker"].startswith("rescuer@") or by_index[i]["retries"] >= 1 for i in killed
    ), (killed, chunks)
    assert state["platform_retries"] == 0 and state["counts_against_quota"]
    charged = stack.sql(
        "SELECT count(*) FROM submissions_submission WHERE user_id=%s AND counts_against_quota",
        (state["user_id"],),
    )[0][0]
    assert charged == 1  # charged exactly once

    # Redelivery of every old message (what acks_late does after a crash) is a no-op.
    before = stack.sql("SELECT id, dsc FROM submissions_casescore ORDER BY id")
    log_before = stack.log("rescuer").count("succeeded in")
    stack.send("submissions.tasks.evaluate_submission", [sub, 1], "evaluation")
    for cid, attempt in stack.sql("SELECT id, attempt FROM submissions_chunk"):
        for old in range(1, attempt + 1):
            stack.send("submissions.tasks.evaluate_chunk", [cid, old], "evaluation")
    stack.send("submissions.tasks.finalize_submission", [sub, 1], "default")
    sent = 2 + sum(a for _, a in stack.sql("SELECT id, attempt FROM submissions_chunk"))
    wait_until(
        lambda: stack.log("rescuer").count("succeeded in") >= log_before + sent,
        timeout=60,
        what="redelivered messages handled",
    )
    assert stack.sql("SELECT id, dsc FROM submissions_casescore ORDER BY id") == before
    assert stack.submissions([sub])[sub]["status"] == "succeeded"
    assert stack.row_counts(sub) == (cases, labels)


def test_kill_worker_mid_chunk_embedded_broker(tmp_path):
    """Filesystem broker: the killed worker's message is gone; the reconciler re-queues."""
    stack = Stack(tmp_path)
    try:
        _kill_mid_chunk_and_recover(stack)
    finally:
        stack.close()


@pytest.mark.skipif(not reachable("127.0.0.1", 5432), reason="PostgreSQL not running on :5432")
def test_kill_worker_mid_chunk_redis_postgres(tmp_path):
    """Redis + PostgreSQL: the unacked message comes back (short visibility timeout) and the
    reconciler re-queues too; whichever loses the race is a no-op."""
    with private_redis(tmp_path / "redis") as redis, postgres_database() as db:
        stack = Stack(
            tmp_path / "data", database_url=db, redis_url=redis.url, CELERY_VISIBILITY_TIMEOUT=6
        )
        try:
            _kill_mid_chunk_and_recover(stack)
        finally:
            stack.close()
