"""How a submission ends: merged and succeeded, failed (charged or not), or misconfigured.

Failure policy: failures caused by the model (PARTICIPANT_KINDS) count against the quota and
carry a participant-facing reason; platform problems never count; a phase the organizers
misconfigured never counts either, and the organizers are told."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from challenges.models import audit
from evaluator.harness.errors import (
    FORMAT_ERROR,
    INVALID_OUTPUT,
    MEMORY,
    MODEL_ERROR,
    OUTPUT_TOO_LARGE,
    TIMEOUT,
    TOO_MANY_PROCESSES,
)

from ..models import CaseScore, Status, Submission
from ..notify import notify_finished, notify_organizers
from .persist import clear_results

# Failure kinds caused by the participant's model: these count against the quota.
# Anything observed inside the sandbox is the participant's (see evaluator.inference).
PARTICIPANT_KINDS = frozenset(
    {
        FORMAT_ERROR,
        MODEL_ERROR,
        INVALID_OUTPUT,
        TIMEOUT,
        MEMORY,
        TOO_MANY_PROCESSES,
        OUTPUT_TOO_LARGE,
    }
)
MISCONFIGURED = "phase_misconfigured"
PLATFORM_SUFFIX = " (a platform problem: not counted against your quota)"
MISCONFIGURED_PUBLIC = (
    "This phase is misconfigured; the organizers have been notified. "
    "This submission does not count against your quota."
)


def is_charged(kind: str) -> bool:
    """Whether a failure of this kind counts against the participant's quota."""
    return kind in PARTICIPANT_KINDS


def public_reason(kind: str, reason: str) -> str:
    """The participant-facing reason; uncharged failures say so."""
    if is_charged(kind) or kind == MISCONFIGURED:
        return reason
    return reason + PLATFORM_SUFFIX


def fail_submission(submission_id: int, kind: str, reason: str, *, internal: str = "") -> bool:
    """End a submission as failed (timed out for kind TIMEOUT), charged by `kind`, with no
    partial per-case results left behind. False when it was already final."""
    with transaction.atomic():
        sub = Submission.objects.select_for_update().get(pk=submission_id)
        if sub.is_final:
            return False
        sub.status = Status.TIMED_OUT if kind == TIMEOUT else Status.FAILED
        sub.failure_kind = kind
        sub.status_reason = public_reason(kind, reason)
        sub.internal_error = internal[:10000]
        sub.counts_against_quota = is_charged(kind)
        sub.finished_at = timezone.now()
        sub.save()
        sub.chunks.exclude(status="done").update(status="cancelled")
        clear_results(sub)
    notify_finished(sub)
    return True


def fail_misconfigured(submission_id: int, error: BaseException | str) -> bool:
    """The phase's task specification is invalid: the organizers' mistake, never charged.
    The participant gets MISCONFIGURED_PUBLIC; the details go to the audit trail and the
    organizers' inbox."""
    detail = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
    if not fail_submission(
        submission_id, MISCONFIGURED, MISCONFIGURED_PUBLIC, internal=f"task specification: {detail}"
    ):
        return False
    sub = Submission.objects.select_related("phase__task__challenge").get(pk=submission_id)
    phase = sub.phase
    audit(None, MISCONFIGURED, phase, submission=sub.pk, error=str(detail)[:2000])
    notify_organizers(
        phase.challenge,
        f"{phase.challenge.title} / {phase.task.title} / {phase.title} is misconfigured and "
        f"cannot evaluate submissions: {detail}",
        link=phase.get_absolute_url(),
    )
    return True


def finalize(submission_id: int, attempt: int) -> str:
    """Merge: status from the per-case rows, failed-case count, notification, and a debounced
    ranking when it succeeded. Stale or early calls are no-ops."""
    from leaderboards.tasks import schedule_ranking

    with transaction.atomic():
        sub = Submission.objects.select_for_update().filter(pk=submission_id).first()
        if sub is None or sub.attempt != attempt or sub.status != Status.SCORING:
            return "stale"
        if sub.chunks.exclude(status="done").exists():
            return "waiting"
        scores = CaseScore.objects.filter(submission=sub)
        n = scores.count()
        failed = scores.filter(ok=False).count()
        sub.n_cases_failed = failed
        sub.progress_done = n
        sub.finished_at = timezone.now()
        if n and failed == n:
            first = scores.filter(ok=False).first()
            reason = first.error if first else "no case produced a valid prediction"
            timed_out = first is not None and first.error_kind == TIMEOUT
            sub.status = Status.TIMED_OUT if timed_out else Status.FAILED
            # The first failed case's kind (memory_exceeded, too_many_processes, ...), when charged.
            kind = first.error_kind if first is not None else ""
            sub.failure_kind = kind if is_charged(kind) else MODEL_ERROR
            sub.status_reason = f"no case could be scored: {reason}"[:2000]
        else:
            sub.status = Status.SUCCEEDED
            sub.status_reason = f"{n - failed} of {n} cases scored" + (
                f"; {failed} failed and count with the worst value" if failed else ""
            )
        sub.save()
    notify_finished(sub)
    if sub.status == Status.SUCCEEDED:
        schedule_ranking(sub.phase_id)
    return sub.status
