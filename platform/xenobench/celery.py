"""The Celery app. Queues: default (light work), evaluation (sandboxed model runs, one at a
time per worker process), statistics (ranking recomputation)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # platform/ as a source root
from xenobench.paths import ensure_on_path  # noqa: E402

ensure_on_path()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xenobench.settings")

from celery import Celery  # noqa: E402
from kombu import Queue  # noqa: E402

app = Celery("xenobench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue("default"), Queue("evaluation"), Queue("statistics")],
    task_default_queue="default",
    task_routes={
        "submissions.tasks.evaluate_*": {"queue": "evaluation"},
        "leaderboards.tasks.*": {"queue": "statistics"},
    },
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=24 * 3600,
    broker_connection_retry_on_startup=True,
    # Survive broker restarts: reconnect forever; a running evaluation keeps running (its
    # results go to the database, not the broker) and is never cancelled on connection loss.
    broker_connection_max_retries=None,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    result_backend_always_retry=True,
    result_backend_max_retries=5,
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks()


def configure_time_limits() -> None:
    from django.conf import settings

    app.conf.task_annotations = {
        "submissions.tasks.evaluate_*": {
            "time_limit": settings.EVALUATION_TIME_LIMIT + 60,
            "soft_time_limit": settings.EVALUATION_TIME_LIMIT,
        },
        "leaderboards.tasks.*": {
            "time_limit": settings.STATISTICS_TIME_LIMIT + 30,
            "soft_time_limit": settings.STATISTICS_TIME_LIMIT,
        },
    }


app.on_after_configure.connect(lambda sender, **kw: configure_time_limits())
