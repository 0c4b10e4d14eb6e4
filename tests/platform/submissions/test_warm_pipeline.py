"""The validation and the chunks of a submission share one warm sandbox: a submission of
three chunks, evaluated by the real steps (start_evaluation, run_chunk) in this process with
the real bwrap sandbox, starts one sandboxed process, which loads the model once."""

from __future__ import annotations

import pytest

from evaluator.sandbox import BwrapSandbox, warm
from evaluator.sandbox._supervised import STARTS
from submissions import pipeline
from submissions.models import CaseScore, Chunk
from submissions.pipeline import queue
from submissions.services import join_challenge, submit

from ..builders import make_challenge, tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def bwrap_ok() -> None:
    ok, why = BwrapSandbox().available()
    if not ok:
        pytest.skip(f"bubblewrap unusable here: {why}")


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Celery messages and ranking requests go nowhere: the steps are called here."""
    import leaderboards.tasks

    monkeypatch.setattr(queue, "send", lambda *args, **kwargs: True)
    monkeypatch.setattr(leaderboards.tasks, "schedule_ranking", lambda *args: None)
    warm.POOL.close()
    yield
    warm.POOL.close()


def test_the_harness_starts_once_per_submission_not_once_per_chunk(
    bwrap_ok, human_test_root, tmp_path, django_capture_on_commit_callbacks
):
    from accounts.models import User

    ch, _task, phase = make_challenge(human_test_root, chunk_size=2)
    alice = User.objects.create_user("alice", password="pw")
    join_challenge(ch, alice)
    model = tiny_model(tmp_path / "m.pt", fmt="ts")
    sub = submit(phase, alice, [model.read_bytes()], original_name="m.pt", method_name="warm")
    n_cases = len(phase.case_ids)
    n_chunks = -(-n_cases // 2)
    assert n_chunks >= 3

    before, pool_before = STARTS["processes"], warm.POOL.starts
    assert pipeline.start_evaluation(sub.pk, 1, "w1") == f"{n_chunks} chunks"
    after_validation = STARTS["processes"]
    for chunk in Chunk.objects.filter(submission=sub).order_by("index"):
        with django_capture_on_commit_callbacks(execute=True):
            outcome = pipeline.run_chunk(chunk.pk, 1, "w1")
        assert outcome == f"scored {len(chunk.case_ids)} cases (0 failed)", outcome

    assert after_validation - before == 1  # the warm harness, opened by the validation
    assert STARTS["processes"] == after_validation  # and no start for any chunk
    assert warm.POOL.starts - pool_before == 1
    scores = CaseScore.objects.filter(submission=sub)
    assert scores.count() == n_cases and all(s.ok for s in scores)
