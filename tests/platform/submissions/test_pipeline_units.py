"""The evaluation pipeline's pieces called directly on the test database: claims, row
replacement, the merge, the failure policy. Only the sandbox run is replaced (by a fake that
writes label maps the way the harness does); scoring, storage and the policy are real."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from challenges.models import AuditEvent
from evaluator.harness.errors import TIMEOUT
from evaluator.inference import CaseResult, InferenceResult, ValidationReport
from ops.heartbeat import stale_before
from submissions import pipeline
from submissions.models import CaseScore, Chunk, LabelScore, Message, Status, Submission
from submissions.pipeline import claim, persist, queue, score, steps
from submissions.services import join_challenge, quota_for, team_of

from ..builders import make_challenge

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sent(monkeypatch):
    """Celery messages and ranking requests are recorded instead of reaching a broker."""
    import leaderboards.tasks

    out: dict[str, list] = {"tasks": [], "rankings": []}

    def fake_send(name, args, queue_name, countdown=None):
        out["tasks"].append((name, list(args), queue_name, countdown))
        return True

    monkeypatch.setattr(queue, "send", fake_send)
    monkeypatch.setattr(leaderboards.tasks, "schedule_ranking", out["rankings"].append)
    return out


@pytest.fixture
def no_sandbox(monkeypatch):
    """Fails the test if a step reaches the sandbox."""

    def refuse(*args, **kwargs):
        raise AssertionError("the sandbox must not run here")

    monkeypatch.setattr(steps, "validate_in_sandbox", refuse)
    monkeypatch.setattr(steps, "infer_chunk", refuse)


@pytest.fixture
def world(human_test_root):
    from accounts.models import User

    ch, task, phase = make_challenge(human_test_root, chunk_size=4)
    alice = User.objects.create_user("alice", password="pw", email="alice@example.org")
    org = User.objects.create_user("org", password="pw")
    ch.organizers.add(org)
    join_challenge(ch, alice)
    return {"challenge": ch, "task": task, "phase": phase, "alice": alice, "org": org}


def make_sub(world, status=Status.QUEUED, **kw) -> Submission:
    phase, user = world["phase"], world["alice"]
    return Submission.objects.create(
        phase=phase, user=user, team=team_of(user, phase.challenge), method_name="m",
        model_path="/nonexistent/m.onnx", original_name="m.onnx", sha256="0" * 64,
        model_format="onnx", status=status, progress_total=len(phase.case_ids), **kw,
    )  # fmt: skip


def reference(world, case_id: str) -> np.ndarray:
    ds = world["phase"].test_dataset
    from xenobench import storage

    labels = storage.local_path("datasets", ds.labels_dir)
    return np.load(labels / f"{case_id}.npy", allow_pickle=False)


def fake_sandbox(world, failing: dict[str, str] | None = None):
    """Stands in for evaluator.inference.run_inference: writes the reference as the prediction
    (a perfect model) except for the cases in `failing` (case -> error kind)."""
    failing = failing or {}
    ignore = world["task"].ignore_index

    def infer(chunk, spec, out_dir):
        cases = {}
        for case_id in chunk.case_ids:
            if case_id in failing:
                cases[case_id] = CaseResult(case_id, False, failing[case_id], "stopped at 120 s")
                continue
            ref = reference(world, case_id)
            np.save(out_dir / f"{case_id}.npy", np.where(ref == ignore, 0, ref).astype(np.uint8))
            cases[case_id] = CaseResult(case_id, True)
        return InferenceResult(ok=not failing, cases=cases, elapsed=0.1, log="ran")

    return infer


def running_chunk(world, sub: Submission, cases: list[str], **kw) -> Chunk:
    sub.status = Status.RUNNING
    sub.save()
    return Chunk.objects.create(submission=sub, index=0, case_ids=cases, status="queued", **kw)


# --- claims ----------------------------------------------------------------------------------


def test_a_stale_attempt_or_a_final_submission_is_a_no_op(world, no_sandbox):
    sub = make_sub(world, attempt=2)
    assert claim.claim_submission(sub.pk, 1) == (None, "stale")
    assert pipeline.start_evaluation(sub.pk, 1, "w1") == "stale"
    sub.refresh_from_db()
    assert (sub.status, sub.worker, sub.started_at) == (Status.QUEUED, "", None)

    done = make_sub(world, status=Status.SUCCEEDED)
    assert pipeline.start_evaluation(done.pk, 1) == "skipped (succeeded)"
    assert pipeline.start_evaluation(10**6, 1) == "stale"  # deleted meanwhile


def test_a_duplicate_never_runs_beside_a_live_claim_but_takes_over_a_stale_one(world, no_sandbox):
    sub = make_sub(world, status=Status.VALIDATING, heartbeat_at=timezone.now(), worker="w1")
    assert pipeline.start_evaluation(sub.pk, 1, "w2") == "duplicate (validating elsewhere)"
    Submission.objects.filter(pk=sub.pk).update(heartbeat_at=stale_before() - timedelta(seconds=1))
    taken, why = claim.claim_submission(sub.pk, 1, "w2")
    assert why == "claimed" and taken.worker == "w2" and taken.status == Status.VALIDATING

    chunk = running_chunk(world, make_sub(world), ["c1"], attempt=1)
    Chunk.objects.filter(pk=chunk.pk).update(status="running", worker="w1")
    assert pipeline.run_chunk(chunk.pk, 1, "w2") == "duplicate (running elsewhere)"
    assert pipeline.run_chunk(chunk.pk, 2, "w2") == "stale"  # an older or newer attempt
    Chunk.objects.filter(pk=chunk.pk).update(updated_at=stale_before() - timedelta(seconds=1))
    taken, why = claim.claim_chunk(chunk.pk, 1, "w2")
    assert why == "claimed" and taken.worker == "w2"


# --- scoring and storage ---------------------------------------------------------------------


def test_run_chunk_scores_on_the_trusted_side_and_a_redelivery_changes_nothing(
    world, monkeypatch, sent, django_capture_on_commit_callbacks
):
    phase = world["phase"]
    good, bad = phase.case_ids[:2]
    sub = make_sub(world)
    chunk = running_chunk(world, sub, [good, bad])
    monkeypatch.setattr(steps, "infer_chunk", fake_sandbox(world, failing={bad: TIMEOUT}))

    with django_capture_on_commit_callbacks(execute=True):
        assert pipeline.run_chunk(chunk.pk, 1, "w1") == "scored 2 cases (1 failed)"
    ok = CaseScore.objects.get(submission=sub, case_id=good)
    failed = CaseScore.objects.get(submission=sub, case_id=bad)
    assert ok.ok and ok.dsc == pytest.approx(1.0) and ok.nsd == pytest.approx(1.0)
    assert not failed.ok and failed.error_kind == TIMEOUT and failed.dsc == 0.0
    labels_of_bad = LabelScore.objects.filter(submission=sub, case_id=bad)
    present = {int(v) for v in np.unique(reference(world, bad)) if v < world["task"].num_classes}
    assert {r.label for r in labels_of_bad} == present  # worst values for every present label
    assert all(r.dsc == 0.0 for r in labels_of_bad)
    sub.refresh_from_db()
    assert sub.status == Status.SCORING and sub.progress_done == 2 and "ran" in sub.log
    assert sent["tasks"] == [(queue.FINALIZE_SUBMISSION, [sub.pk, 1], "default", None)]

    rows = LabelScore.objects.filter(submission=sub).count()
    assert pipeline.run_chunk(chunk.pk, 1, "w2") == "stale"  # redelivered after it was done
    assert LabelScore.objects.filter(submission=sub).count() == rows
    assert CaseScore.objects.filter(submission=sub).count() == 2


def test_image_score_follows_the_task_scored_labels(world):
    task = world["task"]
    task.scored_labels = [task.label_names[1]]
    case = world["phase"].case_ids[0]
    ref = reference(world, case)
    rows, outcome = score.score_case(task.spec, case, ref, None, None)  # nothing produced
    assert {r["label"] for r in rows} <= {1} and outcome["error_kind"] == "missing"


@pytest.mark.parametrize("convention", ["reference", "union"])
def test_case_rows_follow_the_task_scored_classes_convention(world, tmp_path, convention):
    task = world["task"]
    task.scored_classes = convention
    case = world["phase"].case_ids[0]
    ref = reference(world, case)
    present = {int(v) for v in np.unique(ref) if v != task.ignore_index}
    absent = next(c for c in range(task.num_classes) if c not in present)
    pred = np.where(ref == task.ignore_index, 0, ref).astype(np.uint8)
    pred[:2, :2] = absent  # a class the reference does not have
    np.save(tmp_path / "p.npy", pred)
    ok = CaseResult(case_id=case, ok=True)
    rows, outcome = score.score_case(task.spec, case, ref, tmp_path / "p.npy", ok)
    assert outcome["ok"]
    labels = {r["label"] for r in rows}
    assert labels == (present if convention == "reference" else present | {absent})


def test_persist_replaces_the_chunk_rows_and_never_appends(world):
    case = world["phase"].case_ids[0]
    sub = make_sub(world)
    chunk = running_chunk(world, sub, [case])
    Chunk.objects.filter(pk=chunk.pk).update(status="running")
    chunk.refresh_from_db()
    CaseScore.objects.create(submission=sub, case_id=case, subject="old", dsc=0.1, nsd=0.1)
    LabelScore.objects.create(
        submission=sub, case_id=case, subject="old", label=0, label_name="x", dsc=0.1, nsd=0.1
    )
    common = {"case_id": case, "subject": "s1", "tissue_state": "", "species": "human"}
    new = score.ChunkScores(
        cases=[{**common, "ok": True, "error": "", "error_kind": "", "dsc": 0.9, "nsd": 0.8}],
        labels=[
            {**common, "label": lab, "label_name": str(lab), "dsc": 0.9, "iou": None,
             "nsd": 0.8, "hd95": None, "masd": None}
            for lab in (0, 1)
        ],
    )  # fmt: skip
    superseded = Chunk.objects.get(pk=chunk.pk)
    superseded.attempt = 7
    assert persist.store_chunk_scores(superseded, new) == "discarded (superseded)"
    assert CaseScore.objects.get(submission=sub).subject == "old"

    assert persist.store_chunk_scores(chunk, new) == "scored 1 cases (0 failed)"
    assert [(c.subject, c.dsc) for c in CaseScore.objects.filter(submission=sub)] == [("s1", 0.9)]
    assert sorted(LabelScore.objects.filter(submission=sub).values_list("label", "dsc")) == [
        (0, 0.9),
        (1, 0.9),
    ]
    chunk.refresh_from_db()
    assert chunk.status == "done"


# --- the merge -------------------------------------------------------------------------------


def test_finalize_counts_failed_cases_sets_the_status_and_is_done_once(world, sent):
    sub = make_sub(world, status=Status.SCORING)
    cases = world["phase"].case_ids[:3]
    Chunk.objects.create(submission=sub, index=0, case_ids=cases, status="done")
    for i, case in enumerate(cases):
        CaseScore.objects.create(
            submission=sub, case_id=case, subject="s", ok=i > 0, dsc=0.5 * (i > 0), nsd=0.0,
            error="" if i else "no prediction", error_kind="" if i else "missing",
        )  # fmt: skip
    assert pipeline.finalize(sub.pk, 1) == Status.SUCCEEDED
    sub.refresh_from_db()
    assert sub.n_cases_failed == 1 and sub.progress_done == 3 and sub.finished_at
    assert sub.status_reason == "2 of 3 cases scored; 1 failed and count with the worst value"
    assert sent["rankings"] == [world["phase"].pk]
    assert world["alice"].messages.filter(link=sub.get_absolute_url()).count() == 1

    assert pipeline.finalize(sub.pk, 1) == "stale"  # a redelivered merge
    assert world["alice"].messages.count() == 1 and sent["rankings"] == [world["phase"].pk]


def test_finalize_waits_for_every_chunk(world):
    sub = make_sub(world, status=Status.SCORING)
    Chunk.objects.create(submission=sub, index=0, case_ids=["a"], status="done")
    Chunk.objects.create(submission=sub, index=1, case_ids=["b"], status="running")
    assert pipeline.finalize(sub.pk, 1) == "waiting"
    assert Submission.objects.get(pk=sub.pk).status == Status.SCORING


# --- failure policy --------------------------------------------------------------------------


def test_a_misconfigured_task_is_the_organizers_problem_never_the_participants(world, no_sandbox):
    from challenges.models import Task

    # One NSD tolerance for twelve classes: saved past the form's checks (e.g. a script).
    Task.objects.filter(pk=world["task"].pk).update(nsd_tolerances=[1.0])
    before = quota_for(world["phase"], world["alice"]).used_total
    subs = [make_sub(world), make_sub(world)]
    for sub in subs:
        assert pipeline.start_evaluation(sub.pk, 1, "w1") == pipeline.MISCONFIGURED
        sub.refresh_from_db()
        assert sub.status == Status.FAILED and not sub.counts_against_quota
        assert sub.status_reason == pipeline.MISCONFIGURED_PUBLIC
        assert "nsd_tolerances" in sub.internal_error
    assert quota_for(world["phase"], world["alice"]).used_total == before
    events = AuditEvent.objects.filter(action=pipeline.MISCONFIGURED)
    assert events.count() == 2 and "nsd_tolerances" in events.first().details["error"]
    inbox = Message.objects.filter(user=world["org"])
    assert inbox.count() == 1  # told once, not once per failed submission
    assert "misconfigured" in inbox.get().text and "nsd_tolerances" in inbox.get().text
    assert world["alice"].messages.count() == 2  # each participant is told about each


def test_a_phase_case_missing_from_the_test_manifest_is_not_charged(world, no_sandbox):
    from challenges.models import Phase

    # A test case the organizer typed that the test dataset does not hold.
    Phase.objects.filter(pk=world["phase"].pk).update(
        case_ids=[*world["phase"].case_ids, "no-such-case"]
    )
    sub = make_sub(world)
    assert pipeline.start_evaluation(sub.pk, 1, "w1") == pipeline.MISCONFIGURED
    sub.refresh_from_db()
    assert sub.status == Status.FAILED and not sub.counts_against_quota
    assert "no-such-case" in sub.internal_error and "phase.case_ids" in sub.internal_error
    assert "no-such-case" not in sub.status_reason


def test_a_model_failure_is_charged(world, monkeypatch):
    report = ValidationReport(ok=False, message="output has 3 classes", error_kind="model_error")
    monkeypatch.setattr(steps, "validate_in_sandbox", lambda sub, spec: report)
    sub = make_sub(world)
    assert pipeline.start_evaluation(sub.pk, 1, "w1") == "invalid"
    sub.refresh_from_db()
    assert sub.status == Status.FAILED and sub.counts_against_quota
    assert sub.status_reason == "model validation failed: output has 3 classes"
    assert quota_for(world["phase"], world["alice"]).used_total == 1


def test_requeue_gives_up_after_two_platform_retries_without_charging(
    world, sent, django_capture_on_commit_callbacks
):
    sub = make_sub(world, status=Status.VALIDATING)
    results = []
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            results.append(pipeline.requeue_submission(sub.pk, "worker lost", "sandbox broken"))
    assert results == ["requeued", "requeued", "failed"]
    assert [t[:3] for t in sent["tasks"]] == [
        (queue.EVALUATE_SUBMISSION, [sub.pk, 2], "evaluation"),
        (queue.EVALUATE_SUBMISSION, [sub.pk, 3], "evaluation"),
    ]
    sub.refresh_from_db()
    assert sub.status == Status.FAILED and sub.failure_kind == "platform_error"
    assert not sub.counts_against_quota and sub.platform_retries == 2
    assert "sandbox broken" in sub.status_reason and "not counted" in sub.status_reason
    assert quota_for(world["phase"], world["alice"]).used_total == 0
    assert pipeline.requeue_submission(sub.pk, "again") == "final"


def test_a_chunk_is_retried_with_back_off_then_the_submission_fails_uncharged(
    world, sent, django_capture_on_commit_callbacks
):
    sub = make_sub(world)
    chunk = running_chunk(world, sub, world["phase"].case_ids[:1])
    results = []
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            results.append(pipeline.requeue_chunk(chunk.pk, "heartbeat stopped"))
    assert results == ["requeued", "requeued", "failed"]
    assert [(t[1], t[3]) for t in sent["tasks"]] == [([chunk.pk, 2], 2.0), ([chunk.pk, 3], 4.0)]
    sub.refresh_from_db()
    assert sub.status == Status.FAILED and not sub.counts_against_quota
    assert Chunk.objects.get(pk=chunk.pk).status == "cancelled"


def test_a_platform_problem_in_the_task_becomes_a_new_attempt(
    world, monkeypatch, sent, django_capture_on_commit_callbacks
):
    from submissions.tasks import evaluate_chunk

    def broken_sandbox(chunk, spec, out_dir):
        raise pipeline.PlatformProblem("bwrap: setting up uid map: Permission denied")

    monkeypatch.setattr(steps, "infer_chunk", broken_sandbox)
    sub = make_sub(world)
    chunk = running_chunk(world, sub, world["phase"].case_ids[:1])
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate_chunk.apply(args=[chunk.pk, 1]).get() == "requeued"
    chunk.refresh_from_db()
    assert (chunk.attempt, chunk.status, chunk.retries) == (2, "queued", 1)
    assert sent["tasks"][-1][:2] == (queue.EVALUATE_CHUNK, [chunk.pk, 2])
    assert Submission.objects.get(pk=sub.pk).status == Status.RUNNING


def test_pipeline_messages_name_registered_tasks():
    import submissions.tasks  # noqa: F401 - registers the tasks
    from xenobench.celery import app

    for name in (queue.EVALUATE_SUBMISSION, queue.EVALUATE_CHUNK, queue.FINALIZE_SUBMISSION):
        assert name in app.tasks


def test_the_reconciler_requeues_only_claims_whose_heartbeat_stopped(
    world, sent, django_capture_on_commit_callbacks
):
    from submissions.tasks import reconcile

    sub = make_sub(world)
    live = running_chunk(world, sub, world["phase"].case_ids[:1])
    dead = Chunk.objects.create(submission=sub, index=1, case_ids=world["phase"].case_ids[1:2])
    Chunk.objects.filter(pk__in=[live.pk, dead.pk]).update(status="running")
    Chunk.objects.filter(pk=dead.pk).update(updated_at=stale_before() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        done = reconcile()
    assert done["chunks_requeued"] == 1
    assert Chunk.objects.get(pk=live.pk).attempt == 1
    dead.refresh_from_db()
    assert (dead.attempt, dead.status) == (2, "queued")
    assert [t[:2] for t in sent["tasks"]] == [(queue.EVALUATE_CHUNK, [dead.pk, 2])]
