"""Celery tasks of the evaluation pipeline. Thin: the logic lives in the pipeline package,
which sends these tasks by name (pipeline/queue.py) and never imports this module.

Evaluation tasks are acks_late + reject_on_worker_lost (a killed worker's message comes
back) and idempotent (stale attempts are no-ops), so redelivery never duplicates results.

Errors are sorted by whose they are, and none of them is charged to the participant:
- the database is unreachable: nothing can be recorded, so the same message is retried with
  a back-off (Celery retry); if even that fails, the task heartbeat stops and the reconciler
  re-queues the claim;
- any other exception on our side: a new attempt (pipeline.requeue_*), up to a limit."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from ops.heartbeat import live_workers, stale_before, stale_seconds

from . import pipeline

log = logging.getLogger(__name__)
EVAL = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}
DB_DOWN = (OperationalError, InterfaceError)
DB_RETRIES = 40  # with the back-off below: about half an hour of database outage


def _db_retry_countdown(retries: int) -> float:
    # Longer than WORKER_STALE_SECONDS: the retried message may then take over the claim
    # whose heartbeat stopped while the database was away.
    return min(60.0, stale_seconds() + 2.0 ** min(retries, 5))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"[:4000]


def _retry_on_db_down(task, exc: BaseException):
    close_old_connections()
    log.warning("database unavailable in %s (%s); retrying", task.name, exc)
    return task.retry(
        exc=exc, countdown=_db_retry_countdown(task.request.retries), max_retries=DB_RETRIES
    )


@shared_task(name="submissions.tasks.evaluate_submission", bind=True, **EVAL)
def evaluate_submission(self, submission_id: int, attempt: int) -> str:
    try:
        return pipeline.start_evaluation(
            submission_id, attempt, hostname=self.request.hostname or ""
        )
    except DB_DOWN as exc:
        raise _retry_on_db_down(self, exc) from exc
    except Exception as exc:  # noqa: BLE001 - a platform bug must not kill the worker or charge quota
        log.exception("evaluation of submission %s failed", submission_id)
        public = exc.public if isinstance(exc, pipeline.PlatformProblem) else ""
        try:
            return pipeline.requeue_submission(submission_id, _reason(exc), public)
        except DB_DOWN as exc2:
            raise _retry_on_db_down(self, exc2) from exc2


@shared_task(name="submissions.tasks.evaluate_chunk", bind=True, **EVAL)
def evaluate_chunk(self, chunk_id: int, attempt: int) -> str:
    try:
        return pipeline.run_chunk(chunk_id, attempt, hostname=self.request.hostname or "")
    except DB_DOWN as exc:
        raise _retry_on_db_down(self, exc) from exc
    except Exception as exc:  # noqa: BLE001
        log.exception("chunk %s failed", chunk_id)
        public = exc.public if isinstance(exc, pipeline.PlatformProblem) else ""
        try:
            return pipeline.requeue_chunk(chunk_id, _reason(exc), public)
        except DB_DOWN as exc2:
            raise _retry_on_db_down(self, exc2) from exc2


@shared_task(
    name="submissions.tasks.finalize_submission", bind=True, acks_late=True, ignore_result=True
)
def finalize_submission(self, submission_id: int, attempt: int) -> str:
    try:
        return pipeline.finalize(submission_id, attempt)
    except DB_DOWN as exc:
        raise _retry_on_db_down(self, exc) from exc


@shared_task(name="submissions.tasks.reconcile", ignore_result=True)
def reconcile() -> dict:
    """Repair what a worker, broker or database failure left behind (beat runs it every
    RECONCILE_EVERY_SECONDS). Every action is safe to repeat and to race with live tasks:
    claims are taken over only when their task heartbeat stopped, and messages are re-sent
    for the same attempt, which a live attempt ignores."""
    from .models import Chunk, Status, Submission

    now = timezone.now()
    stale = stale_before(now)
    lost = now - timedelta(seconds=settings.RECONCILE_LOST_MESSAGE_SECONDS)
    alive = live_workers(now).exists()
    done = {"chunks_requeued": 0, "submissions_requeued": 0, "resent": 0}

    # Claimed work whose task heartbeat stopped: its worker (or pool child) died.
    for chunk in Chunk.objects.filter(
        status="running", submission__status=Status.RUNNING, updated_at__lt=stale
    ):
        why = f"task heartbeat of chunk {chunk.index} (worker {chunk.worker}) stopped"
        done["chunks_requeued"] += pipeline.requeue_chunk(chunk.pk, why) == "requeued"
    for sub in Submission.objects.filter(status=Status.VALIDATING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)
    ):
        why = f"validation heartbeat (worker {sub.worker}) stopped"
        done["submissions_requeued"] += pipeline.requeue_submission(sub.pk, why) == "requeued"

    if not alive:
        return done  # nobody to run re-sent messages: they would only pile up
    # Messages possibly lost with the broker (restart without persistence, publish failure):
    # re-send the same attempt. A duplicate is a no-op (see pipeline's claims).
    for chunk in Chunk.objects.filter(
        status="queued", submission__status=Status.RUNNING, updated_at__lt=lost
    ):
        Chunk.objects.filter(pk=chunk.pk, status="queued").update(updated_at=now)
        pipeline.queue_chunk(chunk.pk, chunk.attempt)
        done["resent"] += 1
    waiting = Submission.objects.annotate(since=Coalesce("heartbeat_at", "created_at"))
    for sub in waiting.filter(status=Status.QUEUED, since__lt=lost):
        Submission.objects.filter(pk=sub.pk, status=Status.QUEUED).update(heartbeat_at=now)
        pipeline.queue_start(sub.pk, sub.attempt)
        done["resent"] += 1
    for sub in waiting.filter(status=Status.SCORING, since__lt=lost):
        Submission.objects.filter(pk=sub.pk, status=Status.SCORING).update(heartbeat_at=now)
        pipeline.queue_finalize(sub.pk, sub.attempt)
        done["resent"] += 1
    if any(done.values()):
        log.info("reconcile: %s", done)
    return done
