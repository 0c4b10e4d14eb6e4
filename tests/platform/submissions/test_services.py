"""Actions as services, through the API and the pages: choosing a team's leaderboard entry,
publishing and hiding a phase's results, re-running a phase. Who may act, the audit trail,
and that each action is all-or-nothing (one chosen entry per team, even under concurrency)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient


@pytest.fixture
def sent(monkeypatch) -> list:
    """Ranking recomputations are recorded instead of sent to a broker."""
    from leaderboards import tasks

    calls: list = []
    monkeypatch.setattr(tasks.recompute_ranking, "apply_async", lambda *a, **k: calls.append(k))
    return calls


def build():
    from accounts.models import User
    from challenges.models import Challenge, Membership, Phase, Task, Team
    from submissions.services import join_challenge

    ch = Challenge.objects.create(slug="pick", title="Pick")
    task = Task.objects.create(challenge=ch, slug="organs", title="Organs", label_names=["a"])
    phase = Phase.objects.create(
        task=task,
        slug="final",
        title="Final",
        leaderboard_rule="chosen",
        visibility="hidden",
        case_ids=["c1"],
        opens_at=timezone.now() - timedelta(hours=1),
    )
    users = {
        n: User.objects.create_user(n, password="pw") for n in ("alice", "bob", "carol", "org")
    }
    ch.organizers.add(users["org"])
    team = Team.objects.create(challenge=ch, name="Lab")
    for n in ("alice", "bob", "carol"):
        join_challenge(ch, users[n])
    for n in ("alice", "bob"):
        Membership.objects.create(team=team, user=users[n], challenge=ch)
    return phase, team, users


def make_sub(phase, user, team=None, status="succeeded", **kw):
    from submissions.models import Submission

    return Submission.objects.create(
        phase=phase,
        user=user,
        team=team,
        method_name=f"m-{user}",
        model_path="/nonexistent",
        original_name="m.onnx",
        sha256="0" * 64,
        model_format="onnx",
        status=status,
        **kw,
    )


def api_for(user) -> APIClient:
    c = APIClient()
    if user is not None:
        c.force_authenticate(user)
    return c


def page_for(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def chosen(phase) -> list[int]:
    return sorted(phase.submissions.filter(chosen=True).values_list("pk", flat=True))


def audit() -> list[tuple[str, str]]:
    from challenges.models import AuditEvent

    return [
        (a, u or "-")
        for a, u in AuditEvent.objects.order_by("at", "pk").values_list("action", "actor__username")
    ]


# --- choose -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_team_members_choose_through_api_and_page_one_entry_stays_chosen(sent):
    phase, team, u = build()
    a1, b1 = make_sub(phase, u["alice"], team), make_sub(phase, u["bob"], team)
    r = api_for(u["bob"]).post(f"/api/submissions/{a1.pk}/choose/")
    assert r.status_code == 200 and r.json()["chosen"] is True
    assert chosen(phase) == [a1.pk]
    r = page_for(u["alice"]).post(f"/submissions/{b1.pk}/action", {"action": "choose"})
    assert r.status_code == 302
    assert chosen(phase) == [b1.pk]  # the team's previous choice was replaced
    assert audit() == [("choose", "bob"), ("choose", "alice")]
    assert sent and sent[0]["args"] == [phase.pk]  # the leaderboard follows (debounced)


@pytest.mark.django_db
def test_only_the_team_may_choose(sent):
    phase, team, u = build()
    a1 = make_sub(phase, u["alice"], team)
    assert api_for(None).post(f"/api/submissions/{a1.pk}/choose/").status_code == 401
    # another participant may not even see the submission
    assert api_for(u["carol"]).post(f"/api/submissions/{a1.pk}/choose/").status_code == 404
    assert (
        page_for(u["carol"]).post(f"/submissions/{a1.pk}/action", {"action": "choose"}).status_code
        == 404
    )
    # organizers see it but do not choose for the team
    r = api_for(u["org"]).post(f"/api/submissions/{a1.pk}/choose/")
    assert r.status_code == 403 and "submitting team" in r.json()["detail"]
    assert (
        page_for(u["org"]).post(f"/submissions/{a1.pk}/action", {"action": "choose"}).status_code
        == 403
    )
    assert chosen(phase) == [] and audit() == [] and not sent


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, message",
    [
        ({"status": "running"}, "only finished evaluations"),
        ({"status": "failed"}, "only finished evaluations"),
        ({"disqualified": True}, "disqualified"),
        ({"rule": "best"}, "chosen by the team"),
    ],
)
def test_choose_refusals_say_why_and_change_nothing(sent, change, message):
    phase, team, u = build()
    if "rule" in change:
        phase.leaderboard_rule = change.pop("rule")
        phase.save()
    sub = make_sub(phase, u["alice"], team, **change)
    r = api_for(u["alice"]).post(f"/api/submissions/{sub.pk}/choose/")
    assert r.status_code == 400 and message in r.json()["detail"]
    page = page_for(u["alice"]).post(
        f"/submissions/{sub.pk}/action", {"action": "choose"}, follow=True
    )
    assert message in page.content.decode()
    assert chosen(phase) == [] and audit() == []


@pytest.mark.django_db
def test_team_less_participant_chooses_among_own_submissions(sent):
    from submissions.services import choose_submission

    phase, team, u = build()
    c1, c2 = make_sub(phase, u["carol"]), make_sub(phase, u["carol"])
    team_entry = make_sub(phase, u["alice"], team, chosen=True)
    choose_submission(u["carol"], c1)
    choose_submission(u["carol"], c2)
    assert chosen(phase) == sorted([c2.pk, team_entry.pk])  # the team's choice is its own


@pytest.mark.django_db(transaction=True)
def test_concurrent_choices_leave_exactly_one_chosen(sent):
    from submissions.services import choose_submission

    phase, team, u = build()
    subs = [make_sub(phase, u["alice" if i % 2 else "bob"], team) for i in range(6)]
    barrier, errors = threading.Barrier(len(subs)), []

    def pick(sub):
        try:
            barrier.wait()
            choose_submission(u["alice"], sub)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pick, args=(s,)) for s in subs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(chosen(phase)) == 1
    assert [a for a, _ in audit()] == ["choose"] * len(subs)


# --- publish, hide, rerun ---------------------------------------------------------------------


@pytest.mark.django_db
def test_publish_and_hide_through_api_and_page_are_organizer_only_and_audited(sent):
    from challenges.models import Phase

    phase, team, u = build()
    url = f"/api/phases/{phase.pk}/"
    assert api_for(u["alice"]).post(url + "publish/").status_code == 403
    assert (
        page_for(u["alice"])
        .post(phase.get_absolute_url() + "action", {"action": "publish"})
        .status_code
        == 403
    )
    assert not Phase.objects.get(pk=phase.pk).published and audit() == []
    r = api_for(u["org"]).post(url + "publish/")
    assert r.status_code == 200 and r.json()["published"] is True
    assert api_for(u["org"]).post(url + "unpublish/").json()["published"] is False
    org = page_for(u["org"])
    assert b"Publish results" in org.get(phase.get_absolute_url()).content
    assert org.post(phase.get_absolute_url() + "action", {"action": "publish"}).status_code == 302
    assert Phase.objects.get(pk=phase.pk).published
    assert audit() == [("publish", "org"), ("hide", "org"), ("publish", "org")]


@pytest.mark.django_db
def test_rerun_phase_through_api_and_page_is_organizer_only_and_audited(sent):
    from submissions.models import Submission

    phase, team, u = build()
    a1 = make_sub(phase, u["alice"], team)
    make_sub(phase, u["bob"], team, status="cancelled")  # cancelled ones stay cancelled
    assert api_for(u["alice"]).post(f"/api/phases/{phase.pk}/rerun/").status_code == 403
    r = api_for(u["org"]).post(f"/api/phases/{phase.pk}/rerun/")
    assert r.status_code == 200 and r.json() == {"requeued": 1}
    assert Submission.objects.get(pk=a1.pk).attempt == 2
    r = page_for(u["org"]).post(phase.get_absolute_url() + "action", {"action": "rerun"})
    assert r.status_code == 302 and Submission.objects.get(pk=a1.pk).attempt == 3
    assert audit() == [("rerun", "org"), ("rerun_phase", "org")] * 2


@pytest.mark.django_db
def test_rerun_phase_is_all_or_nothing(sent, monkeypatch):
    from submissions import services
    from submissions.models import Submission

    phase, team, u = build()
    subs = [make_sub(phase, u["alice"], team) for _ in range(3)]
    real, calls = services.rerun, []

    def flaky(sub, actor, reason=""):
        calls.append(sub.pk)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real(sub, actor, reason)

    monkeypatch.setattr(services, "rerun", flaky)
    with pytest.raises(RuntimeError):
        services.rerun_phase(phase, u["org"])
    assert [s.attempt for s in Submission.objects.filter(pk__in=[s.pk for s in subs])] == [1] * 3
    assert audit() == []
