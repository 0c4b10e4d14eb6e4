"""Selectors: the permission-aware queries that pages and the API share. Each many-object
query must agree with its one-object rule in challenges.permissions for every user."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404

from challenges import selectors as cs
from challenges.permissions import can_view_challenge, can_view_submission
from leaderboards import selectors as ls
from submissions import selectors as ss

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    from accounts.models import User
    from challenges.models import Challenge, Membership, Phase, Registration, Task, Team
    from leaderboards.models import RankingSnapshot
    from submissions.models import Submission

    users = {n: User.objects.create_user(n, password="pw") for n in ("org", "alice", "bob", "eve")}
    staff = User.objects.create_user("root", password="pw", is_staff=True)
    pub = Challenge.objects.create(slug="pub", title="Public")
    priv = Challenge.objects.create(slug="priv", title="Private", is_public=False)
    for ch in (pub, priv):
        ch.organizers.add(users["org"])
        Registration.objects.create(challenge=ch, user=users["org"])  # organizer and registered
    phases, subs = {}, {}
    for ch in (pub, priv):
        task = Task.objects.create(challenge=ch, slug="t", title="T")
        team = Team.objects.create(challenge=ch, name=f"team-{ch.slug}")
        for n in ("alice", "bob"):
            Registration.objects.create(challenge=ch, user=users[n])
        Membership.objects.create(team=team, user=users["alice"], challenge=ch)
        for vis in ("public", "team", "hidden"):
            p = Phase.objects.create(task=task, slug=vis, title=vis, visibility=vis)
            phases[ch.slug, vis] = p
            a = Submission.objects.create(
                phase=p, user=users["alice"], team=team, status="succeeded"
            )
            b = Submission.objects.create(phase=p, user=users["bob"], status="succeeded")
            subs[ch.slug, vis] = (a, b)
            rows = [{"submission_id": s.pk, "team": str(s.pk)} for s in (a, b)]
            RankingSnapshot.objects.create(
                phase=p, version=1, submission_ids=[a.pk, b.pk], rows=rows
            )
    Registration.objects.filter(challenge=pub, user=users["bob"]).delete()  # bob: private only
    everyone = [AnonymousUser(), staff, *users.values()]
    return {
        "users": users,
        "staff": staff,
        "everyone": everyone,
        "pub": pub,
        "priv": priv,
        "phases": phases,
        "subs": subs,
    }


def test_query_forms_agree_with_the_one_object_rules(world):
    from challenges.models import Challenge
    from submissions.models import Submission

    for user in world["everyone"]:
        listed = list(cs.visible_challenges(user))
        assert len(listed) == len(set(listed))  # organizer and registered: listed once
        assert set(listed) == {c for c in Challenge.objects.all() if can_view_challenge(user, c)}
        subs = list(ss.visible_submissions(user))
        assert len(subs) == len(set(subs))
        assert set(subs) == {s for s in Submission.objects.all() if can_view_submission(user, s)}
        phases = set(cs.visible_phases(user))
        assert phases == {
            p for p in world["phases"].values() if can_view_challenge(user, p.challenge)
        }


def test_hidden_and_missing_objects_answer_alike(world):
    anon, eve = AnonymousUser(), world["users"]["eve"]
    for user in (anon, eve):
        for slug in ("priv", "nope"):
            with pytest.raises(Http404):
                cs.get_challenge_for(user, slug)
            with pytest.raises(Http404):
                cs.get_phase_for(user, slug, "t", "public")
    bob = world["users"]["bob"]
    assert cs.get_phase_for(bob, "priv", "t", "team") == world["phases"]["priv", "team"]
    with pytest.raises(Http404):
        cs.get_task_for(bob, "priv", "missing")
    a, b = world["subs"]["pub", "public"]
    errors = []
    for pk in (a.pk, 999999):
        with pytest.raises(Http404) as exc:
            ss.get_submission_for(eve, pk)
        errors.append(str(exc.value))
    assert errors[0] == errors[1]  # no difference between "hidden" and "missing"
    assert ss.get_submission_for(world["users"]["org"], a.pk) == a


def test_submission_list_filters(world):
    alice = world["users"]["alice"]
    p = world["phases"]["pub", "team"]
    assert list(ss.visible_submissions(alice, phase=str(p.pk))) == [world["subs"]["pub", "team"][0]]
    assert not ss.visible_submissions(alice, status="running").exists()
    with pytest.raises(ss.BadFilter) as exc:
        ss.visible_submissions(alice, phase="abc")
    assert exc.value.field == "phase"
    with pytest.raises(ss.BadFilter) as exc:
        ss.visible_submissions(alice, status="nope")
    assert exc.value.field == "status" and "succeeded" in str(exc.value)


def test_team_submissions_and_inbox(world):
    from submissions.models import Message

    alice, bob = world["users"]["alice"], world["users"]["bob"]
    p = world["phases"]["pub", "public"]
    a, b = world["subs"]["pub", "public"]
    assert list(ss.owner_submissions(p, alice)) == [a]
    assert list(ss.owner_submissions(p, bob)) == [b]  # team-less: own submissions only
    assert ss.entry_group(a).get() == a
    Message.objects.create(user=alice, text="hi")
    assert [m.text for m in ss.inbox(alice)] == ["hi"] and not ss.inbox(bob).exists()


def test_leaderboard_rows_by_visibility(world):
    u = world["users"]
    for vis, viewer, expect in [
        ("public", AnonymousUser(), "all"),
        ("team", AnonymousUser(), "none"),
        ("team", u["alice"], "own"),  # alice's team entry only
        ("team", u["org"], "all"),
        ("hidden", u["alice"], "none"),
        ("hidden", u["org"], "all"),
    ]:
        p = world["phases"]["pub", vis]
        snap = p.snapshots.get()
        a, b = world["subs"]["pub", vis]
        ids = [r["submission_id"] for r in ls.visible_rows(viewer, p, snap)]
        want = {"all": [a.pk, b.pk], "own": [a.pk], "none": []}[expect]
        assert ids == want, (vis, viewer, ids)
        assert ls.can_see_some_rows(viewer, p) == (
            expect != "none" or vis == "team" and viewer.is_authenticated
        )
    assert ls.visible_rows(u["org"], world["phases"]["pub", "public"], None) == []
