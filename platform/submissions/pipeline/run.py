"""The sandboxed side: validate a model and run a chunk's inference via evaluator.inference.

Nothing here opens a participant's file; evaluator.inference does every load and run inside
the sandbox, with the classes and preprocessing of the task's validated TaskSpec. Results
come back as untrusted reports; a sandbox error or a full disk is raised as PlatformProblem
(ours, not charged), anything else is the model's and is scored."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from celery.signals import worker_process_shutdown
from django.conf import settings
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone

from challenges.models import Phase
from evaluator.harness.errors import SANDBOX_ERROR

from ..models import Chunk, Submission
from .errors import PlatformProblem
from .scratch import (
    check_space_after_failed_run,
    dataset_input,
    disk_problem,
    is_disk_full,
    model_input,
)

if TYPE_CHECKING:
    from evaluator.taskspec import TaskSpec

DEFAULT_CHANNELS = 100
PROGRESS_MIN_INTERVAL = 0.25  # seconds between progress writes of one run (<= 4 per second)
SANDBOX_PUBLIC = "the sandbox could not run on this worker"


def limits_for(phase: Phase):
    """The sandbox limits a phase grants one run (the rest from settings.SANDBOX_LIMITS)."""
    from evaluator.inference import Limits

    return Limits(
        wall_seconds=float(phase.wall_seconds),
        cpu_seconds=int(phase.wall_seconds * max(1, phase.cpu_threads) + 60),
        memory_mb=int(phase.memory_mb),
        threads=int(phase.cpu_threads),
        gpu=bool(phase.gpu),
        **getattr(settings, "SANDBOX_LIMITS", {}),
    )


@worker_process_shutdown.connect
def end_warm_sandbox(**_kwargs) -> None:
    """Celery's pool processes exit without atexit handlers: end this process's warm sandbox
    here, so that its folder and cgroup go with it."""
    from evaluator.sandbox import warm

    warm.POOL.close()


def warm_key(sub: Submission) -> str:
    """The validation and the chunks of one attempt that a worker runs share one warm sandbox:
    the interpreter, the runtime and the model load once per worker (evaluator.sandbox.warm)."""
    return f"submission-{sub.pk}-attempt-{sub.attempt}-{sub.sha256}"


def input_channels(phase: Phase) -> int:
    """Spectral channels of the phase's cubes (read from the first cube's header)."""
    ds = phase.test_dataset
    if ds and ds.cubes_dir and phase.case_ids:
        with dataset_input(ds, phase.case_ids[:1], "cubes") as cubes:
            first = cubes / f"{phase.case_ids[0]}.npy"
            if first.exists():
                return int(np.load(first, mmap_mode="r", allow_pickle=False).shape[-1])
    return DEFAULT_CHANNELS


def validate_in_sandbox(sub: Submission, spec: TaskSpec):
    """Load the model in the sandbox and run it on a dummy cube (a ValidationReport)."""
    from evaluator.inference import validate_model

    phase = sub.phase
    channels = input_channels(phase)
    with model_input(sub) as model:
        report = validate_model(
            model,
            channels=channels,
            num_classes=spec.num_classes,
            limits=limits_for(phase),
            backend=settings.SANDBOX_BACKEND,
            preprocessing=spec.preprocessing,
            production=settings.PRODUCTION,
            warm_key=warm_key(sub),  # the sandbox stays warm for the chunks
        )
    if report.error_kind == SANDBOX_ERROR:
        raise PlatformProblem(
            f"sandbox error during validation: {report.message}", public=SANDBOX_PUBLIC
        )
    return report


def hides_model_text(phase: Phase) -> bool:
    """Hidden phases show error kinds with fixed messages, never the model's own text."""
    return phase.visibility == "hidden"


def _progress_writer(sub: Submission, n_cases: int):
    """(progress callback, flush): counts of new cases (the inference side already clamps
    them to the run's cases), written at most every PROGRESS_MIN_INTERVAL seconds and never
    above the phase's number of cases."""
    pending = 0
    last = 0.0

    def flush() -> None:
        nonlocal pending, last
        if pending:
            Submission.objects.filter(pk=sub.pk).update(
                progress_done=Least(F("progress_done") + pending, n_cases),
                heartbeat_at=timezone.now(),
            )
            pending = 0
        last = time.monotonic()

    def progress(done: int, total: int, case_id: str) -> None:
        nonlocal pending
        pending += 1
        if time.monotonic() - last >= PROGRESS_MIN_INTERVAL:
            flush()

    return progress, flush


def infer_chunk(chunk: Chunk, spec: TaskSpec, out_dir: Path):
    """Sandboxed inference over the chunk's cases, label maps written into `out_dir` (an
    InferenceResult). Progress is counted per case on the submission."""
    from evaluator.harness.errors import fixed_message
    from evaluator.inference import run_inference

    sub = chunk.submission
    phase = sub.phase
    progress, flush = _progress_writer(sub, len(phase.case_ids))
    try:
        with (
            model_input(sub) as model,
            dataset_input(phase.test_dataset, list(chunk.case_ids), "cubes") as cubes,
        ):
            result = run_inference(
                model,
                cubes_dir=cubes,
                case_ids=list(chunk.case_ids),
                output_dir=out_dir,
                num_classes=spec.num_classes,
                preprocessing=spec.preprocessing,
                limits=limits_for(phase),
                backend=settings.SANDBOX_BACKEND,
                progress=progress,
                production=settings.PRODUCTION,
                warm_key=warm_key(sub),
            )
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_problem(exc) from exc
        raise
    finally:
        flush()
    if result.error_kind == SANDBOX_ERROR:  # raised on the host, outside the sandbox
        raise PlatformProblem(f"sandbox error: {result.message}", public=SANDBOX_PUBLIC)
    if hides_model_text(phase):
        for case in result.cases.values():
            if not case.ok:
                case.message = fixed_message(case.error_kind)
        if result.error_kind:
            result.message = fixed_message(result.error_kind)
    if not result.ok:
        check_space_after_failed_run()  # outputs lost to our full disk: ours
    return result
