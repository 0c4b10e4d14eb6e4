"""Teams: nobody joins without accepting; leave, rename, withdraw; every change audited; the
same rules through the services, the team page and the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from challenges import teams
from challenges.models import AuditEvent, Challenge, Membership, Phase, Task, Team, TeamInvitation
from submissions.models import Message, Submission
from submissions.selectors import team_of
from submissions.services import join_challenge


@pytest.fixture
def challenge(db) -> Challenge:
    ch = Challenge.objects.create(slug="tm", title="Teams", is_public=True)
    task = Task.objects.create(challenge=ch, slug="organs", title="Organs", label_names=["a"])
    Phase.objects.create(
        task=task,
        slug="test",
        title="Test",
        case_ids=["c1"],
        opens_at=timezone.now() - timedelta(hours=1),
    )
    return ch


def person(name: str, challenge: Challenge | None = None) -> User:
    user = User.objects.create_user(name, password="pw")
    if challenge is not None:
        join_challenge(challenge, user)
    return user


def actions(target_contains: str = "") -> list[str]:
    return list(
        AuditEvent.objects.filter(target__contains=target_contains)
        .order_by("at", "pk")
        .values_list("action", flat=True)
    )


def test_invitee_joins_only_after_accepting(challenge):
    alice, bob = person("alice", challenge), person("bob", challenge)
    team = teams.create_team(challenge, alice, "Blue")
    inv = teams.invite(team, alice, bob)
    assert team_of(bob, challenge) is None  # an invitation is not a membership
    assert list(teams.pending_invitations(bob, challenge)) == [inv]
    assert teams.accept_invitation(inv, bob) == team
    assert set(team.members.values_list("username", flat=True)) == {"alice", "bob"}
    inv.refresh_from_db()
    assert inv.status == "accepted" and inv.answered_at is not None
    assert actions("Blue") == ["team_create", "team_invite", "team_join"]
    told = Message.objects.get(user=bob)  # the invitee hears of it in the inbox
    assert "alice invites you to team Blue" in told.text and told.link == "/c/tm/team"
    assert "bob accepted" in Message.objects.get(user=alice).text


def test_decline_and_withdraw_leave_membership_unchanged(challenge):
    alice, bob, carol = (person(n, challenge) for n in ("alice", "bob", "carol"))
    team = teams.create_team(challenge, alice, "Blue")
    declined = teams.invite(team, alice, bob)
    teams.decline_invitation(declined, bob)
    withdrawn = teams.invite(team, alice, carol)
    teams.cancel_invitation(withdrawn, alice)
    assert list(team.members.all()) == [alice]
    with pytest.raises(teams.TeamError, match="declined already"):
        teams.accept_invitation(declined, bob)
    with pytest.raises(teams.TeamError, match="cancelled already"):
        teams.accept_invitation(withdrawn, carol)
    assert "team_decline" in actions() and "team_uninvite" in actions()


def test_only_the_invitee_answers_and_only_members_invite(challenge):
    alice, bob, eve = (person(n, challenge) for n in ("alice", "bob", "eve"))
    team = teams.create_team(challenge, alice, "Blue")
    with pytest.raises(teams.TeamError, match="only members"):
        teams.invite(team, eve, bob)
    inv = teams.invite(team, alice, bob)
    with pytest.raises(teams.TeamError, match="someone else"):
        teams.accept_invitation(inv, eve)
    with pytest.raises(teams.TeamError, match="someone else"):
        teams.decline_invitation(inv, eve)
    with pytest.raises(teams.TeamError, match="only members"):
        teams.cancel_invitation(inv, eve)
    with pytest.raises(teams.TeamError, match="open invitation"):
        teams.invite(team, alice, bob)  # one open invitation per person and team
    assert team_of(eve, challenge) is None and team_of(bob, challenge) is None


def test_invitee_must_accept_the_terms_and_be_free(challenge):
    alice, bob = person("alice", challenge), person("bob", challenge)
    outsider = person("olga")  # never joined the challenge
    blue = teams.create_team(challenge, alice, "Blue")
    inv = teams.invite(blue, alice, outsider)
    with pytest.raises(teams.TeamError, match="accept its terms"):
        teams.accept_invitation(inv, outsider)
    red = teams.create_team(challenge, bob, "Red")
    with pytest.raises(teams.TeamError, match="already in a team"):
        teams.invite(red, bob, alice)


def test_accepting_one_invitation_lapses_the_others(challenge):
    alice, bob, dan = (person(n, challenge) for n in ("alice", "bob", "dan"))
    blue = teams.create_team(challenge, alice, "Blue")
    red = teams.create_team(challenge, bob, "Red")
    to_blue, to_red = teams.invite(blue, alice, dan), teams.invite(red, bob, dan)
    teams.accept_invitation(to_blue, dan)
    to_red.refresh_from_db()
    assert to_red.status == "cancelled"
    assert team_of(dan, challenge) == blue


def test_leave_deletes_an_empty_team_without_results(challenge):
    alice, bob = person("alice", challenge), person("bob", challenge)
    team = teams.create_team(challenge, alice, "Blue")
    teams.accept_invitation(teams.invite(team, alice, bob), bob)
    teams.leave_team(team, bob)
    assert team_of(bob, challenge) is None and list(team.members.all()) == [alice]
    pending = teams.invite(team, alice, bob)
    teams.leave_team(team, alice)
    assert not Team.objects.filter(pk=team.pk).exists()
    assert not TeamInvitation.objects.filter(pk=pending.pk).exists()
    assert actions().count("team_leave") == 2 and "team_delete" in actions()


def test_submitters_cannot_change_team(challenge):
    """Quotas count per team: moving after submitting would reset them."""
    alice, bob = person("alice", challenge), person("bob", challenge)
    team = teams.create_team(challenge, alice, "Blue")
    phase = Phase.objects.get(task__challenge=challenge)
    Submission.objects.create(phase=phase, user=alice, team=team, method_name="m")
    with pytest.raises(teams.TeamError, match="stay in it"):
        teams.leave_team(team, alice)
    Submission.objects.create(phase=phase, user=bob, method_name="solo")
    inv = teams.invite(team, alice, bob)
    with pytest.raises(teams.TeamError, match="submitted in this challenge"):
        teams.accept_invitation(inv, bob)
    assert Membership.objects.filter(team=team).count() == 1


def test_rename_is_for_members_and_names_stay_unique(challenge):
    alice, bob = person("alice", challenge), person("bob", challenge)
    blue = teams.create_team(challenge, alice, "Blue")
    teams.create_team(challenge, bob, "Red")
    with pytest.raises(teams.TeamError, match="exists already"):
        teams.rename_team(blue, alice, "Red")
    with pytest.raises(teams.TeamError, match="only members"):
        teams.rename_team(blue, bob, "Cyan")
    with pytest.raises(teams.TeamError, match="1 to 100"):
        teams.rename_team(blue, alice, " " * 3)
    assert teams.rename_team(blue, alice, "Cyan").name == "Cyan"
    event = AuditEvent.objects.get(action="team_rename")
    assert event.details == {"old": "Blue", "new": "Cyan"} and event.actor == alice


def test_team_page_flow(challenge):
    alice, bob = person("alice", challenge), person("bob", challenge)
    a, b = Client(), Client()
    a.force_login(alice)
    b.force_login(bob)
    url = f"/c/{challenge.slug}/team"
    assert a.post(url, {"action": "create", "name": "Blue"}).status_code == 302
    assert a.post(url, {"action": "add", "username": "bob"}).status_code == 302  # old action
    assert team_of(bob, challenge) is None
    a.post(url, {"action": "invite", "username": "bob"})
    assert team_of(bob, challenge) is None
    page = b.get(url).content.decode()
    inv = TeamInvitation.objects.get(invitee=bob)
    assert "invites you to <strong>Blue</strong>" in page and f'value="{inv.pk}"' in page
    b.post(url, {"action": "accept", "invitation": inv.pk})
    assert team_of(bob, challenge).name == "Blue"
    b.post(url, {"action": "rename", "name": "Navy"})
    assert "Team Navy" in a.get(url).content.decode()
    b.post(url, {"action": "leave"})
    assert team_of(bob, challenge) is None


def test_team_api_flow(challenge):
    alice, bob = person("alice", challenge), person("bob", challenge)
    api_a, api_b = APIClient(), APIClient()
    api_a.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    api_b.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")
    url = f"/api/challenges/{challenge.slug}/team/"
    r = api_a.post(url, {"action": "create", "name": "Blue"}, format="json")
    assert r.status_code == 200 and r.json()["team"]["members"] == ["alice"]
    r = api_a.post(url, {"action": "invite", "username": "bob"}, format="json")
    assert r.json()["invitations_sent"][0]["invitee"] == "bob"
    mine = api_b.get("/api/invitations/").json()
    inv_id = mine["results"][0]["id"] if isinstance(mine, dict) else mine[0]["id"]
    assert api_a.post(f"/api/invitations/{inv_id}/accept/").status_code == 400  # not alice's
    r = api_b.post(f"/api/invitations/{inv_id}/accept/")
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert api_b.get(url).json()["team"]["members"] == ["alice", "bob"]
    r = api_b.post(url, {"action": "rename", "name": "Blue"}, format="json")
    assert r.status_code == 200
    r = api_a.post(url, {"action": "invite", "username": "nobody"}, format="json")
    assert r.status_code == 400 and "no user" in r.json()["detail"]
    assert APIClient().get(url).status_code == 401
