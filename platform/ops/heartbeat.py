"""Task-level heartbeats: while a long task runs, a thread touches its database row.

The reconciler treats a claimed row whose heartbeat stopped as lost, whatever killed it: a
machine gone, `kill -9` of the worker or of its pool child, a message lost with the broker,
an exception that could not even be recorded. Worker heartbeats (signals.py) cannot tell
which of a live worker's tasks died; this can."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


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
