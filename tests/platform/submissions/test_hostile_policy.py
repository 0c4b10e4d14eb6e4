"""What a hostile model can do to the trusted side's bookkeeping: forged or flooded progress,
model text in hidden phases, platform-failure reasons with host detail. The sandbox run is
replaced; the policy (run.py, retry.py, finalise.py) is real."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evaluator.inference import CaseResult, InferenceResult
from submissions import pipeline
from submissions.models import Chunk, Status, Submission
from submissions.pipeline import finalise, run

from .test_pipeline_units import make_sub, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "kind", ["too_many_processes", "output_too_large", "memory_exceeded", "time_exceeded"]
)
def test_limit_kinds_are_charged(kind):
    assert finalise.is_charged(kind)
    assert not finalise.is_charged("sandbox_error") and not finalise.is_charged("platform_error")


def test_requeue_reason_with_traceback_stays_internal(world):  # noqa: F811
    sub = make_sub(world, status=Status.VALIDATING)
    reason = 'RuntimeError: boom\nTraceback (most recent call last):\n  File "/srv/xb/run.py"'
    assert pipeline.requeue_submission(sub.pk, reason, "the sandbox could not run") == "requeued"
    sub.refresh_from_db()
    assert "Traceback" not in sub.status_reason and "/srv" not in sub.status_reason
    assert "the sandbox could not run" in sub.status_reason
    assert "Traceback" in sub.internal_error


def test_progress_is_clamped_and_rate_limited(world):  # noqa: F811
    sub = make_sub(world, status=Status.RUNNING)
    n = len(world["phase"].case_ids)
    progress, flush = run._progress_writer(sub, n)
    with CaptureQueriesContext(connection) as queries:
        for k in range(5000):  # a flood, far more than the phase's cases
            progress(k, n, "x")
        flush()
    sub.refresh_from_db()
    assert 0 <= sub.progress_done <= n
    assert len(queries) <= 5  # a burst is a handful of writes, not one per event


def _chunk(world, sub) -> Chunk:  # noqa: F811
    sub.status = Status.RUNNING
    sub.save()
    return Chunk.objects.create(
        submission=sub, index=0, case_ids=world["phase"].case_ids[:2], status="running"
    )


def _fake_inference(secret: str):
    def run_inference(model_path, *, case_ids, progress=None, **kwargs):
        cases = {c: CaseResult(c, False, "model_error", secret) for c in case_ids}
        return InferenceResult(False, cases, 0.1, "", "model_error", secret, "onnx")

    return run_inference


@pytest.mark.parametrize("visibility", ["hidden", "public"])
def test_model_text_hidden_in_hidden_phases(world, monkeypatch, tmp_path, visibility):  # noqa: F811
    import evaluator.inference
    from challenges.services import evaluation_spec

    secret = "ValueError: mean of the hidden cube is 0.4213"
    monkeypatch.setattr(evaluator.inference, "run_inference", _fake_inference(secret))
    phase = world["phase"]
    phase.visibility = visibility
    phase.save()
    sub = make_sub(world)
    chunk = _chunk(world, sub)
    result = run.infer_chunk(chunk, evaluation_spec(phase), tmp_path)
    shown = [c.message for c in result.cases.values()] + [result.message]
    if visibility == "hidden":
        assert all("0.4213" not in m for m in shown) and result.error_kind == "model_error"
        assert all(m for m in shown)
    else:
        assert all(m == secret for m in shown)
    assert Submission.objects.get(pk=sub.pk).progress_done == 0


@pytest.mark.parametrize(
    ("visibility", "show_logs", "participant_sees"),
    [
        ("hidden", None, False),  # default: a model could print test cubes and read them back
        ("hidden", True, True),  # the organizers opted in
        ("public", None, True),
        ("public", False, False),
    ],
)
def test_logs_are_hidden_from_participants_in_hidden_phases_by_default(
    world,  # noqa: F811
    client,
    visibility,
    show_logs,
    participant_sees,
):
    from challenges.models import Phase

    Phase.objects.filter(pk=world["phase"].pk).update(visibility=visibility, show_logs=show_logs)
    sub = make_sub(world, status=Status.FAILED, log="CUBE-DUMP 0.0123 0.0456")
    client.force_login(world["alice"])
    page = client.get(f"/submissions/{sub.pk}/").content.decode()
    status = client.get(f"/submissions/{sub.pk}/status").json()
    assert ("CUBE-DUMP" in page) is participant_sees
    assert ("log" in status) is participant_sees
    client.force_login(world["org"])
    assert "CUBE-DUMP" in client.get(f"/submissions/{sub.pk}/").content.decode()
