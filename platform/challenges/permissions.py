"""Object-level permission rules, in one place for pages, API and exports alike.

Roles: reader (anonymous), participant (registered), team member, organizer of this
challenge, staff. Hidden phases, team-only results and per-case results never leak.

Rules that select many objects come as a `Q` next to their one-object form, so selectors
filter querysets by the same rule that guards a single object."""

from __future__ import annotations

from django.db.models import Q

from .models import Challenge, Membership, Phase, Registration


def is_organizer(user, challenge: Challenge) -> bool:
    return challenge.is_organizer(user)


def can_view_challenge(user, challenge: Challenge) -> bool:
    if challenge.is_public or is_organizer(user, challenge):
        return True
    return bool(
        user.is_authenticated
        and Registration.objects.filter(challenge=challenge, user=user).exists()
    )


def challenge_filter(user) -> Q:
    """can_view_challenge as a Challenge filter (combine with .distinct())."""
    if user.is_authenticated and user.is_staff:
        return Q()
    if user.is_authenticated:
        return Q(is_public=True) | Q(organizers=user) | Q(registrations__user=user)
    return Q(is_public=True)


def is_participant(user, challenge: Challenge) -> bool:
    return bool(
        user.is_authenticated
        and Registration.objects.filter(challenge=challenge, user=user).exists()
    )


def can_view_leaderboard(user, phase: Phase) -> bool:
    """Everyone's ranked results: public phases, or hidden phases once published."""
    if not can_view_challenge(user, phase.challenge):
        return False
    return phase.results_public() or is_organizer(user, phase.challenge)


def owns(user, sub) -> bool:
    if not user.is_authenticated:
        return False
    if sub.user_id == user.pk:
        return True
    return bool(sub.team_id and Membership.objects.filter(team_id=sub.team_id, user=user).exists())


def can_view_submission(user, sub) -> bool:
    return owns(user, sub) or is_organizer(user, sub.phase.challenge)


def submission_filter(user) -> Q:
    """can_view_submission as a Submission filter (combine with .distinct())."""
    if not user.is_authenticated:
        return Q(pk__in=[])
    if user.is_staff:
        return Q()
    return Q(user=user) | Q(team__members=user) | Q(phase__task__challenge__organizers=user)


def can_cancel_submission(user, sub) -> bool:
    return owns(user, sub) or is_organizer(user, sub.phase.challenge)


def can_choose_submission(user, sub) -> bool:
    """Only the team (or the participant without a team) picks its leaderboard entry."""
    return owns(user, sub)


def is_ranked(sub) -> bool:
    """On the phase's current leaderboard (a team's other submissions are not public)."""
    from leaderboards.models import RankingSnapshot

    ids = (
        RankingSnapshot.objects.filter(phase_id=sub.phase_id)
        .order_by("-version")
        .values_list("submission_ids", flat=True)
        .first()
    )
    return bool(ids) and sub.pk in ids


def can_view_scores(user, sub) -> bool:
    """Aggregate scores of one submission. Owners see theirs unless the phase is hidden and
    unpublished (a hidden test phase must not become a probe of the test set); everyone else
    only the submissions that represent a team on a leaderboard they may read."""
    if is_organizer(user, sub.phase.challenge):
        return True
    if owns(user, sub):
        return sub.phase.visibility != "hidden" or sub.phase.published
    return can_view_leaderboard(user, sub.phase) and not sub.disqualified and is_ranked(sub)


def can_view_case_results(user, sub) -> bool:
    if is_organizer(user, sub.phase.challenge):
        return True
    return owns(user, sub) and sub.phase.show_case_results and can_view_scores(user, sub)


def can_download_training_data(user, challenge: Challenge) -> bool:
    """Registered participants (terms accepted) and organizers."""
    return is_participant(user, challenge) or is_organizer(user, challenge)


def can_view_logs(user, sub) -> bool:
    return is_organizer(user, sub.phase.challenge) or (
        owns(user, sub) and sub.phase.participants_see_logs
    )


def can_create_challenge(user) -> bool:
    """Staff, or users given the model permission ``challenges.add_challenge`` (admin: user or
    group permissions); the creator becomes the new challenge's organizer."""
    return bool(
        user.is_authenticated and (user.is_staff or user.has_perm("challenges.add_challenge"))
    )
