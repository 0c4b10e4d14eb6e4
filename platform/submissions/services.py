"""Participant and organizer actions on submissions: quota, upload, cancel, choose, rerun,
disqualify.

Views and the REST API are thin wrappers around these functions. Each action runs in one
transaction under a row lock and leaves an audit entry; who may act is checked here, so no
caller can forget it (actor=None is the platform itself: scripts, the demo)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from challenges.models import Phase, Registration, Team, audit
from challenges.permissions import can_cancel_submission, can_choose_submission, is_organizer

from .models import (
    ACTIVE,
    DESCRIPTION_MAX,
    METHOD_NAME_MAX,
    PAPER_URL_MAX,
    Message,
    Status,
    Submission,
    http_url_validator,
)
from .selectors import entry_group, owner_submissions, team_of
from .storage import UploadError, commit_upload, discard, store_upload

PLATFORM_ERROR = "platform_error"


class SubmissionRefused(ValueError):
    """The submission was not accepted; the message says why and what to do."""


@dataclass
class Quota:
    used_today: int
    per_day: int
    used_total: int
    total: int
    running: int
    max_concurrent: int
    resets_at: object

    @property
    def remaining_today(self) -> int:
        return max(0, min(self.per_day - self.used_today, self.total - self.used_total))

    @property
    def remaining_total(self) -> int:
        return max(0, self.total - self.used_total)

    def as_dict(self) -> dict:
        return {
            "used_today": self.used_today,
            "per_day": self.per_day,
            "remaining_today": self.remaining_today,
            "used_total": self.used_total,
            "total": self.total,
            "remaining_total": self.remaining_total,
            "running": self.running,
            "max_concurrent": self.max_concurrent,
            "resets_at": self.resets_at.isoformat(),
        }


def quota_for(phase: Phase, user, now=None) -> Quota:
    now = now or timezone.now()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Platform failures and cancellations never count, whatever set the flag.
    charged = (
        owner_submissions(phase, user)
        .filter(counts_against_quota=True)
        .exclude(status=Status.CANCELLED)
        .exclude(failure_kind=PLATFORM_ERROR)
    )
    return Quota(
        used_today=charged.filter(created_at__gte=day_start).count(),
        per_day=phase.submissions_per_day,
        used_total=charged.count(),
        total=phase.submissions_total,
        running=owner_submissions(phase, user).filter(status__in=ACTIVE).count(),
        max_concurrent=phase.max_concurrent,
        resets_at=day_start + timedelta(days=1),
    )


def check_can_submit(phase: Phase, user) -> None:
    challenge = phase.challenge
    if not user.is_authenticated:
        raise SubmissionRefused("log in to submit")
    if not Registration.objects.filter(challenge=challenge, user=user).exists():
        raise SubmissionRefused(
            "accept the challenge's terms (join the challenge) before submitting"
        )
    now = timezone.now()
    if now < phase.opens_at:
        raise SubmissionRefused(f"this phase opens at {phase.opens_at:%Y-%m-%d %H:%M} UTC")
    if phase.closes_at and now >= phase.closes_at:
        raise SubmissionRefused(f"this phase closed at {phase.closes_at:%Y-%m-%d %H:%M} UTC")
    if phase.test_dataset_id is None or not phase.case_ids:
        raise SubmissionRefused("this phase has no test data yet; the organizers have been told")
    q = quota_for(phase, user, now)
    if q.used_total >= q.total:
        raise SubmissionRefused(f"you have used all {q.total} submissions of this phase")
    if q.used_today >= q.per_day:
        raise SubmissionRefused(
            f"you have used today's {q.per_day} submissions; the next one is possible after "
            f"{q.resets_at:%Y-%m-%d %H:%M} UTC"
        )
    if q.running >= q.max_concurrent:
        raise SubmissionRefused(
            f"{q.running} of your submissions are still being evaluated (limit {q.max_concurrent})"
        )


def validate_submission_text(method_name: str, description: str, paper_url: str) -> None:
    """Refuse over-long texts and links that are not http(s) (page, API and scripts alike)."""
    if len(method_name) > METHOD_NAME_MAX:
        raise SubmissionRefused(f"the method name is longer than {METHOD_NAME_MAX} characters")
    if len(description) > DESCRIPTION_MAX:
        raise SubmissionRefused(
            f"the description has {len(description)} characters; at most {DESCRIPTION_MAX}"
        )
    if paper_url:
        if len(paper_url) > PAPER_URL_MAX:
            raise SubmissionRefused(f"the paper or code link is longer than {PAPER_URL_MAX}")
        try:
            http_url_validator(paper_url)
        except ValidationError as exc:
            raise SubmissionRefused(
                "the paper or code link must be an http:// or https:// address"
            ) from exc


def join_challenge(challenge, user) -> Registration:
    reg, _ = Registration.objects.get_or_create(challenge=challenge, user=user)
    return reg


def create_team(challenge, user, name: str) -> Team:
    """Kept for scripts and older callers; teams live in challenges.teams (invitations, leave,
    rename), whose refusals come back here as SubmissionRefused."""
    from challenges.teams import TeamError
    from challenges.teams import create_team as _create_team

    try:
        return _create_team(challenge, user, name)
    except TeamError as exc:
        raise SubmissionRefused(str(exc)) from exc


def submit(
    phase: Phase,
    user,
    chunks: Iterable[bytes],
    *,
    original_name: str,
    method_name: str,
    description: str = "",
    paper_url: str = "",
) -> Submission:
    """Store the upload, sniff its format (never load it) and queue the evaluation."""
    from evaluator.modelformats import ModelFormatError, inspect_model

    method_name = method_name.strip()
    validate_submission_text(method_name, description, paper_url)
    check_can_submit(phase, user)
    try:
        path, size, sha = store_upload(chunks, original_name, phase.max_upload_mb * 2**20)
    except UploadError as exc:
        raise SubmissionRefused(str(exc)) from exc
    try:
        info = inspect_model(path)
    except ModelFormatError as exc:
        discard(path)
        raise SubmissionRefused(f"{original_name}: {exc}") from exc
    name = commit_upload(path)  # the name in the "uploads" storage (xenobench/storage.py)
    with transaction.atomic():
        # Serialise quota checks of concurrent uploads (row lock on PostgreSQL; SQLite's
        # IMMEDIATE transactions serialise writers anyway).
        Phase.objects.select_for_update().get(pk=phase.pk)
        try:
            check_can_submit(phase, user)
        except SubmissionRefused:
            discard(name)
            raise
        sub = Submission.objects.create(
            phase=phase,
            user=user,
            team=team_of(user, phase.challenge),
            method_name=method_name or Path(original_name).stem[:METHOD_NAME_MAX],
            description=description,
            paper_url=paper_url,
            model_path=name,
            original_name=Path(original_name).name[:255],
            size_bytes=size,
            sha256=sha,
            model_format=info.format,
            progress_total=len(phase.case_ids),
        )
        transaction.on_commit(lambda: enqueue_evaluation(sub.pk, sub.attempt))
    return sub


def enqueue_evaluation(submission_id: int, attempt: int) -> None:
    """Publish the evaluation; if the broker is down the submission stays queued and the
    reconciler re-sends it, so the upload still succeeds."""
    from .pipeline import queue_start

    queue_start(submission_id, attempt)


def cancel(sub: Submission, actor) -> Submission:
    with transaction.atomic():
        sub = Submission.objects.select_for_update().get(pk=sub.pk)
        if actor is not None and not can_cancel_submission(actor, sub):
            raise PermissionDenied("only the submitting team and organizers can cancel")
        if sub.is_final:
            raise SubmissionRefused(f"submission #{sub.pk} has already {sub.status}")
        sub.status = Status.CANCELLED
        sub.status_reason = "cancelled (not counted against the quota)"
        sub.counts_against_quota = False
        sub.finished_at = timezone.now()
        sub.save()
        sub.chunks.exclude(status="done").update(status="cancelled")
        audit(actor, "cancel", sub)
    return sub


def _require_organizer(actor, challenge, what: str) -> None:
    if actor is not None and not is_organizer(actor, challenge):
        raise PermissionDenied(f"only organizers can {what}")


def _schedule_ranking(phase_id: int) -> None:
    """Debounced re-ranking; its countdown (seconds) outlasts the surrounding transaction."""
    from leaderboards.tasks import schedule_ranking

    schedule_ranking(phase_id)


def choose_submission(actor, submission: Submission) -> Submission:
    """The team's pick for a phase ranked by the "chosen" rule: exactly one chosen submission
    per team (or team-less participant) and phase, even when members choose concurrently."""
    with transaction.atomic():
        sub = (
            Submission.objects.select_for_update()
            .select_related("phase__task__challenge")
            .get(pk=submission.pk)
        )
        if actor is None or not can_choose_submission(actor, sub):
            raise PermissionDenied("only the submitting team chooses its leaderboard entry")
        if sub.phase.leaderboard_rule != "chosen":
            raise SubmissionRefused(
                f"this phase ranks by the rule '{sub.phase.get_leaderboard_rule_display()}'; "
                "teams choose their entry only where the rule is 'chosen by the team'"
            )
        if sub.status != Status.SUCCEEDED:
            raise SubmissionRefused(
                f"submission #{sub.pk} has {sub.status}; only finished evaluations can be chosen"
            )
        if sub.disqualified:
            raise SubmissionRefused(f"submission #{sub.pk} is disqualified")
        # Lock the whole group: a concurrent choice waits here and then replaces this one.
        group = entry_group(sub).select_for_update()
        previous = list(group.filter(chosen=True).exclude(pk=sub.pk).values_list("pk", flat=True))
        group.exclude(pk=sub.pk).filter(chosen=True).update(chosen=False)
        if not sub.chosen:
            sub.chosen = True
            sub.save(update_fields=["chosen"])
        audit(actor, "choose", sub, replaced=previous)
        _schedule_ranking(sub.phase_id)
    return sub


def rerun(sub: Submission, actor, reason: str = "rerun by organizer") -> Submission:
    """Evaluate again from scratch (new attempt); old results are replaced, quota unchanged."""
    with transaction.atomic():
        sub = Submission.objects.select_for_update().get(pk=sub.pk)
        _require_organizer(actor, sub.phase.challenge, "re-run submissions")
        sub.attempt += 1
        sub.status = Status.QUEUED
        sub.status_reason = reason
        sub.failure_kind = sub.internal_error = ""
        sub.progress_done = 0
        sub.progress_total = len(sub.phase.case_ids)
        sub.started_at = sub.finished_at = None
        sub.n_cases_failed = 0
        sub.save()
        sub.chunks.all().delete()
        sub.case_scores.all().delete()
        sub.label_scores.all().delete()
        audit(actor, "rerun", sub, attempt=sub.attempt)
        attempt = sub.attempt
        transaction.on_commit(lambda: enqueue_evaluation(sub.pk, attempt))
    return sub


def rerun_phase(phase: Phase, actor) -> int:
    """Re-run every submission of a phase that was not cancelled, all or none."""
    with transaction.atomic():
        phase = Phase.objects.select_for_update().select_related("task__challenge").get(pk=phase.pk)
        _require_organizer(actor, phase.challenge, "re-run a phase")
        subs = list(phase.submissions.exclude(status=Status.CANCELLED))
        for s in subs:
            rerun(s, actor, reason="phase re-evaluated by organizer")
        audit(actor, "rerun_phase", phase, submissions=len(subs))
    return len(subs)


def set_disqualified(sub: Submission, actor, disqualified: bool = True, reason: str = "") -> None:
    with transaction.atomic():
        sub = Submission.objects.select_for_update().get(pk=sub.pk)
        _require_organizer(actor, sub.phase.challenge, "disqualify submissions")
        sub.disqualified = disqualified
        sub.save(update_fields=["disqualified"])
        audit(actor, "disqualify" if disqualified else "requalify", sub, reason=reason)
        _schedule_ranking(sub.phase_id)


def mark_inbox_read(user) -> int:
    """Mark the user's messages read (the inbox page shows them first)."""
    return Message.objects.filter(user=user, read=False).update(read=True)
