"""Celery tasks of the evaluation pipeline. Thin: the logic lives in pipeline.py.

Evaluation tasks are acks_late + reject_on_worker_lost (a killed worker's message comes
back) and idempotent (stale attempts are no-ops), so redelivery never duplicates results."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import pipeline

log = logging.getLogger(__name__)
EVAL = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(name="submissions.tasks.evaluate_submission", bind=True, **EVAL)
def evaluate_submission(self, submission_id: int, attempt: int) -> str:
    try:
        return pipeline.start_evaluation(
            submission_id, attempt, hostname=self.request.hostname or ""
        )
    except Exception as exc:  # noqa: BLE001 - a platform bug must not kill the worker or charge quota
        log.exception("evaluation of submission %s failed", submission_id)
        return pipeline.requeue_submission(
            submission_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"[:4000]
        )


@shared_task(name="submissions.tasks.evaluate_chunk", bind=True, **EVAL)
def evaluate_chunk(self, chunk_id: int, attempt: int) -> str:
    try:
        return pipeline.run_chunk(chunk_id, attempt, hostname=self.request.hostname or "")
    except Exception as exc:  # noqa: BLE001
        log.exception("chunk %s failed", chunk_id)
        return pipeline.requeue_chunk(
            chunk_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"[:4000]
        )


@shared_task(name="submissions.tasks.finalize_submission", acks_late=True)
def finalize_submission(submission_id: int, attempt: int) -> str:
    return pipeline.finalize(submission_id, attempt)


@shared_task(name="submissions.tasks.reconcile")
def reconcile() -> dict:
    """Re-queue work stuck after a worker or broker failure (runs every minute under beat)."""
    from ops.models import WorkerHeartbeat

    from .models import Chunk, Status, Submission

    now = timezone.now()
    alive = set(
        WorkerHeartbeat.objects.filter(
            last_seen__gte=now - timedelta(seconds=settings.WORKER_STALE_SECONDS)
        ).values_list("hostname", flat=True)
    )
    lost_after = now - timedelta(seconds=settings.RECONCILE_LOST_MESSAGE_SECONDS)
    done = {"chunks": 0, "submissions": 0}
    for chunk in Chunk.objects.filter(status="running", submission__status=Status.RUNNING):
        if chunk.worker and chunk.worker not in alive:
            done["chunks"] += (
                pipeline.requeue_chunk(chunk.pk, f"worker {chunk.worker} stopped responding")
                == "requeued"
            )
    for chunk in Chunk.objects.filter(
        status="queued", submission__status=Status.RUNNING, updated_at__lt=lost_after
    ):
        done["chunks"] += (
            pipeline.requeue_chunk(chunk.pk, "queued chunk was never picked up") == "requeued"
        )
    for sub in Submission.objects.filter(status=Status.VALIDATING):
        if sub.worker and sub.worker not in alive:
            done["submissions"] += (
                pipeline.requeue_submission(sub.pk, f"worker {sub.worker} stopped responding")
                == "requeued"
            )
    for sub in Submission.objects.filter(
        status=Status.QUEUED, created_at__lt=lost_after, started_at__isnull=True
    ):
        if not alive:
            continue  # nobody to run it: re-sending would only pile up messages
        done["submissions"] += (
            pipeline.requeue_submission(sub.pk, "queued submission was never picked up")
            == "requeued"
        )
    for sub in Submission.objects.filter(status=Status.SCORING, heartbeat_at__lt=lost_after):
        pipeline._queue_finalize(sub.pk, sub.attempt)
    return done
