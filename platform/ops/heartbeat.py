"""Heartbeats and staleness: the one place that decides whether a worker or a task is alive.

Worker heartbeats (signals.py) and task heartbeats (`task_heartbeat` below: while a long task
runs, a thread touches its database row) are both judged by `stale_before` / `is_alive`, so
/healthz, the reconciler and the pipeline's claims agree on what "stopped" means.

The reconciler treats a claimed row whose heartbeat stopped as lost, whatever killed it: a
machine gone, `kill -9` of the worker or of its pool child, a message lost with the broker,
an exception that could not even be recorded. Worker heartbeats (signals.py) cannot tell
which of a live worker's tasks died; this can."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)


def stale_seconds() -> float:
    """How long a heartbeat may be silent before its worker or task counts as gone."""
    return float(settings.WORKER_STALE_SECONDS)


def beat_every() -> float:
    """Period of task heartbeats: well inside `stale_seconds`."""
    return max(0.2, float(settings.WORKER_HEARTBEAT_SECONDS))


def stale_before(now: datetime | None = None) -> datetime:
    """Heartbeats older than this are stale."""
    return (now or timezone.now()) - timedelta(seconds=stale_seconds())


def is_alive(last_seen: datetime | None, now: datetime | None = None) -> bool:
    """Whether a heartbeat seen at `last_seen` is still fresh (never seen: not alive)."""
    return last_seen is not None and last_seen >= stale_before(now)


def live_workers(now: datetime | None = None):
    """WorkerHeartbeat rows of the workers alive now."""
    from .models import WorkerHeartbeat

    return WorkerHeartbeat.objects.filter(last_seen__gte=stale_before(now))


@contextmanager
def task_heartbeat(touch: Callable[[], object], every: float) -> Iterator[threading.Event]:
    """Run `touch()` every `every` seconds in a thread until the block ends.

    `touch` returns a falsy value when the claim was lost (another attempt took over); the
    yielded event is then set so the task may stop early. Database errors are logged, never
    raised: a missed beat must not kill the evaluation it reports on."""
    from django.db import connection

    stop = threading.Event()
    lost = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(every):
                try:
                    if not touch():
                        lost.set()
                        return
                except Exception:  # noqa: BLE001
                    log.warning("task heartbeat failed", exc_info=True)
                    connection.close()  # a broken connection is reopened on the next beat
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=loop, name="xenobench-task-heartbeat", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join(timeout=every + 10)
