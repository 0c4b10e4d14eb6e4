"""Permission-aware queries for challenges, tasks and phases: pages, the API and exports read
through these, so the visibility rules of `permissions` are applied in one place.

A challenge the user may not see answers exactly like a missing one (Http404)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from .models import Challenge, Phase, Task
from .permissions import can_view_challenge, challenge_filter


def visible_challenges(user) -> QuerySet[Challenge]:
    """Challenges the user may read (public, organized, registered; staff: all)."""
    qs = Challenge.objects.prefetch_related("tasks")
    if user.is_authenticated and user.is_staff:
        return qs
    return qs.filter(challenge_filter(user)).distinct()


def get_challenge_for(user, slug: str) -> Challenge:
    challenge = get_object_or_404(Challenge, slug=slug)
    if not can_view_challenge(user, challenge):
        raise Http404("No such challenge")  # private challenges do not reveal they exist
    return challenge


def get_task_for(user, slug: str, task: str) -> Task:
    return get_object_or_404(Task, challenge=get_challenge_for(user, slug), slug=task)


def get_phase_for(user, slug: str, task: str, phase: str) -> Phase:
    challenge = get_challenge_for(user, slug)
    return get_object_or_404(
        Phase.objects.select_related("task__challenge"),
        task__challenge=challenge,
        task__slug=task,
        slug=phase,
    )


def visible_phases(user, task: Task | None = None) -> QuerySet[Phase]:
    """Phases of the challenges the user may read (their results are filtered separately)."""
    qs = Phase.objects.select_related("task__challenge")
    if task is not None:
        qs = qs.filter(task=task)
    if not (user.is_authenticated and user.is_staff):
        ids = Challenge.objects.filter(challenge_filter(user)).values("pk")
        qs = qs.filter(task__challenge__in=ids)
    return qs
