"""Claims: a step takes its row for the current attempt under a row lock before working.

A redelivered (acks_late) or stale message is a no-op: the claim fails when the attempt is
old, the row is final, or a live attempt still holds it (its task heartbeat is fresh, see
ops.heartbeat). Each claim returns the claimed row, or None and the reason it was a no-op."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from ops.heartbeat import is_alive

from ..models import Chunk, Status, Submission


def lock_chunk(chunk_id: int) -> Chunk | None:
    """The chunk and its submission, row-locked until the transaction ends."""
    return (
        Chunk.objects.select_for_update().select_related("submission").filter(pk=chunk_id).first()
    )


def claim_submission(
    submission_id: int, attempt: int, hostname: str = ""
) -> tuple[Submission | None, str]:
    """Claim a queued submission for validation (status VALIDATING, heartbeat now)."""
    with transaction.atomic():
        sub = Submission.objects.select_for_update().filter(pk=submission_id).first()
        if sub is None or sub.attempt != attempt:
            return None, "stale"
        if sub.status not in (Status.QUEUED, Status.VALIDATING):
            return None, f"skipped ({sub.status})"
        if sub.status == Status.VALIDATING and is_alive(sub.heartbeat_at):
            return None, "duplicate (validating elsewhere)"  # a live attempt holds the claim
        sub.status = Status.VALIDATING
        sub.worker = hostname
        sub.started_at = sub.started_at or timezone.now()
        sub.heartbeat_at = timezone.now()
        sub.save()
    return sub, "claimed"


def claim_chunk(chunk_id: int, attempt: int, hostname: str = "") -> tuple[Chunk | None, str]:
    """Claim a chunk of a running submission for inference (status running)."""
    with transaction.atomic():
        chunk = lock_chunk(chunk_id)
        if chunk is None or chunk.attempt != attempt or chunk.status in ("done", "cancelled"):
            return None, "stale"
        sub = chunk.submission
        if sub.status not in (Status.RUNNING, Status.SCORING):
            return None, f"skipped ({sub.status})"
        if chunk.status == "running" and is_alive(chunk.updated_at):
            return None, "duplicate (running elsewhere)"  # a live attempt holds the claim
        chunk.status = "running"
        chunk.worker = hostname
        chunk.save()
    return chunk, "claimed"


def submission_touch(submission_id: int, attempt: int) -> Callable[[], int]:
    """Task heartbeat of a validation: 0 rows touched once the claim was lost."""

    def touch() -> int:
        return Submission.objects.filter(
            pk=submission_id, attempt=attempt, status=Status.VALIDATING
        ).update(heartbeat_at=timezone.now())

    return touch


def chunk_touch(chunk_id: int, attempt: int) -> Callable[[], int]:
    """Task heartbeat of a chunk run: 0 rows touched once the claim was lost."""

    def touch() -> int:
        return Chunk.objects.filter(pk=chunk_id, attempt=attempt, status="running").update(
            updated_at=timezone.now()
        )

    return touch
