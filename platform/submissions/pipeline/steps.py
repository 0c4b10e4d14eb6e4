"""The two evaluation steps that the Celery tasks run, composed from the pipeline's pieces:
claim -> task specification -> sandbox -> trusted scoring -> replace rows -> queue the next.

The phase's settings are validated (challenges.services.evaluation_spec -> TaskSpec) before any
sandbox runs: an invalid setting is the organizers' mistake, so the submission fails without
being charged and the organizers are told (finalise.fail_misconfigured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evaluator.harness.errors import MODEL_ERROR
from ops.heartbeat import beat_every, task_heartbeat

from .claim import chunk_touch, claim_chunk, claim_submission, submission_touch
from .finalise import MISCONFIGURED, fail_misconfigured, fail_submission
from .persist import append_log, create_chunks, store_chunk_scores
from .run import infer_chunk, validate_in_sandbox
from .score import score_chunk
from .scratch import ensure_scratch_space, output_dir

if TYPE_CHECKING:
    from evaluator.taskspec import TaskSpec

    from ..models import Submission


def _spec_or_fail(sub: Submission) -> TaskSpec | None:
    """The phase's validated settings (task spec, test cases against the manifest, limits);
    None after failing the submission as misconfigured."""
    # Imported on use: evaluator.taskspec pulls in SciPy, which would slow every worker start.
    from challenges.services import ConfigurationError, evaluation_spec
    from evaluator.taskspec import TaskSpecError

    try:
        return evaluation_spec(sub.phase)
    except (ConfigurationError, TaskSpecError) as exc:
        fail_misconfigured(sub.pk, exc)
        return None


def start_evaluation(submission_id: int, attempt: int, hostname: str = "") -> str:
    """Claim, check the task specification, validate the model in the sandbox, then create and
    queue the chunks. Returns what happened (a no-op says why)."""
    sub, why = claim_submission(submission_id, attempt, hostname)
    if sub is None:
        return why
    phase = sub.phase
    spec = _spec_or_fail(sub)
    if spec is None:
        return MISCONFIGURED
    with task_heartbeat(submission_touch(sub.pk, attempt), beat_every()):
        report = validate_in_sandbox(sub, spec)
    append_log(sub.pk, f"[validation] {report.message}\n{report.log}".strip())
    if not report.ok:
        fail_submission(
            sub.pk, report.error_kind or MODEL_ERROR, f"model validation failed: {report.message}"
        )
        return "invalid"
    n_chunks = create_chunks(submission_id, attempt, list(phase.case_ids), phase.chunk_size)
    return "stale" if n_chunks is None else f"{n_chunks} chunks"


def run_chunk(chunk_id: int, attempt: int, hostname: str = "") -> str:
    """Claim the chunk, run inference over its cases in the sandbox, score the outputs on the
    trusted side and replace the chunk's rows, all under the chunk's task heartbeat."""
    chunk, why = claim_chunk(chunk_id, attempt, hostname)
    if chunk is None:
        return why
    sub = chunk.submission
    spec = _spec_or_fail(sub)  # the organizers may have edited the task since validation
    if spec is None:
        return MISCONFIGURED
    ensure_scratch_space(sub.phase.test_dataset.cubes_dir, list(chunk.case_ids))
    with (
        output_dir(f"xb-sub{sub.pk}-c{chunk.index}-") as out,
        task_heartbeat(chunk_touch(chunk_id, attempt), beat_every()),
    ):
        result = infer_chunk(chunk, spec, out)
        append_log(sub.pk, result.log)
        scores = score_chunk(spec, chunk, result, out)
        return store_chunk_scores(chunk, scores)
