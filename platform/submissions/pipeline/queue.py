"""Publishing the pipeline's Celery tasks by name, so the pipeline never imports tasks.py.

Every publish happens after the state change it announces has been committed, and a broker
outage must not turn that committed change into an error: the reconciler re-sends whatever
stays queued (submissions.tasks.reconcile)."""

from __future__ import annotations

import logging

from django.conf import settings

from ..models import Chunk

log = logging.getLogger(__name__)

EVALUATE_SUBMISSION = "submissions.tasks.evaluate_submission"
EVALUATE_CHUNK = "submissions.tasks.evaluate_chunk"
FINALIZE_SUBMISSION = "submissions.tasks.finalize_submission"


def send(name: str, args: list, queue: str, countdown: float | None = None) -> bool:
    """Publish task `name`; False (logged) when the broker refused."""
    from xenobench.celery import app

    try:
        app.send_task(name, args=args, queue=queue, countdown=countdown)
        return True
    except Exception:  # noqa: BLE001 - kombu raises many types when the broker is down
        log.warning("could not publish %s%s; the reconciler will re-send it", name, args)
        return False


def chunk_queue(chunk_id: int) -> str:
    """Phases with `gpu` run their chunks on GPU_QUEUE where one is configured."""
    gpu_queue = getattr(settings, "GPU_QUEUE", "")
    if gpu_queue and Chunk.objects.filter(pk=chunk_id, submission__phase__gpu=True).exists():
        return gpu_queue
    return "evaluation"


def queue_start(submission_id: int, attempt: int) -> bool:
    return send(EVALUATE_SUBMISSION, [submission_id, attempt], "evaluation")


def queue_chunk(chunk_id: int, attempt: int, countdown: float | None = None) -> bool:
    return send(EVALUATE_CHUNK, [chunk_id, attempt], chunk_queue(chunk_id), countdown)


def queue_chunks(chunk_ids: list[int]) -> None:
    for chunk in Chunk.objects.filter(pk__in=chunk_ids):
        queue_chunk(chunk.pk, chunk.attempt)


def queue_finalize(submission_id: int, attempt: int) -> bool:
    return send(FINALIZE_SUBMISSION, [submission_id, attempt], "default")
