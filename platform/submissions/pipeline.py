"""The evaluation pipeline, written as plain functions the Celery tasks call.

validate (sandboxed) -> chunks of cases, each run sandboxed on any worker -> trusted scoring
of each chunk -> merge when the last chunk is done -> debounced ranking. Every step is
idempotent: it claims its row for the current `attempt` and replaces, never appends, rows.

Fault tolerance (docs/deployment.md): a claimed row carries a task heartbeat (the chunk's
`updated_at`, the submission's `heartbeat_at`) refreshed by a thread while the task runs. A
redelivered message (acks_late) may take over a claim only once that heartbeat is stale, so a
duplicate never runs beside a live attempt; the reconciler re-queues claims whose heartbeat
stopped as a new attempt, and results of a superseded attempt are discarded under row locks.
Broker errors while queueing are logged, not raised: the row is already committed and the
reconciler re-sends it."""

from __future__ import annotations

import errno
import logging
import math
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from challenges.models import Phase
from ops.heartbeat import task_heartbeat

from .models import ACTIVE, CaseScore, Chunk, LabelScore, Status, Submission
from .notify import notify_finished

log = logging.getLogger(__name__)


class PlatformProblem(RuntimeError):
    """Our side failed (disk full, sandbox broken): retried as a new attempt, never charged."""

    def __init__(self, message: str, public: str = "") -> None:
        super().__init__(message)
        self.public = public or message


def _stale_before():
    return timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)


def _heartbeat_every() -> float:
    return max(0.2, float(settings.WORKER_HEARTBEAT_SECONDS))


# Failure kinds caused by the participant's model: these count against the quota.
PARTICIPANT_KINDS = {"format_error", "model_error", "invalid_output", "timeout", "memory"}
LOG_CAP = 64 * 1024


def limits_for(phase: Phase):
    from evaluator.inference import Limits

    return Limits(
        wall_seconds=float(phase.wall_seconds),
        cpu_seconds=int(phase.wall_seconds * max(1, phase.cpu_threads) + 60),
        memory_mb=int(phase.memory_mb),
        threads=int(phase.cpu_threads),
        gpu=bool(phase.gpu),
    )


def _append_log(sub_id: int, text: str) -> None:
    if not text:
        return
    sub = Submission.objects.get(pk=sub_id)
    combined = (sub.log + ("\n" if sub.log else "") + text)[-LOG_CAP:]
    Submission.objects.filter(pk=sub_id).update(log=combined)


def _fail(
    sub_id: int, kind: str, reason: str, *, internal: str = "", status: str = Status.FAILED
) -> None:
    charged = kind in PARTICIPANT_KINDS
    with transaction.atomic():
        sub = Submission.objects.select_for_update().get(pk=sub_id)
        if sub.is_final:
            return
        sub.status = Status.TIMED_OUT if kind == "timeout" else status
        sub.failure_kind = kind
        sub.status_reason = (
            reason if charged else f"{reason} (a platform problem: not counted against your quota)"
        )
        sub.internal_error = internal[:10000]
        sub.counts_against_quota = charged
        sub.finished_at = timezone.now()
        sub.save()
        sub.chunks.exclude(status="done").update(status="cancelled")
        # A failed submission has no per-case results: never leave a partial set behind.
        CaseScore.objects.filter(submission=sub).delete()
        LabelScore.objects.filter(submission=sub).delete()
    notify_finished(sub)


def start_evaluation(submission_id: int, attempt: int, hostname: str = "") -> str:
    """Claim, validate the model in the sandbox, then create and queue the chunks."""
    from evaluator.inference import validate_model

    with transaction.atomic():
        sub = Submission.objects.select_for_update().filter(pk=submission_id).first()
        if sub is None or sub.attempt != attempt:
            return "stale"
        if sub.status not in (Status.QUEUED, Status.VALIDATING):
            return f"skipped ({sub.status})"
        if (
            sub.status == Status.VALIDATING
            and sub.heartbeat_at
            and sub.heartbeat_at >= _stale_before()
        ):
            return "duplicate (validating elsewhere)"  # a live attempt holds the claim
        sub.status = Status.VALIDATING
        sub.worker = hostname
        sub.started_at = sub.started_at or timezone.now()
        sub.heartbeat_at = timezone.now()
        sub.save()
    phase = sub.phase
    task = phase.task

    def touch() -> int:
        return Submission.objects.filter(
            pk=submission_id, attempt=attempt, status=Status.VALIDATING
        ).update(heartbeat_at=timezone.now())

    with task_heartbeat(touch, _heartbeat_every()):
        report = validate_model(
            sub.model_path,
            channels=_channels(phase),
            num_classes=task.num_classes,
            limits=limits_for(phase),
            backend=settings.SANDBOX_BACKEND,
            preprocessing=task.preprocessing,
            production=settings.PRODUCTION,
        )
    if report.error_kind == "sandbox_error":
        raise PlatformProblem(f"sandbox error during validation: {report.message}")
    _append_log(sub.pk, f"[validation] {report.message}\n{report.log}".strip())
    if not report.ok:
        _fail(
            sub.pk, report.error_kind or "model_error", f"model validation failed: {report.message}"
        )
        return "invalid"
    cases = list(phase.case_ids)
    size = max(1, phase.chunk_size)
    n_chunks = max(1, math.ceil(len(cases) / size))
    with transaction.atomic():
        sub = Submission.objects.select_for_update().get(pk=submission_id)
        if sub.attempt != attempt or sub.status != Status.VALIDATING:
            return "stale"
        sub.chunks.all().delete()
        chunks = Chunk.objects.bulk_create(
            [
                Chunk(submission=sub, index=i, case_ids=cases[i * size : (i + 1) * size], attempt=1)
                for i in range(n_chunks)
            ]
        )
        sub.status = Status.RUNNING
        sub.progress_total = len(cases)
        sub.progress_done = 0
        sub.save()
        ids = [c.pk for c in Chunk.objects.filter(submission=sub).order_by("index")]
        transaction.on_commit(lambda: _queue_chunks(ids))
    return f"{len(chunks)} chunks"


def _queue_chunks(chunk_ids: list[int]) -> None:
    for chunk in Chunk.objects.filter(pk__in=chunk_ids):
        _queue_chunk(chunk.pk, chunk.attempt)


def _chunk_queue(chunk_id: int) -> str:
    """Phases with `gpu` run their chunks on GPU_QUEUE where one is configured."""
    gpu_queue = getattr(settings, "GPU_QUEUE", "")
    if gpu_queue and Chunk.objects.filter(pk=chunk_id, submission__phase__gpu=True).exists():
        return gpu_queue
    return "evaluation"


def _channels(phase: Phase) -> int:
    ds = phase.test_dataset
    if ds and ds.cubes_dir and phase.case_ids:
        first = Path(ds.cubes_dir) / f"{phase.case_ids[0]}.npy"
        if first.exists():
            return int(np.load(first, mmap_mode="r", allow_pickle=False).shape[-1])
    return 100


def _lock_chunk(chunk_id: int) -> Chunk | None:
    """The chunk and its submission, row-locked until the transaction ends."""
    return (
        Chunk.objects.select_for_update().select_related("submission").filter(pk=chunk_id).first()
    )


def run_chunk(chunk_id: int, attempt: int, hostname: str = "") -> str:
    """Sandboxed inference over the chunk's cases, then trusted scoring and storage."""
    from evaluator.inference import run_inference

    with transaction.atomic():
        chunk = _lock_chunk(chunk_id)
        if chunk is None or chunk.attempt != attempt or chunk.status in ("done", "cancelled"):
            return "stale"
        sub = chunk.submission
        if sub.status not in (Status.RUNNING, Status.SCORING):
            return f"skipped ({sub.status})"
        if chunk.status == "running" and chunk.updated_at >= _stale_before():
            return "duplicate (running elsewhere)"  # a live attempt holds the claim
        chunk.status = "running"
        chunk.worker = hostname
        chunk.save()
    phase = sub.phase
    task = phase.task
    ds = phase.test_dataset
    _ensure_scratch_space(ds.cubes_dir, list(chunk.case_ids))
    try:
        out_dir = Path(tempfile.mkdtemp(prefix=f"xb-sub{sub.pk}-c{chunk.index}-", dir=_scratch()))
    except OSError as exc:
        raise _disk_problem(exc) from exc

    def progress(done: int, total: int, case_id: str) -> None:
        Submission.objects.filter(pk=sub.pk).update(
            progress_done=F("progress_done") + 1, heartbeat_at=timezone.now()
        )

    def touch() -> int:
        return Chunk.objects.filter(pk=chunk_id, attempt=attempt, status="running").update(
            updated_at=timezone.now()
        )

    try:
        with task_heartbeat(touch, _heartbeat_every()):
            try:
                result = run_inference(
                    sub.model_path,
                    cubes_dir=ds.cubes_dir,
                    case_ids=list(chunk.case_ids),
                    output_dir=out_dir,
                    num_classes=task.num_classes,
                    preprocessing=task.preprocessing,
                    limits=limits_for(phase),
                    backend=settings.SANDBOX_BACKEND,
                    progress=progress,
                    production=settings.PRODUCTION,
                )
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _disk_problem(exc) from exc
                raise
            if result.error_kind == "sandbox_error":
                raise PlatformProblem(f"sandbox error: {result.message}")
            if not result.ok and _scratch_free() < _SPACE_MARGIN:
                # The model's outputs could not be written because our disk is full: ours.
                raise _disk_problem(OSError(errno.ENOSPC, "scratch full after the run"))
            _append_log(sub.pk, result.log)
            scored = _score_chunk(sub, chunk, result, out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return scored


_SPACE_MARGIN = 1024**2
DISK_FULL_PUBLIC = "the evaluation server ran out of disk space"


def _disk_problem(exc: OSError) -> PlatformProblem:
    return PlatformProblem(f"scratch disk full in {_scratch()}: {exc}", DISK_FULL_PUBLIC)


def _scratch_free() -> int:
    try:
        return shutil.disk_usage(_scratch()).free
    except OSError:
        return 0


def _ensure_scratch_space(cubes_dir: str, case_ids: list[str]) -> None:
    """Refuse to start when the label maps cannot be written: a full disk is our problem, and
    letting the run fail would charge the participant for it."""
    need = _SPACE_MARGIN
    for case_id in case_ids:
        try:
            cube = np.load(Path(cubes_dir) / f"{case_id}.npy", mmap_mode="r", allow_pickle=False)
            need += int(cube.shape[0]) * int(cube.shape[1]) + 4096
        except (OSError, ValueError):
            need += 4096  # run_inference reports the broken cube itself
    free = _scratch_free()
    if free < need:
        raise _disk_problem(OSError(errno.ENOSPC, f"{free} bytes free, {need} needed"))


def _scratch() -> str:
    path = Path(settings.DATA_ROOT) / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _score_chunk(sub: Submission, chunk: Chunk, result, out_dir: Path) -> str:
    from evaluator.metrics import ScoringError, score_image, worst_rows

    task = sub.phase.task
    ds = sub.phase.test_dataset
    meta = {r["image_name"]: r for r in ds.manifest}
    names = task.label_names
    tolerances = task.nsd_tolerances or [1.0] * task.num_classes
    case_rows: list[CaseScore] = []
    label_rows: list[LabelScore] = []
    failures = 0
    for case_id in chunk.case_ids:
        info = meta.get(case_id, {})
        ref = np.load(Path(ds.labels_dir) / f"{case_id}.npy", allow_pickle=False)
        cr = result.cases.get(case_id)
        error = ""
        error_kind = ""
        confusion: list = []
        if cr is not None and cr.ok:
            pred = np.load(out_dir / f"{case_id}.npy", allow_pickle=False)
            try:
                scores = score_image(
                    pred, ref, num_classes=task.num_classes, ignore_index=task.ignore_index,
                    nsd_tolerance=tolerances, case_id=case_id,
                )  # fmt: skip
                rows = scores.rows
                confusion = scores.confusion.tolist()
            except ScoringError as exc:
                error, error_kind = str(exc), "invalid_output"
        else:
            error = (
                cr.message if cr else "no prediction was produced"
            ) or "no prediction was produced"
            error_kind = (cr.error_kind if cr else None) or "missing"
        if error:
            failures += 1
            present = sorted(
                int(v) for v in np.unique(ref) if v != task.ignore_index and v < task.num_classes
            )
            rows = worst_rows(present, *ref.shape, status="failed")
        if task.scored_labels:  # e.g. a kidney-malperfusion task scores the kidney only
            keep = set(task.scored_labels)
            rows = [r for r in rows if r["label"] < len(names) and names[r["label"]] in keep]
        common = {
            "submission": sub,
            "case_id": case_id,
            "subject": str(info.get("subject", "")),
            "tissue_state": info.get("tissue_state", ""),
            "species": info.get("species", ""),
        }
        for r in rows:
            label_rows.append(
                LabelScore(
                    **common,
                    label=r["label"],
                    label_name=names[r["label"]] if r["label"] < len(names) else str(r["label"]),
                    dsc=_f(r["dsc"]),
                    iou=_f(r.get("iou")),
                    nsd=_f(r["nsd"]),
                    hd95=_f(r.get("hd95")),
                    masd=_f(r.get("masd")),
                )  # fmt: skip
            )
        # The image score: mean over the labels present in the reference or the prediction.
        dsc = float(np.mean([r["dsc"] for r in rows])) if rows else 0.0
        nsd = float(np.mean([r["nsd"] for r in rows])) if rows else 0.0
        case_rows.append(
            CaseScore(
                **common,
                ok=not error,
                error=error[:2000],
                error_kind=error_kind,
                dsc=dsc,
                nsd=nsd,
                confusion=confusion,
            )
        )

    with transaction.atomic():
        locked = Chunk.objects.select_for_update().get(pk=chunk.pk)
        fresh = Submission.objects.select_for_update().get(pk=sub.pk)
        if (
            locked.attempt != chunk.attempt
            or locked.status != "running"
            or fresh.status not in ACTIVE
        ):
            return "discarded (superseded)"
        CaseScore.objects.filter(submission=sub, case_id__in=chunk.case_ids).delete()
        LabelScore.objects.filter(submission=sub, case_id__in=chunk.case_ids).delete()
        CaseScore.objects.bulk_create(case_rows)
        LabelScore.objects.bulk_create(label_rows)
        locked.status = "done"
        locked.save()
        fresh.progress_done = CaseScore.objects.filter(submission=sub).count()
        all_done = not fresh.chunks.exclude(status="done").exists()
        if all_done:
            fresh.status = Status.SCORING
        fresh.heartbeat_at = timezone.now()
        fresh.save()
        if all_done:
            transaction.on_commit(lambda: _queue_finalize(sub.pk, fresh.attempt))
    return f"scored {len(case_rows)} cases ({failures} failed)"


def _f(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _queue_finalize(submission_id: int, attempt: int) -> None:
    from .tasks import finalize_submission

    _send(finalize_submission, [submission_id, attempt], "default")


def _send(task, args: list, queue: str, countdown: float | None = None) -> bool:
    """Publish after commit. A broker outage must not turn a committed state change into an
    error: the reconciler re-sends whatever stays queued (see reconcile)."""
    try:
        task.apply_async(args=args, queue=queue, countdown=countdown)
        return True
    except Exception:  # noqa: BLE001 - kombu raises many types when the broker is down
        log.warning("could not publish %s%s; the reconciler will re-send it", task.name, args)
        return False


def finalize(submission_id: int, attempt: int) -> str:
    from leaderboards.tasks import schedule_ranking

    with transaction.atomic():
        sub = Submission.objects.select_for_update().filter(pk=submission_id).first()
        if sub is None or sub.attempt != attempt or sub.status != Status.SCORING:
            return "stale"
        if sub.chunks.exclude(status="done").exists():
            return "waiting"
        scores = CaseScore.objects.filter(submission=sub)
        n = scores.count()
        failed = scores.filter(ok=False).count()
        sub.n_cases_failed = failed
        sub.progress_done = n
        sub.finished_at = timezone.now()
        if n and failed == n:
            first = scores.filter(ok=False).first()
            reason = first.error if first else "no case produced a valid prediction"
            timed_out = first is not None and first.error_kind == "timeout"
            sub.status = Status.TIMED_OUT if timed_out else Status.FAILED
            sub.failure_kind = "timeout" if timed_out else "model_error"
            sub.status_reason = f"no case could be scored: {reason}"[:2000]
        else:
            sub.status = Status.SUCCEEDED
            sub.status_reason = f"{n - failed} of {n} cases scored" + (
                f"; {failed} failed and count with the worst value" if failed else ""
            )
        sub.save()
    notify_finished(sub)
    if sub.status == Status.SUCCEEDED:
        schedule_ranking(sub.phase_id)
    return sub.status


def platform_failure(submission_id: int, exc: BaseException, internal: str) -> None:
    """An unexpected error on our side: never charged to the participant."""
    _fail(
        submission_id,
        "platform_error",
        "evaluation failed because of an internal platform error",
        internal=internal,
    )


MAX_PLATFORM_RETRIES = 2


def requeue_submission(submission_id: int, reason: str, public: str = "") -> str:
    """Start again as a new attempt after a platform problem (lost worker or message, crash);
    never charged. After MAX_PLATFORM_RETRIES it fails, still uncharged."""
    with transaction.atomic():
        sub = Submission.objects.select_for_update().filter(pk=submission_id).first()
        if sub is None or sub.is_final:
            return "final"
        if sub.platform_retries >= MAX_PLATFORM_RETRIES:
            internal = f"gave up after {sub.platform_retries} platform retries; last: {reason}"
        else:
            sub.platform_retries += 1
            sub.attempt += 1
            sub.status = Status.QUEUED
            sub.status_reason = (
                f"re-queued after a platform problem ({reason}); not counted against your quota"
            )
            sub.progress_done = 0
            sub.worker = ""
            sub.heartbeat_at = timezone.now()  # "queued since", for the reconciler
            sub.save()
            sub.chunks.all().delete()
            CaseScore.objects.filter(submission=sub).delete()
            LabelScore.objects.filter(submission=sub).delete()
            attempt = sub.attempt
            transaction.on_commit(lambda: _queue_start(submission_id, attempt))
            return "requeued"
    _fail(
        submission_id,
        "platform_error",
        _gave_up(public),
        internal=internal,
    )
    return "failed"


def _gave_up(public: str) -> str:
    base = "evaluation failed repeatedly because of platform problems"
    return f"{base} ({public})" if public else base


def requeue_chunk(chunk_id: int, reason: str, public: str = "") -> str:
    with transaction.atomic():
        chunk = _lock_chunk(chunk_id)
        if chunk is None or chunk.status in ("done", "cancelled") or chunk.submission.is_final:
            return "final"
        if chunk.retries >= MAX_PLATFORM_RETRIES:
            sub_id = chunk.submission_id
            give_up = True
        else:
            give_up = False
            chunk.retries += 1
            chunk.attempt += 1
            chunk.status = "queued"
            chunk.worker = ""
            chunk.save()
            cid, attempt, retries = chunk.pk, chunk.attempt, chunk.retries
            transaction.on_commit(lambda: _queue_chunk(cid, attempt, countdown=2.0**retries))
    if give_up:
        _fail(sub_id, "platform_error", _gave_up(public), internal=reason)
        return "failed"
    return "requeued"


def _queue_start(submission_id: int, attempt: int) -> None:
    from .tasks import evaluate_submission

    _send(evaluate_submission, [submission_id, attempt], "evaluation")


def _queue_chunk(chunk_id: int, attempt: int, countdown: float | None = None) -> None:
    from .tasks import evaluate_chunk

    _send(evaluate_chunk, [chunk_id, attempt], _chunk_queue(chunk_id), countdown)
