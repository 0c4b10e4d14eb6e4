"""Participant and organizer workflows without a worker: quota, limits, phase windows, teams,
terms, uploads, organizer actions with their audit trail, rate limits, CSRF, API errors,
training-data download, dataset registration."""

from __future__ import annotations

import hashlib
import io
import pickle
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from evaluator.harness.errors import MEMORY, TIMEOUT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Fresh rate-limit counters; ranking recomputations are recorded, not sent to a broker."""
    from leaderboards import tasks as lt

    cache.clear()
    sent: list = []
    monkeypatch.setattr(lt.recompute_ranking, "apply_async", lambda *a, **k: sent.append(k))
    yield sent
    cache.clear()


def onnx_bytes() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph).SerializeToString()


def upload(name: str, data: bytes) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


@pytest.fixture
def world():
    from accounts.models import User
    from challenges.models import Challenge, Dataset, Phase, Task
    from submissions.services import join_challenge

    ds = Dataset.objects.create(name="t", role="test", source_path="/nonexistent")
    ch = Challenge.objects.create(slug="xeno", title="Xeno", terms="be nice")
    task = Task.objects.create(challenge=ch, slug="organs", title="Organs", label_names=["a", "b"])
    phase = Phase.objects.create(
        task=task,
        slug="test",
        title="Test",
        test_dataset=ds,
        case_ids=["c1", "c2"],
        opens_at=timezone.now() - timedelta(hours=1),
        submissions_per_day=3,
        submissions_total=5,
        max_concurrent=2,
        max_upload_mb=1,
    )
    alice = User.objects.create_user("alice", password="pw")
    bob = User.objects.create_user("bob", password="pw")
    org = User.objects.create_user("org", password="pw")
    ch.organizers.add(org)
    join_challenge(ch, alice)
    return {"ch": ch, "phase": phase, "alice": alice, "bob": bob, "org": org}


def api_for(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def make_sub(phase, user, status="succeeded", **kw):
    from submissions.models import Submission
    from submissions.services import team_of

    return Submission.objects.create(
        phase=phase,
        user=user,
        team=team_of(user, phase.challenge),
        method_name="m",
        model_path="/nonexistent",
        original_name="m.onnx",
        sha256="0" * 64,
        model_format="onnx",
        status=status,
        **kw,
    )


def submit_api(client, phase, data: bytes = None, name="m.onnx"):
    payload = {"method_name": "mine"}
    if data is not None:
        payload["model"] = upload(name, data)
    return client.post(f"/api/phases/{phase.pk}/submit/", payload, format="multipart")


# --- quota ----------------------------------------------------------------------------------


def test_quota_counts_exactly_and_ignores_platform_errors_and_cancellations(world):
    phase, alice = world["phase"], world["alice"]
    api = api_for(alice)
    q = api.get(f"/api/phases/{phase.pk}/quota/").json()
    assert (q["remaining_today"], q["remaining_total"], q["can_submit"]) == (3, 5, True)
    make_sub(phase, alice)
    make_sub(phase, alice, status="failed", failure_kind="model_error")  # the model's fault
    make_sub(phase, alice, status="failed", failure_kind="platform_error")  # ours: not counted
    make_sub(phase, alice, status="cancelled")  # flag left on: still not counted
    make_sub(
        phase, alice, status="failed", failure_kind="sandbox_error", counts_against_quota=False
    )
    q = api.get(f"/api/phases/{phase.pk}/quota/").json()
    assert (q["used_today"], q["remaining_today"], q["used_total"], q["remaining_total"]) == (
        2,
        1,
        2,
        3,
    )
    c = Client()
    c.force_login(alice)
    page = c.get(phase.get_absolute_url()).content.decode()
    assert "<strong>1</strong> submission left today (2/3), 3 left in total (2/5)" in page
    make_sub(phase, alice)
    q = api.get(f"/api/phases/{phase.pk}/quota/").json()
    assert q["remaining_today"] == 0 and q["can_submit"] is False
    assert "today's 3 submissions" in q["reason"]
    r = submit_api(api, phase, onnx_bytes())
    assert r.status_code == 400 and "today's 3 submissions" in r.json()["detail"]


def test_quota_yesterday_counts_for_the_total_only(world):
    from submissions.models import Submission
    from submissions.services import quota_for

    phase, alice = world["phase"], world["alice"]
    for _ in range(4):
        s = make_sub(phase, alice)
        Submission.objects.filter(pk=s.pk).update(created_at=timezone.now() - timedelta(days=2))
    q = quota_for(phase, alice)
    assert (q.used_today, q.remaining_today, q.used_total, q.remaining_total) == (0, 1, 4, 1)
    make_sub(phase, alice)
    r = submit_api(api_for(alice), phase, onnx_bytes())
    assert r.status_code == 400 and "all 5 submissions" in r.json()["detail"]


def test_max_concurrent(world):
    phase, alice = world["phase"], world["alice"]
    make_sub(phase, alice, status="running")
    make_sub(phase, alice, status="queued")
    r = submit_api(api_for(alice), phase, onnx_bytes())
    assert r.status_code == 400 and "still being evaluated (limit 2)" in r.json()["detail"]


def test_accepted_upload_is_stored_with_sha256_and_charged(world, settings):
    phase, alice = world["phase"], world["alice"]
    data = onnx_bytes()
    r = submit_api(api_for(alice), phase, data)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "queued" and body["model_format"] == "onnx"
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size_bytes"] == len(data)
    from submissions.models import Submission
    from xenobench import storage

    assert storage.read_bytes("uploads", Submission.objects.get(pk=body["id"]).model_path) == data
    assert api_for(alice).get(f"/api/phases/{phase.pk}/quota/").json()["used_today"] == 1


# --- uploads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("m.onnx", b"", "empty"),
        ("m.onnx", b"\x13\x37 not a model at all" * 10, "unrecognised model format"),
        ("m.onnx", pickle.dumps({"weights": [1, 2, 3]}), "pickle"),
        ("m.pt", b"(dp0\nS'weights'\np1\n.", "pickle"),
        ("m.onnx", b"\x08\x07" + b"\x00" * (2**20), "larger than this phase's limit of 1 MB"),
    ],
    ids=["zero-byte", "malformed", "pickle-as-onnx", "protocol0-pickle", "oversized"],
)
def test_bad_uploads_are_refused_clearly_and_leave_nothing(world, settings, name, data, message):
    phase, alice = world["phase"], world["alice"]
    root = Path(settings.UPLOAD_ROOT)
    files = lambda: sorted(root.rglob("*")) if root.exists() else []  # noqa: E731
    before = files()
    r = submit_api(api_for(alice), phase, data, name)
    assert r.status_code == (413 if "limit" in message else 400), r.content
    assert message in str(r.json()), r.json()
    assert files() == before  # partial and refused files are removed
    from submissions.models import Submission

    assert not Submission.objects.exists()


def test_page_upload_errors_and_success(world):
    phase, alice = world["phase"], world["alice"]
    c = Client()
    c.force_login(alice)
    url = phase.get_absolute_url() + "submit"
    r = c.post(url, {"method_name": "x"})
    assert r.status_code == 400 and b"choose a model file" in r.content
    r = c.post(url, {"method_name": "x", "model": upload("m.onnx", pickle.dumps([1]))})
    assert r.status_code == 400 and b"pickle" in r.content
    r = c.post(url, {"method_name": "page upload", "model": upload("m.onnx", onnx_bytes())})
    assert r.status_code == 302
    from submissions.models import Submission

    assert Submission.objects.get().method_name == "page upload"


# --- phase windows, registration, terms, teams ----------------------------------------------


def test_phase_windows(world):
    phase, alice = world["phase"], world["alice"]
    api = api_for(alice)
    phase.opens_at = timezone.now() + timedelta(days=1)
    phase.save()
    r = submit_api(api, phase, onnx_bytes())
    assert r.status_code == 400 and "this phase opens at" in r.json()["detail"]
    phase.opens_at, phase.closes_at = timezone.now() - timedelta(days=2), timezone.now()
    phase.save()
    r = submit_api(api, phase, onnx_bytes())
    assert r.status_code == 400 and "this phase closed at" in r.json()["detail"]
    c = Client()
    c.force_login(alice)
    assert b"this phase closed at" in c.get(phase.get_absolute_url() + "submit").content


def test_terms_must_be_accepted_before_submitting(world):
    from challenges.models import Registration

    phase, bob, ch = world["phase"], world["bob"], world["ch"]
    r = submit_api(api_for(bob), phase, onnx_bytes())
    assert r.status_code == 400 and "accept the challenge's terms" in r.json()["detail"]
    c = Client()
    c.force_login(bob)
    assert c.post(f"/c/{ch.slug}/join", {}).status_code == 302
    assert not Registration.objects.filter(user=bob).exists()  # box not ticked
    c.post(f"/c/{ch.slug}/join", {"accept_terms": "on"})
    assert Registration.objects.filter(user=bob, challenge=ch).exists()
    assert submit_api(api_for(bob), phase, onnx_bytes()).status_code == 201


def test_teams_one_per_user_members_must_have_joined_and_share_the_quota(world):
    from challenges.models import Membership, Team, TeamInvitation

    ch, phase, alice, bob = world["ch"], world["phase"], world["alice"], world["bob"]
    c = Client()
    c.force_login(alice)
    c.post(f"/c/{ch.slug}/team", {"action": "create", "name": "Lab A"})
    team = Team.objects.get(challenge=ch, name="Lab A")
    c.post(f"/c/{ch.slug}/team", {"action": "create", "name": "Lab B"})
    assert not Team.objects.filter(name="Lab B").exists()  # one team per user and challenge
    # nobody is added without consent: the old "add" action is gone, an invitation waits
    c.post(f"/c/{ch.slug}/team", {"action": "add", "username": "bob"})
    c.post(f"/c/{ch.slug}/team", {"action": "invite", "username": "bob"})
    assert not Membership.objects.filter(user=bob).exists()
    inv = TeamInvitation.objects.get(invitee=bob, status="pending")
    bc = Client()
    bc.force_login(bob)
    bc.post(f"/c/{ch.slug}/team", {"action": "create", "name": "Lab C"})
    assert not Team.objects.filter(name="Lab C").exists()  # not registered: refused
    r = bc.post(f"/c/{ch.slug}/team", {"action": "accept", "invitation": inv.pk}, follow=True)
    assert b"join the challenge" in r.content  # bob has not accepted the terms
    assert not Membership.objects.filter(user=bob).exists()
    bc.post(f"/c/{ch.slug}/join", {"accept_terms": "on"})
    bc.post(f"/c/{ch.slug}/team", {"action": "accept", "invitation": inv.pk})
    assert Membership.objects.get(user=bob).team == team
    r = c.post(f"/c/{ch.slug}/team", {"action": "invite", "username": "bob"}, follow=True)
    assert b"already in a team" in r.content
    make_sub(phase, alice)
    make_sub(phase, bob)
    q = api_for(bob).get(f"/api/phases/{phase.pk}/quota/").json()
    assert q["used_today"] == 2 and q["remaining_today"] == 1  # shared by the team
    page = c.get(f"/c/{ch.slug}/").content.decode()
    assert "Lab A" in page and "bob" in page


# --- organizer actions ----------------------------------------------------------------------


def audit_actions() -> list[str]:
    from challenges.models import AuditEvent

    return list(AuditEvent.objects.order_by("at", "pk").values_list("action", flat=True))


def test_organizer_actions_on_pages_are_audited(world, _isolated):
    from submissions.models import Submission

    phase, alice, org = world["phase"], world["alice"], world["org"]
    done = make_sub(phase, alice)
    running = make_sub(phase, alice, status="running")
    c = Client()
    c.force_login(org)
    act = lambda s, a: c.post(f"/submissions/{s.pk}/action", {"action": a, "reason": "r"})  # noqa: E731
    assert act(done, "disqualify").status_code == 302
    assert Submission.objects.get(pk=done.pk).disqualified
    act(done, "requalify")
    assert not Submission.objects.get(pk=done.pk).disqualified
    act(done, "rerun")
    s = Submission.objects.get(pk=done.pk)
    assert (s.status, s.attempt) == ("queued", 2)
    act(running, "cancel")
    s = Submission.objects.get(pk=running.pk)
    assert s.status == "cancelled" and not s.counts_against_quota
    assert audit_actions() == ["disqualify", "requalify", "rerun", "cancel"]
    assert _isolated  # disqualification re-ranks the phase (debounced)
    # participants cannot use organizer actions; cancelling a finished one says why
    ac = Client()
    ac.force_login(alice)
    assert ac.post(f"/submissions/{s.pk}/action", {"action": "rerun"}).status_code == 403
    r = ac.post(f"/submissions/{s.pk}/action", {"action": "cancel"}, follow=True)
    assert b"has already cancelled" in r.content


def test_participant_cancels_own_submission_and_gets_the_quota_back(world):
    phase, alice = world["phase"], world["alice"]
    s = make_sub(phase, alice, status="queued")
    api = api_for(alice)
    assert api.get(f"/api/phases/{phase.pk}/quota/").json()["used_today"] == 1
    r = api.post(f"/api/submissions/{s.pk}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.get(f"/api/phases/{phase.pk}/quota/").json()["used_today"] == 0
    r = api.post(f"/api/submissions/{s.pk}/cancel/")
    assert r.status_code == 400 and "already cancelled" in r.json()["detail"]
    assert audit_actions() == ["cancel"]


def test_admin_actions_are_audited(world, _isolated):
    from accounts.models import User
    from challenges.models import Phase
    from submissions.models import Submission

    phase, alice = world["phase"], world["alice"]
    staff = User.objects.create_superuser("root", "root@example.org", "pw")
    a = make_sub(phase, alice)
    b = make_sub(phase, alice, status="running")
    c = Client()
    c.force_login(staff)

    def action(model: str, name: str, ids: list[int]):
        r = c.post(f"/admin/{model}/", {"action": name, "_selected_action": ids})
        assert r.status_code == 302, r.content[:500]

    action("submissions/submission", "disqualify", [a.pk])
    action("submissions/submission", "cancel", [b.pk])
    action("submissions/submission", "rerun", [a.pk])
    action("challenges/phase", "publish", [phase.pk])
    assert Phase.objects.get(pk=phase.pk).published
    action("challenges/phase", "hide", [phase.pk])
    assert not Phase.objects.get(pk=phase.pk).published
    action("challenges/phase", "rerun_all", [phase.pk])
    assert Submission.objects.get(pk=a.pk).attempt == 3
    assert Submission.objects.get(pk=b.pk).status == "cancelled"  # cancelled ones stay so
    assert audit_actions() == [
        "disqualify",
        "cancel",
        "rerun",
        "publish",
        "hide",
        "rerun",
        "rerun_phase",
    ]
    from challenges.models import AuditEvent

    assert AuditEvent.objects.filter(actor=staff).count() == 7


def test_rerun_phase_via_api_is_organizer_only(world):
    phase, alice, org = world["phase"], world["alice"], world["org"]
    s = make_sub(phase, alice)
    r = api_for(alice).post(f"/api/submissions/{s.pk}/rerun/")
    assert r.status_code == 403 and "only organizers" in r.json()["detail"]
    r = api_for(org).post(f"/api/submissions/{s.pk}/rerun/")
    assert r.status_code == 200 and r.json()["status"] == "queued"


# --- rate limits and CSRF -------------------------------------------------------------------


def test_login_is_rate_limited(world):
    c = Client()
    codes = [
        c.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [200] * 10 and codes[10] == 429
    api = APIClient()
    codes = [
        api.post("/api/token/", {"username": "a", "password": "b"}).status_code for _ in range(2)
    ]
    assert codes[-1] == 429  # the same per-address budget covers token logins


def test_uploads_are_rate_limited(world):
    phase, alice = world["phase"], world["alice"]
    api = api_for(alice)
    codes = [submit_api(api, phase).status_code for _ in range(21)]
    assert codes[:20] == [400] * 20 and codes[20] == 429
    assert "too many uploads" in submit_api(api, phase).json()["detail"]
    c = Client()
    c.force_login(alice)
    assert c.post(phase.get_absolute_url() + "submit", {}).status_code == 429


def test_forms_need_a_csrf_token(world):
    from challenges.models import Registration

    ch, bob = world["ch"], world["bob"]
    c = Client(enforce_csrf_checks=True)
    c.force_login(bob)
    assert c.post(f"/c/{ch.slug}/join", {"accept_terms": "on"}).status_code == 403
    assert not Registration.objects.filter(user=bob).exists()
    c.get(f"/c/{ch.slug}/")
    token = c.cookies["csrftoken"].value
    r = c.post(f"/c/{ch.slug}/join", {"accept_terms": "on", "csrfmiddlewaretoken": token})
    assert r.status_code == 302 and Registration.objects.filter(user=bob).exists()
    # the API with session auth needs it too; with a token it does not
    api = APIClient(enforce_csrf_checks=True)
    api.login(username="bob", password="pw")
    assert api.post(f"/api/phases/{world['phase'].pk}/submit/", {}).status_code == 403


# --- REST API -------------------------------------------------------------------------------


def test_token_auth_pagination_filtering_and_json_errors(world):
    phase, alice = world["phase"], world["alice"]
    api = APIClient()
    r = api.post("/api/token/", {"username": "alice", "password": "pw"})
    token = r.json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    for st in ("succeeded", "succeeded", "failed"):
        make_sub(phase, alice, status=st)
    r = api.get("/api/submissions/?page_size=2").json()
    assert r["count"] == 3 and len(r["results"]) == 2 and r["next"]
    r = api.get(f"/api/submissions/?phase={phase.pk}&status=failed").json()
    assert r["count"] == 1 and r["results"][0]["status"] == "failed"
    assert api.get("/api/submissions/?phase=999").json()["count"] == 0
    r = api.get("/api/submissions/?status=exploded")
    assert r.status_code == 400 and "unknown status" in r.json()["status"]
    r = api.post("/api/phases/999/submit/", {}, format="multipart")
    assert r.status_code == 404 and "detail" in r.json()
    r = api.post(f"/api/phases/{phase.pk}/submit/", {"method_name": "x"}, format="multipart")
    assert r.status_code == 400 and r.json()["model"] == ["No file was submitted."]
    r = api.get(f"/api/phases/{phase.pk}/submit/")
    assert r.status_code == 405 and "detail" in r.json()
    r = api.post(f"/api/phases/{phase.pk}/submit/", {"model": "x"}, format="json")
    assert r.status_code == 415
    assert APIClient().get("/api/submissions/").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token nope")
    assert bad.get("/api/submissions/").json()["detail"] == "Invalid token."
    assert api.get("/api/phases/?page_size=1").json()["count"] == 1


def test_openapi_schema_is_served_and_generates_without_warnings(tmp_path):
    r = Client().get("/api/schema/?format=json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for p in (
        "/api/token/",
        "/api/phases/{id}/submit/",
        "/api/submissions/{id}/cases/",
        "/api/phases/{id}/quota/",
        "/api/phases/{id}/leaderboard/",
    ):
        assert p in paths, sorted(paths)
    params = {x["name"] for x in paths["/api/submissions/"]["get"]["parameters"]}
    assert {"phase", "status", "page", "page_size"} <= params
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


# --- training data and dataset registration --------------------------------------------------


def test_training_data_download_for_registered_participants(world, human_test_root):
    from challenges.services import register_dataset

    ch, alice, bob = world["ch"], world["alice"], world["bob"]
    task = world["phase"].task
    task.train_dataset = register_dataset(human_test_root, name="train", role="train")
    task.save()
    base = f"/c/{ch.slug}/{task.slug}/"
    assert Client().get(base + "data.json").status_code == 302  # log in first
    bc = Client()
    bc.force_login(bob)
    r = bc.get(base + "data.json")
    assert r.status_code == 403 and "accept its terms" in r.json()["detail"]
    c = Client()
    c.force_login(alice)
    listing = c.get(base + "data.json").json()
    files = {f["path"]: f for f in listing["files"]}
    assert "manifest.csv" in files and len(files) > 2
    for f in list(files.values())[:3]:
        resp = c.get(f["url"].replace("http://testserver", ""))
        body = b"".join(resp.streaming_content)
        assert resp.status_code == 200 and hashlib.sha256(body).hexdigest() == f["sha256"]
        assert len(body) == f["size"]
    sums = c.get(base + "SHA256SUMS").content.decode().splitlines()
    assert f"{files['manifest.csv']['sha256']}  manifest.csv" in sums
    assert c.get(base + "files/../manifest.csv").status_code == 404
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=alice).key
    scripted = Client(HTTP_AUTHORIZATION=f"Token {token}")
    assert scripted.get(base + "SHA256SUMS").content.decode().splitlines() == sums
    assert Client(HTTP_AUTHORIZATION="Token nope").get(base + "SHA256SUMS").status_code == 401
    assert c.get(base + "files/nope.txt").status_code == 404


def test_register_dataset_command(human_test_root, tmp_path):
    from challenges.models import Dataset

    out = io.StringIO()
    call_command(
        "register_dataset", str(human_test_root), "--name", "h", "--role", "train", stdout=out
    )
    assert "registered dataset" in out.getvalue() and Dataset.objects.get(name="h").n_images > 0
    with pytest.raises(CommandError, match="no manifest.csv"):
        call_command("register_dataset", str(tmp_path), "--name", "x", "--role", "train")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.csv").write_text("image_name,species\nP1#a,dog\n")
    with pytest.raises(CommandError, match="dataset not registered"):
        call_command("register_dataset", str(broken), "--name", "x", "--role", "train")


# --- final status from the harness's error kind ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"), [(TIMEOUT, "timed_out"), (MEMORY, "failed"), ("model_error", "failed")]
)
def test_all_cases_failed_status_follows_the_error_kind_not_its_wording(world, kind, status):
    from submissions.models import CaseScore, Chunk
    from submissions.pipeline import finalize

    sub = make_sub(world["phase"], world["alice"], status="scoring")
    Chunk.objects.create(submission=sub, index=0, case_ids=["c1", "c2"], status="done")
    for case in ("c1", "c2"):
        CaseScore.objects.create(
            submission=sub,
            case_id=case,
            subject="s1",
            ok=False,
            dsc=0.0,
            nsd=0.0,
            error="stopped after 120 s",
            error_kind=kind,
        )
    assert finalize(sub.pk, sub.attempt) == status
    sub.refresh_from_db()
    assert sub.status == status and sub.n_cases_failed == 2
    assert sub.counts_against_quota  # the model's fault, whatever the kind
