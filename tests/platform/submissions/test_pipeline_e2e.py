"""End to end with real components: API upload -> real Celery worker -> bubblewrap sandbox ->
trusted scoring -> ranking snapshot -> pages."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from leaderboards.models import RankingSnapshot
from submissions.models import CaseScore, LabelScore, Status, Submission
from submissions.services import join_challenge

from ..builders import make_challenge, oracle_like_model, tiny_model
from ..conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def final(pk: int) -> Submission | None:
    s = Submission.objects.get(pk=pk)
    return s if s.is_final else None


def test_api_upload_is_evaluated_by_a_real_worker_and_ranked(
    live_worker, human_test_root, tmp_path
):
    ch, task, phase = make_challenge(human_test_root, chunk_size=4)
    alice = User.objects.create_user("alice", password="pw", email="alice@example.org")
    bob = User.objects.create_user("bob", password="pw")
    join_challenge(ch, alice)
    join_challenge(ch, bob)
    api = APIClient()
    token = api.post("/api/token/", {"username": "alice", "password": "pw"}).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    good = oracle_like_model(tmp_path / "good.onnx", human_test_root)
    with open(good, "rb") as fh:
        r = api.post(
            f"/api/phases/{phase.pk}/submit/",
            {"model": fh, "method_name": "least squares"},
            format="multipart",
        )
    assert r.status_code == 201, r.content
    sub_a = r.json()["id"]
    assert r.json()["model_format"] == "onnx"

    bob_api = APIClient()
    bob_api.force_authenticate(bob)
    bad = tiny_model(tmp_path / "bad.pt", fmt="ts", bias_class=0)
    with open(bad, "rb") as fh:
        r = bob_api.post(
            f"/api/phases/{phase.pk}/submit/",
            {"model": fh, "method_name": "all background"},
            format="multipart",
        )
    assert r.status_code == 201, r.content
    sub_b = r.json()["id"]

    a = wait_for(lambda: final(sub_a), what="alice's submission")
    b = wait_for(lambda: final(sub_b), what="bob's submission")
    assert a.status == Status.SUCCEEDED, (a.status_reason, a.internal_error, a.log)
    assert b.status == Status.SUCCEEDED, (b.status_reason, b.internal_error, b.log)
    n = len(phase.case_ids)
    assert CaseScore.objects.filter(submission=a).count() == n
    assert a.chunks.count() == -(-n // 4)  # split into parallel chunks, merged
    assert LabelScore.objects.filter(submission=a).count() >= n
    assert a.progress_done == n
    mean = lambda s: sum(c.dsc for c in s.case_scores.all()) / n  # noqa: E731
    assert mean(a) > mean(b)
    # Notification and ranking (statistics queue, debounced).
    wait_for(
        lambda: alice.messages.filter(link=f"/submissions/{sub_a}/").exists(),
        timeout=30,
        what="message",
    )

    def latest_with_both():
        snap = RankingSnapshot.objects.filter(phase=phase).order_by("-version").first()
        return snap if snap and sorted(snap.submission_ids) == sorted([sub_a, sub_b]) else None

    snap = wait_for(latest_with_both, what="ranking snapshot with both submissions")
    assert [r["submission_id"] for r in snap.rows][0] == sub_a
    assert snap.rows[0]["rank"] == 1 and snap.rows[0]["dsc_ci"][0] is not None

    # Status through the API and pages.
    detail = api.get(f"/api/submissions/{sub_a}/").json()
    assert detail["status"] == "succeeded" and detail["mean_dsc"] > 0
    lb = APIClient().get(f"/api/phases/{phase.pk}/leaderboard/").json()
    assert [r["submission_id"] for r in lb["rows"]] == [sub_a, sub_b]
    from django.test import Client

    page = Client().get(phase.get_absolute_url())
    assert page.status_code == 200 and b"least squares" in page.content
    assert Client().get(f"/methods/{sub_a}/").status_code == 200
    csv = Client().get(phase.get_absolute_url() + "leaderboard.csv").content.decode()
    header = csv.splitlines()[0].split(",")
    assert header[:4] == ["rank", "tier", "team", "method"] and "dsc" in header
