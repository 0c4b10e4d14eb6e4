"""Writes of the pipeline: every write replaces, never appends, and checks under row locks
that the attempt which computed the rows still holds its claim (else they are discarded)."""

from __future__ import annotations

import math

from django.db import transaction
from django.utils import timezone

from ..models import ACTIVE, CaseScore, Chunk, LabelScore, Status, Submission
from .queue import queue_chunks, queue_finalize
from .score import ChunkScores

LOG_CAP = 64 * 1024


def append_log(submission_id: int, text: str) -> None:
    """Add to the participant-visible log, keeping its last LOG_CAP characters."""
    if not text:
        return
    sub = Submission.objects.get(pk=submission_id)
    combined = (sub.log + ("\n" if sub.log else "") + text)[-LOG_CAP:]
    Submission.objects.filter(pk=submission_id).update(log=combined)


def clear_results(sub: Submission) -> None:
    """Drop a submission's per-case rows (inside the caller's transaction)."""
    CaseScore.objects.filter(submission=sub).delete()
    LabelScore.objects.filter(submission=sub).delete()


def create_chunks(submission_id: int, attempt: int, case_ids: list[str], size: int) -> int | None:
    """Replace the submission's chunks by slices of `size` cases, mark it running and queue the
    chunks after commit. None when the validating attempt lost its claim meanwhile."""
    size = max(1, size)
    n_chunks = max(1, math.ceil(len(case_ids) / size))
    with transaction.atomic():
        sub = Submission.objects.select_for_update().get(pk=submission_id)
        if sub.attempt != attempt or sub.status != Status.VALIDATING:
            return None
        sub.chunks.all().delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    submission=sub, index=i, case_ids=case_ids[i * size : (i + 1) * size], attempt=1
                )
                for i in range(n_chunks)
            ]
        )
        sub.status = Status.RUNNING
        sub.progress_total = len(case_ids)
        sub.progress_done = 0
        sub.save()
        ids = [c.pk for c in Chunk.objects.filter(submission=sub).order_by("index")]
        transaction.on_commit(lambda: queue_chunks(ids))
    return n_chunks


def store_chunk_scores(chunk: Chunk, scores: ChunkScores) -> str:
    """Replace the chunk's cases' rows in one transaction and mark the chunk done; the last
    chunk moves the submission to scoring and queues the merge after commit."""
    with transaction.atomic():
        locked = Chunk.objects.select_for_update().get(pk=chunk.pk)
        sub = Submission.objects.select_for_update().get(pk=chunk.submission_id)
        if (
            locked.attempt != chunk.attempt
            or locked.status != "running"
            or sub.status not in ACTIVE
        ):
            return "discarded (superseded)"
        CaseScore.objects.filter(submission=sub, case_id__in=locked.case_ids).delete()
        LabelScore.objects.filter(submission=sub, case_id__in=locked.case_ids).delete()
        CaseScore.objects.bulk_create([CaseScore(submission=sub, **row) for row in scores.cases])
        LabelScore.objects.bulk_create([LabelScore(submission=sub, **row) for row in scores.labels])
        locked.status = "done"
        locked.save()
        sub.progress_done = CaseScore.objects.filter(submission=sub).count()
        all_done = not sub.chunks.exclude(status="done").exists()
        if all_done:
            sub.status = Status.SCORING
        sub.heartbeat_at = timezone.now()
        sub.save()
        if all_done:
            sub_id, attempt = sub.pk, sub.attempt
            transaction.on_commit(lambda: queue_finalize(sub_id, attempt))
    return f"scored {len(scores.cases)} cases ({scores.failures} failed)"
