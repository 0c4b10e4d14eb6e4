"""Team services: create, invite (the invitee accepts or declines), leave, rename.

Nobody becomes a member without saying yes: a member invites a user, the user accepts. Every
change is atomic and audited. Quotas are counted per team, so somebody who has already
submitted in a challenge cannot move to another team (accept an invitation, leave): that would
give their submissions a fresh quota or orphan them.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from submissions.selectors import team_of

from .models import Challenge, Membership, Registration, Team, TeamInvitation, audit

TEAM_NAME_MAX = 100


class TeamError(ValueError):
    """A refused team action; the message says why and what to do instead."""


def is_member(user, team: Team) -> bool:
    return Membership.objects.filter(team=team, user=user).exists()


def _tell(user, text: str, team: Team) -> None:
    """An inbox message (the site's notifications) pointing at the team page."""
    from django.urls import reverse

    from submissions.models import Message

    link = reverse("challenge-team", args=[team.challenge.slug])
    Message.objects.create(user=user, text=text, link=link)


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > TEAM_NAME_MAX:
        raise TeamError(f"a team name has 1 to {TEAM_NAME_MAX} characters")
    return name


def _has_submitted(user, challenge: Challenge) -> bool:
    from submissions.models import Submission

    return Submission.objects.filter(user=user, phase__task__challenge=challenge).exists()


def _require_registered(user, challenge: Challenge, who: str = "you") -> None:
    if not Registration.objects.filter(challenge=challenge, user=user).exists():
        # Nobody accepts the terms on someone else's behalf.
        raise TeamError(f"{who} must join the challenge (accept its terms) first")


def create_team(challenge: Challenge, user, name: str) -> Team:
    """A new team with the user as its only member."""
    name = _clean_name(name)
    _require_registered(user, challenge)
    with transaction.atomic():
        if team_of(user, challenge):
            raise TeamError("you are already in a team of this challenge")
        if _has_submitted(user, challenge):
            raise TeamError(
                "you have submitted on your own already; quotas are per team, so you keep "
                "submitting on your own"
            )
        team, created = Team.objects.get_or_create(challenge=challenge, name=name)
        if not created:
            raise TeamError(f"a team called {name!r} exists already; ask its members to invite you")
        Membership.objects.create(team=team, user=user, challenge=challenge)
        audit(user, "team_create", team)
    return team


def invite(team: Team, by_user, invitee) -> TeamInvitation:
    """Invite a user to the team; they become a member only when they accept."""
    if not is_member(by_user, team):
        raise TeamError("only members of a team can invite people to it")
    if invitee.pk == by_user.pk:
        raise TeamError("you are already in this team")
    if team_of(invitee, team.challenge):
        raise TeamError(f"{invitee} is already in a team of this challenge")
    try:
        with transaction.atomic():
            inv = TeamInvitation.objects.create(team=team, invitee=invitee, invited_by=by_user)
            audit(by_user, "team_invite", team, invitee=invitee.username)
            _tell(
                invitee,
                f"{by_user.username} invites you to team {team.name} in "
                f"{team.challenge.title}: accept or decline on the team page",
                team,
            )
    except IntegrityError:
        raise TeamError(f"{invitee} has an open invitation to {team.name} already") from None
    return inv


def pending_invitations(user, challenge: Challenge | None = None) -> QuerySet[TeamInvitation]:
    """Open invitations addressed to the user (of one challenge, or all)."""
    qs = TeamInvitation.objects.filter(
        invitee=user, status=TeamInvitation.Status.PENDING
    ).select_related("team__challenge", "invited_by")
    return qs.filter(team__challenge=challenge) if challenge is not None else qs


def sent_invitations(team: Team) -> QuerySet[TeamInvitation]:
    return team.invitations.filter(status=TeamInvitation.Status.PENDING).select_related("invitee")


def _answer(invitation: TeamInvitation, status: str) -> None:
    invitation.status = status
    invitation.answered_at = timezone.now()
    invitation.save(update_fields=["status", "answered_at"])


def _locked_pending(invitation: TeamInvitation) -> TeamInvitation:
    inv = (
        TeamInvitation.objects.select_for_update()
        .select_related("team__challenge")
        .get(pk=invitation.pk)
    )
    if inv.status != TeamInvitation.Status.PENDING:
        raise TeamError(f"this invitation was {inv.status} already")
    return inv


def accept_invitation(invitation: TeamInvitation, user) -> Team:
    """The invitee joins the team; their other open invitations of the challenge lapse."""
    with transaction.atomic():
        inv = _locked_pending(invitation)
        if inv.invitee_id != user.pk:
            raise TeamError("this invitation is addressed to someone else")
        challenge = inv.team.challenge
        _require_registered(user, challenge)
        if team_of(user, challenge):
            raise TeamError("leave your current team before joining another one")
        if _has_submitted(user, challenge):
            raise TeamError(
                "you have submitted in this challenge already; quotas are per team, so you "
                "cannot join a team now"
            )
        Membership.objects.create(team=inv.team, user=user, challenge=challenge)
        _answer(inv, TeamInvitation.Status.ACCEPTED)
        for other in pending_invitations(user, challenge).select_for_update():
            _answer(other, TeamInvitation.Status.CANCELLED)
        audit(user, "team_join", inv.team, invited_by=getattr(inv.invited_by, "username", None))
        if inv.invited_by is not None:
            _tell(inv.invited_by, f"{user.username} accepted and joined {inv.team.name}", inv.team)
    return inv.team


def decline_invitation(invitation: TeamInvitation, user) -> None:
    with transaction.atomic():
        inv = _locked_pending(invitation)
        if inv.invitee_id != user.pk:
            raise TeamError("this invitation is addressed to someone else")
        _answer(inv, TeamInvitation.Status.DECLINED)
        audit(user, "team_decline", inv.team)


def cancel_invitation(invitation: TeamInvitation, by_user) -> None:
    """A member withdraws an open invitation of their team."""
    with transaction.atomic():
        inv = _locked_pending(invitation)
        if not is_member(by_user, inv.team):
            raise TeamError("only members of the team can withdraw its invitations")
        _answer(inv, TeamInvitation.Status.CANCELLED)
        audit(by_user, "team_uninvite", inv.team, invitee=inv.invitee.username)


def leave_team(team: Team, user) -> None:
    """The user leaves; a team left empty without submissions is deleted (with results it
    stays, so the leaderboard keeps them)."""
    from submissions.models import Submission

    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        if not is_member(user, team):
            raise TeamError("you are not a member of this team")
        if _has_submitted(user, team.challenge):
            raise TeamError(
                "you have submitted with this team; quotas are per team, so you stay in it"
            )
        Membership.objects.filter(team=team, user=user).delete()
        audit(user, "team_leave", team)
        if not team.members.exists():
            team.invitations.filter(status=TeamInvitation.Status.PENDING).update(
                status=TeamInvitation.Status.CANCELLED, answered_at=timezone.now()
            )
            if not Submission.objects.filter(team=team).exists():
                audit(user, "team_delete", team)
                team.delete()


def rename_team(team: Team, by_user, name: str) -> Team:
    name = _clean_name(name)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        if not is_member(by_user, team):
            raise TeamError("only members can rename a team")
        if Team.objects.filter(challenge=team.challenge, name=name).exclude(pk=team.pk).exists():
            raise TeamError(f"a team called {name!r} exists already")
        old, team.name = team.name, name
        team.save(update_fields=["name"])
        audit(by_user, "team_rename", team, old=old, new=name)
    return team
