"""Platform problems: start again as a new attempt, never charged, and give up (still
uncharged) after MAX_PLATFORM_RETRIES. Lost workers, crashes and a full disk end up here,
from the task wrappers and from the reconciler."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import Status, Submission
from ..services import PLATFORM_ERROR
from .claim import lock_chunk
from .finalise import fail_submission
from .persist import clear_results
from .queue import queue_chunk, queue_start

MAX_PLATFORM_RETRIES = 2


def gave_up_reason(public: str = "") -> str:
    base = "evaluation failed repeatedly because of platform problems"
    return f"{base} ({public})" if public else base


def requeue_submission(submission_id: int, reason: str, public: str = "") -> str:
    """Start the whole evaluation again as a new attempt after a platform problem (lost worker
    or message, crash): "requeued", "failed" (gave up, uncharged) or "final" (nothing to do).
    `reason` (may hold host paths and tracebacks) is kept internal; participants see
    `public` only."""
    with transaction.atomic():
        sub = Submission.objects.select_for_update().filter(pk=submission_id).first()
        if sub is None or sub.is_final:
            return "final"
        if sub.platform_retries >= MAX_PLATFORM_RETRIES:
            internal = f"gave up after {sub.platform_retries} platform retries; last: {reason}"
        else:
            sub.platform_retries += 1
            sub.attempt += 1
            sub.status = Status.QUEUED
            shown = f" ({public})" if public else ""
            sub.status_reason = (
                f"re-queued after a platform problem{shown}; not counted against your quota"
            )
            sub.internal_error = f"retry {sub.platform_retries}: {reason}"[:10000]
            sub.progress_done = 0
            sub.worker = ""
            sub.heartbeat_at = timezone.now()  # "queued since", for the reconciler
            sub.save()
            sub.chunks.all().delete()
            clear_results(sub)
            attempt = sub.attempt
            transaction.on_commit(lambda: queue_start(submission_id, attempt))
            return "requeued"
    fail_submission(submission_id, PLATFORM_ERROR, gave_up_reason(public), internal=internal)
    return "failed"


def requeue_chunk(chunk_id: int, reason: str, public: str = "") -> str:
    """Run one chunk again as a new attempt (back-off 2, 4 s); after MAX_PLATFORM_RETRIES the
    submission fails, uncharged."""
    with transaction.atomic():
        chunk = lock_chunk(chunk_id)
        if chunk is None or chunk.status in ("done", "cancelled") or chunk.submission.is_final:
            return "final"
        if chunk.retries >= MAX_PLATFORM_RETRIES:
            sub_id = chunk.submission_id
            give_up = True
        else:
            give_up = False
            chunk.retries += 1
            chunk.attempt += 1
            chunk.status = "queued"
            chunk.worker = ""
            chunk.save()
            cid, attempt, retries = chunk.pk, chunk.attempt, chunk.retries
            transaction.on_commit(lambda: queue_chunk(cid, attempt, countdown=2.0**retries))
    if give_up:
        fail_submission(sub_id, PLATFORM_ERROR, gave_up_reason(public), internal=reason)
        return "failed"
    return "requeued"
