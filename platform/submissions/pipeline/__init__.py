"""The evaluation pipeline, written as plain functions the Celery tasks call.

validate (sandboxed) -> chunks of cases, each run sandboxed on any worker -> trusted scoring
of each chunk -> merge when the last chunk is done -> debounced ranking. Every step is
idempotent: it claims its row for the current `attempt` and replaces, never appends, rows.

Modules: claim (row-locked claims, stale checks), scratch (scratch space, disk checks), run
(sandboxed validation and inference via evaluator.inference), score (trusted scoring via
evaluator.metrics and evaluator.aggregation), persist (writes that replace rows), finalise
(merge, failure policy, notifications), retry (new attempts after platform problems), queue
(Celery tasks sent by name), steps (the two task bodies).

Fault tolerance (docs/deployment.md): a claimed row carries a task heartbeat (the chunk's
`updated_at`, the submission's `heartbeat_at`) refreshed by a thread while the task runs. A
redelivered message (acks_late) may take over a claim only once that heartbeat is stale, so a
duplicate never runs beside a live attempt; the reconciler re-queues claims whose heartbeat
stopped as a new attempt, and results of a superseded attempt are discarded under row locks.
Broker errors while queueing are logged, not raised: the row is already committed and the
reconciler re-sends it."""

from .errors import PlatformProblem
from .finalise import (
    MISCONFIGURED,
    MISCONFIGURED_PUBLIC,
    PARTICIPANT_KINDS,
    fail_misconfigured,
    fail_submission,
    finalize,
    is_charged,
)
from .queue import queue_chunk, queue_finalize, queue_start
from .retry import MAX_PLATFORM_RETRIES, requeue_chunk, requeue_submission
from .steps import run_chunk, start_evaluation

__all__ = [
    "MAX_PLATFORM_RETRIES",
    "MISCONFIGURED",
    "MISCONFIGURED_PUBLIC",
    "PARTICIPANT_KINDS",
    "PlatformProblem",
    "fail_misconfigured",
    "fail_submission",
    "finalize",
    "is_charged",
    "queue_chunk",
    "queue_finalize",
    "queue_start",
    "requeue_chunk",
    "requeue_submission",
    "run_chunk",
    "start_evaluation",
]
