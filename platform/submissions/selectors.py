"""Permission-aware queries for submissions and messages: the pages and the API list and open
submissions through these (rules in challenges.permissions)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from challenges.models import Membership, Phase, Team
from challenges.permissions import can_view_submission, submission_filter

from .models import Message, Status, Submission


class BadFilter(ValueError):
    """A list filter the caller gave is malformed; the message says what was expected."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def team_of(user, challenge) -> Team | None:
    m = Membership.objects.filter(user=user, challenge=challenge).select_related("team").first()
    return m.team if m else None


def owner_submissions(phase: Phase, user) -> QuerySet[Submission]:
    """Submissions that share a quota with this user's: the whole team's, or the user's own."""
    team = team_of(user, phase.challenge)
    qs = Submission.objects.filter(phase=phase)
    return qs.filter(team=team) if team else qs.filter(user=user, team__isnull=True)


def entry_group(sub: Submission) -> QuerySet[Submission]:
    """The submissions of the same team (or the same team-less participant) in sub's phase:
    the group that one chosen entry represents on the leaderboard."""
    qs = Submission.objects.filter(phase_id=sub.phase_id)
    if sub.team_id:
        return qs.filter(team_id=sub.team_id)
    return qs.filter(user_id=sub.user_id, team__isnull=True)


def visible_submissions(
    user, *, phase: int | str | None = None, status: str | None = None
) -> QuerySet[Submission]:
    """Submissions the user may open (own, the team's, organized challenges'; staff: all),
    newest first, optionally of one phase (id) and one status."""
    qs = Submission.objects.select_related("phase__task__challenge", "team", "user").order_by(
        "-created_at"
    )
    if not (user.is_authenticated and user.is_staff):
        qs = qs.filter(submission_filter(user)).distinct()
    if phase:
        if not str(phase).isdigit():
            raise BadFilter("phase", f"expected a phase id (a number), not {phase!r}")
        qs = qs.filter(phase_id=int(phase))
    if status:
        if status not in Status.values:
            raise BadFilter(
                "status", f"unknown status {status!r}; one of {', '.join(Status.values)}"
            )
        qs = qs.filter(status=status)
    return qs


def get_submission_for(user, pk: int) -> Submission:
    """One submission the user may open; Http404 otherwise, worded like a missing one (the
    filter and the one-object rule must both allow it)."""
    sub = get_object_or_404(visible_submissions(user), pk=pk)
    if not can_view_submission(user, sub):
        raise Http404("No Submission matches the given query.")
    return sub


def submitted_by(user, status: str | None = None) -> QuerySet[Submission]:
    """The user's own uploads across all challenges (the "my submissions" page)."""
    qs = Submission.objects.filter(user=user).select_related("phase__task__challenge")
    return qs.filter(status=status) if status else qs


def inbox(user) -> QuerySet[Message]:
    return Message.objects.filter(user=user)
