"""Trusted-side API: validate a participant's model and run it over hidden cubes, sandboxed.

Nothing here opens the model: the format is sniffed from content (evaluator.modelformats)
and every load happens inside the sandbox (evaluator.harness). The only things that cross
back are JSON progress lines and .npy label maps, which are validated here before use.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from evaluator.harness.errors import (
    FORMAT_ERROR,
    INVALID_OUTPUT,
    MEMORY,
    MODEL_ERROR,
    OUTPUT_TOO_LARGE,
    SANDBOX_ERROR,
    TIMEOUT,
    TOO_MANY_PROCESSES,
    fixed_message,
    inside_kind,
)
from evaluator.modelformats import ModelFormatError, ModelInfo, get_format, inspect_model
from evaluator.sandbox import (
    DockerSandbox,
    Executor,
    ImageRef,
    ImageRefused,
    Limits,
    Mount,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    get_sandbox,
    production_switch_on,
    warm,
)
from evaluator.sandbox.oci import OciSandbox

__all__ = [
    "CaseResult",
    "InferenceResult",
    "Limits",
    "RunSpec",
    "ValidationReport",
    "run_inference",
    "validate_label_map",
    "validate_model",
]

CASE_ID = re.compile(r"^[A-Za-z0-9_#@+=,-][A-Za-z0-9_#@+=,.-]{0,150}$")
HARNESS_MAIN = "evaluator.harness.main:exit_main"
DUMMY_HW = (48, 64)  # validation cube: small, and neither side a power of two
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One sandboxed run of a model: what runs, on which cases, under which limits.

    ``cubes_dir=None`` means validation: the harness makes a dummy cube of ``channels``.
    """

    model: ModelInfo
    output_dir: Path  # staging folder that receives the validated copies of /output
    num_classes: int
    limits: Limits
    backend: str = "bwrap"
    production: bool = False
    preprocessing: str = "l1"
    cubes_dir: Path | None = None
    case_ids: tuple[str, ...] = ()
    shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # case -> (H, W)
    channels: int | None = None
    batch_size: int = 1
    prefetch: bool = True
    on_event: Callable[[dict], None] | None = None  # progress events from the harness
    # Runs with the same key share one warm sandbox on this worker (the model loaded once,
    # cases fed one at a time: evaluator.sandbox.warm); the key must name the model's content
    # (its path may change between runs). None: a fresh sandbox for this run.
    warm_key: str | None = None

    def harness_job(self, model_dest: str, *, serve: bool = False) -> dict:
        """The job file read by evaluator.harness.main inside the sandbox."""
        job = {
            "model": model_dest,
            "format": self.model.format,
            "num_classes": self.num_classes,
            "preprocessing": self.preprocessing,
            "threads": self.limits.threads,
            "gpu": self.limits.gpu,
            "channels": self.channels,
        }
        if serve:  # a warm sandbox: validation and cases come on the feed
            io = {"cubes_dir": "/input", "output_dir": "/output", "prefetch": self.prefetch}
            return {**job, "mode": "serve", **io}
        if self.cubes_dir is None:
            return {**job, "mode": "validate", "dummy_hw": list(DUMMY_HW)}
        return {
            **job,
            "mode": "infer",
            "case_ids": list(self.case_ids),
            "cubes_dir": "/input",
            "output_dir": "/output",
            "batch_size": self.batch_size,
            "prefetch": self.prefetch,
        }


@dataclass
class ValidationReport:
    ok: bool
    message: str  # for the participant
    format: str | None = None
    output_kind: str | None = None  # "scores" ([B, K, H, W]) or "labels" ([B, H, W])
    error_kind: str | None = None
    log: str = ""


@dataclass
class CaseResult:
    case_id: str
    ok: bool
    error_kind: str | None = None
    message: str = ""


@dataclass
class InferenceResult:
    ok: bool  # every case produced a valid label map
    cases: dict[str, CaseResult]
    elapsed: float
    log: str = ""  # participant-visible, size-capped
    error_kind: str | None = None  # the run's main failure, if any
    message: str = ""
    format: str | None = None
    rejected_outputs: list[tuple[str, str]] = field(default_factory=list)
    cpu_seconds: float = 0.0  # user + system CPU of the sandboxed processes
    max_rss_kb: int = 0

    @property
    def succeeded(self) -> list[str]:
        return [c for c, r in self.cases.items() if r.ok]


# --- public API -------------------------------------------------------------------------


def validate_model(
    model_path: str | os.PathLike[str],
    *,
    channels: int,
    num_classes: int,
    limits: Limits,
    backend: str = "bwrap",
    preprocessing: str = "l1",
    production: bool = False,
    warm_key: str | None = None,
) -> ValidationReport:
    """Sniff the format, then load and run the model on a small dummy cube inside the sandbox.
    With `warm_key`, the sandbox stays warm for the runs of that key (see RunSpec.warm_key)."""
    try:
        info = inspect_model(model_path)
    except ModelFormatError as exc:
        return ValidationReport(False, str(exc), error_kind=FORMAT_ERROR)
    route = _ROUTES[get_format(info.format).executor]
    with tempfile.TemporaryDirectory(prefix="xb-validate-") as scratch:
        spec = RunSpec(
            model=info,
            output_dir=Path(scratch),
            num_classes=num_classes,
            limits=limits,
            backend=backend,
            production=production,
            preprocessing=preprocessing,
            channels=channels,
            warm_key=warm_key,
        )
        try:
            return route.validate(spec)
        except ImageRefused as exc:
            return ValidationReport(False, str(exc), info.format, error_kind=FORMAT_ERROR)
        except SandboxError as exc:
            return ValidationReport(
                False, f"sandbox error: {exc}", info.format, error_kind=SANDBOX_ERROR
            )


def run_inference(
    model_path: str | os.PathLike[str],
    *,
    cubes_dir: str | os.PathLike[str],
    case_ids: Sequence[str],
    output_dir: str | os.PathLike[str],
    num_classes: int,
    preprocessing: str = "l1",
    limits: Limits,
    backend: str = "bwrap",
    batch_size: int = 1,
    progress: Progress | None = None,
    channels: int | None = None,
    production: bool = False,
    prefetch: bool = True,
    warm_key: str | None = None,
) -> InferenceResult:
    """Run the model over `<cubes_dir>/<case_id>.npy`, writing `<output_dir>/<case_id>.npy`.

    With `warm_key`, runs of the same key on this worker share one warm sandbox that loads
    the model once (see RunSpec.warm_key); the isolation is that of a fresh one.

    Every output is validated (shape == the cube's H x W, uint8, classes < num_classes,
    size cap, a plain .npy); failing outputs are per-case errors, never exceptions.
    Re-running is idempotent: a failed case leaves no stale output behind. Raises only for
    platform-side problems: ValueError for bad case ids, OSError/ValueError for a missing or
    malformed cube.
    """
    start = time.monotonic()
    cubes = Path(cubes_dir)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    bad = [c for c in case_ids if not CASE_ID.match(c)]
    if bad or len(set(case_ids)) != len(case_ids):
        raise ValueError(f"invalid or duplicate case ids: {bad[:5]}")
    shapes = {c: _cube_hw(cubes / f"{c}.npy") for c in case_ids}

    def fail_all(kind: str, message: str, fmt: str | None = None) -> InferenceResult:
        cases = {c: CaseResult(c, False, kind, message) for c in case_ids}
        return InferenceResult(False, cases, time.monotonic() - start, "", kind, message, fmt)

    try:
        info = inspect_model(model_path)
    except ModelFormatError as exc:
        return fail_all(FORMAT_ERROR, str(exc))
    route = _ROUTES[get_format(info.format).executor]
    staging = Path(tempfile.mkdtemp(prefix=".xb-staging-", dir=out))
    try:
        spec = RunSpec(
            model=info,
            output_dir=staging,
            num_classes=num_classes,
            limits=limits,
            backend=backend,
            production=production,
            preprocessing=preprocessing,
            cubes_dir=cubes,
            case_ids=tuple(case_ids),
            shapes=shapes,
            channels=channels,
            batch_size=batch_size,
            prefetch=prefetch,
            on_event=_progress_adapter(progress, case_ids),
            warm_key=warm_key,
        )
        try:
            result = route.run(spec)
        except ImageRefused as exc:
            return fail_all(FORMAT_ERROR, str(exc), fmt=info.format)
        except SandboxError as exc:
            return fail_all(SANDBOX_ERROR, f"sandbox error: {exc}", fmt=info.format)
        cases = _collect(result, staging, out, case_ids, shapes, num_classes, limits)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    failed = [r for r in cases.values() if not r.ok]
    error_kind, message = (None, "")
    if failed:
        first = (failed[0].error_kind, failed[0].message)
        error_kind, message = _run_failure(result, default=first)
    return InferenceResult(
        ok=not failed,
        cases=cases,
        elapsed=time.monotonic() - start,
        log=result.log,
        error_kind=error_kind,
        message=message,
        format=info.format,
        rejected_outputs=result.rejected,
        cpu_seconds=result.cpu_seconds,
        max_rss_kb=result.max_rss_kb,
    )


def validate_label_map(
    path: Path, *, shape: tuple[int, int], num_classes: int, max_bytes: int
) -> str | None:
    """None if `path` is a plain uint8 .npy of `shape` with labels < num_classes, else why not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "no output was written"
    if not os.path.isfile(path) or os.path.islink(path):
        return "the output is not a regular file"
    if st.st_size > max_bytes:
        return f"the output is {st.st_size} bytes, over the {max_bytes} byte limit"
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                hdr = np.lib.format.read_array_header_1_0(fh, max_header_size=10_000)
            elif version in ((2, 0), (3, 0)):
                hdr = np.lib.format.read_array_header_2_0(fh, max_header_size=10_000)
            else:
                return f"unsupported .npy version {version}"
            offset = fh.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        return f"the output is not a valid .npy file ({exc})"
    arr_shape, fortran, dtype = hdr
    if dtype.hasobject:
        return "the output holds Python objects (pickle), refused"
    if dtype != np.uint8:
        return f"the output has dtype {dtype}, expected uint8"
    if tuple(arr_shape) != tuple(shape):
        return f"the output has shape {tuple(arr_shape)}, expected {tuple(shape)}"
    if st.st_size != offset + int(np.prod(shape)):
        return "the output file size does not match its header (truncated or padded)"
    labels = np.load(path, mmap_mode="r", allow_pickle=False)
    top = int(labels.max()) if labels.size else 0
    if top >= num_classes:
        return f"the output contains class {top}, outside the task's classes 0..{num_classes - 1}"
    return None


# --- internals ----------------------------------------------------------------------------


def _cube_hw(path: Path) -> tuple[int, int]:
    cube = np.load(path, mmap_mode="r", allow_pickle=False)
    if cube.ndim != 3:
        raise ValueError(f"{path.name}: expected an (H, W, C) cube, got shape {cube.shape}")
    return int(cube.shape[0]), int(cube.shape[1])


def _progress_adapter(
    progress: Progress | None, case_ids: Sequence[str]
) -> Callable[[dict], None] | None:
    """Progress from untrusted events, clamped: only the run's own cases count, each once, so
    `done` stays within 0..len(case_ids) whatever the model writes."""
    if progress is None:
        return None
    wanted = set(case_ids)
    seen: set[str] = set()
    total = len(case_ids)

    def on_event(event: dict) -> None:
        case_id = event.get("case_id")
        if event.get("event") != "case" or not isinstance(case_id, str):
            return
        if case_id not in wanted or case_id in seen:
            return
        seen.add(case_id)
        progress(len(seen), total, case_id)

    return on_event


def _model_mounts(info: ModelInfo) -> tuple[list[Mount], str]:
    folder = info.path.parent.resolve()
    mounts = [Mount(info.path.resolve(), f"/model/{_safe_leaf(info.path.name)}")]
    for extra in info.extra_files:
        rel = extra.relative_to(folder).as_posix()
        mounts.append(Mount(extra, f"/model/{rel}"))
    return mounts, mounts[0].dest


def _input_mounts(spec: RunSpec, jobdir: Path) -> list[Mount]:
    """/input holds this run's cubes only (never the whole test folder, other chunks' or
    phases' cubes, or labels): a per-run folder of hard links, or where the cubes live on
    another file system, one read-only bind per cube (symbolic links for the unconfined
    development backend, which maps /input to a host folder)."""
    assert spec.cubes_dir is not None
    folder = jobdir / "input"
    folder.mkdir()
    sources = [((spec.cubes_dir / f"{c}.npy").resolve(), f"{c}.npy") for c in spec.case_ids]
    try:
        for src, name in sources:
            os.link(src, folder / name)
    except OSError:
        if spec.backend != "none":
            shutil.rmtree(folder)
            return [Mount(src, f"/input/{name}") for src, name in sources]
        for src, name in sources:
            if not (folder / name).exists():
                os.symlink(src, folder / name)
    return [Mount(folder, "/input")]


def _safe_leaf(name: str) -> str:
    leaf = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "model"
    return leaf if not leaf.startswith(".") else "m" + leaf


def _output_quota(shapes: Mapping[str, tuple[int, int]]) -> int:
    return sum(h * w + 4096 for h, w in shapes.values()) + 8 * 1024**2


class _HarnessRoute:
    """Model files (TorchScript, torch.export, ONNX, ...): evaluator.harness loads and runs
    them inside a bwrap (or, in development, "none") sandbox."""

    def run(self, spec: RunSpec) -> SandboxResult:
        sandbox = self._sandbox(spec.backend, spec.production)
        if spec.warm_key is not None and hasattr(sandbox, "prepare"):
            return self._run_warm(spec, sandbox)
        mounts, model_dest = _model_mounts(spec.model)
        with tempfile.TemporaryDirectory(prefix="xb-job-") as jobdir:
            if spec.cubes_dir is not None:
                mounts += _input_mounts(spec, Path(jobdir))
            job_file = Path(jobdir) / "job.json"
            job_file.write_text(json.dumps(spec.harness_job(model_dest)))
            # Readable by an unprivileged sandbox uid (bwrap fallback): no secrets in here.
            os.chmod(jobdir, 0o755)
            job_file.chmod(0o644)
            mounts.append(Mount(job_file, "/job/job.json"))
            expected = {f"{c}.npy" for c in spec.case_ids}
            request = SandboxRequest(
                argv=["/job/job.json"],
                python_main=HARNESS_MAIN,
                mounts=mounts,
                output_dir=spec.output_dir,
                limits=spec.limits,
                on_event=spec.on_event,
                output_names=expected.__contains__,
                output_quota_bytes=_output_quota(spec.shapes) if spec.shapes else 16 * 1024**2,
            )
            return sandbox.run(request)

    @staticmethod
    def _run_warm(spec: RunSpec, sandbox) -> SandboxResult:
        """The run's cases through this worker's warm sandbox for spec.warm_key (started
        here, with the confinement of a one-shot run, when there is none yet); a validation
        (no cubes) opens a new one that then serves the runs."""
        model = spec.model
        key = (
            spec.warm_key, spec.backend, spec.production, model.size, model.format,
            spec.num_classes, spec.preprocessing, spec.limits, spec.prefetch,
        )  # fmt: skip

        def start() -> warm.WarmSession:
            folder = warm.new_session_dir()
            try:
                mounts, model_dest = _model_mounts(model)
                job_file = folder / "job.json"
                job_file.write_text(json.dumps(spec.harness_job(model_dest, serve=True)))
                job_file.chmod(0o644)
                mounts += [Mount(folder / "input", "/input"), Mount(job_file, "/job/job.json")]
                request = SandboxRequest(
                    argv=["/job/job.json"],
                    python_main=HARNESS_MAIN,
                    mounts=mounts,
                    output_dir=spec.output_dir,
                    limits=warm.session_limits(spec.limits),
                )
                prepared = sandbox.prepare(request)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            window = 2 if spec.prefetch else 1
            return warm.WarmSession(
                prepared, request, folder, window=window, link=warm.link_or_copy
            )

        if spec.cubes_dir is None:
            channels = spec.channels or 1
            return warm.serve_validation(
                warm.POOL, key, start, DUMMY_HW, channels, limits=spec.limits
            )
        expected = {f"{c}.npy" for c in spec.case_ids}
        return warm.serve_run(
            warm.POOL,
            key,
            start,
            spec.case_ids,
            spec.cubes_dir,
            spec.output_dir,
            limits=spec.limits,
            accept=expected.__contains__,
            on_event=spec.on_event,
        )

    def validate(self, spec: RunSpec) -> ValidationReport:
        info = spec.model
        result = self.run(spec)
        validated = [e for e in result.events if e.get("event") == "validated"]
        if result.ok and validated:
            kind = str(validated[-1].get("output_kind"))
            message = f"the {info.format} model loaded and produced {kind} of the expected shape"
            return ValidationReport(True, message, info.format, kind, log=result.log)
        error_kind, message = _run_failure(result)
        return ValidationReport(False, message, info.format, error_kind=error_kind, log=result.log)

    @staticmethod
    def _sandbox(backend: str, production: bool) -> Executor:
        if backend in ("docker", "podman"):
            raise SandboxError(
                f"model files run under bwrap (or none in development), not {backend}; "
                "container images run under docker/podman"
            )
        return get_sandbox(backend, production=production)


class _ContainerRoute:
    """Container images, reading /input and writing /output: unpacked and run under bwrap
    (OciSandbox, no daemon), or loaded into docker/podman where the backend names one."""

    def run(self, spec: RunSpec) -> SandboxResult:
        if spec.cubes_dir is None:
            raise ValueError("a container run needs a cubes folder")
        sandbox = self._sandbox(spec.backend, production=spec.production)
        image = sandbox.load_image(spec.model.path)
        try:
            return self._run_loaded(spec, sandbox, image)
        finally:
            if isinstance(sandbox, OciSandbox):  # a private unpacked copy; engines keep theirs
                sandbox.remove_image(image)

    def _run_loaded(
        self, spec: RunSpec, sandbox: OciSandbox | DockerSandbox, image: ImageRef
    ) -> SandboxResult:
        assert spec.cubes_dir is not None
        with tempfile.TemporaryDirectory(prefix="xb-case-") as jobdir:
            os.chmod(jobdir, 0o755)  # readable by an unprivileged sandbox uid (bwrap fallback)
            case_json = Path(jobdir) / "case.json"
            case_json.write_text(
                json.dumps({"case_ids": list(spec.case_ids), "num_classes": spec.num_classes})
            )
            case_json.chmod(0o644)
            cubes = spec.cubes_dir
            mounts = [
                Mount((cubes / f"{c}.npy").resolve(), f"/input/{c}.npy") for c in spec.case_ids
            ]
            mounts.append(Mount(case_json, "/input/case.json"))
            request = SandboxRequest(
                argv=[],
                mounts=mounts,
                output_dir=spec.output_dir,
                limits=spec.limits,
                output_names={f"{c}.npy" for c in spec.case_ids}.__contains__,
                output_quota_bytes=_output_quota(spec.shapes),
                image=image,
            )
            result = sandbox.run(request)
        if spec.on_event is not None:  # containers report no progress: all cases at the end
            total = len(spec.case_ids)
            for k, case_id in enumerate(spec.case_ids, 1):
                spec.on_event({"event": "case", "case_id": case_id, "index": k, "total": total})
        return result

    def validate(self, spec: RunSpec) -> ValidationReport:
        """A dummy cube through the image, as one inference case."""
        info = spec.model
        cubes = spec.output_dir / "cubes"
        staging = spec.output_dir / "out"
        cubes.mkdir()
        staging.mkdir()
        rng = np.random.default_rng(0)
        h, w = DUMMY_HW
        np.save(cubes / "dummy.npy", rng.random((h, w, spec.channels or 1), dtype=np.float32))
        shapes = {"dummy": DUMMY_HW}
        dummy = replace(
            spec, cubes_dir=cubes, case_ids=("dummy",), shapes=shapes, output_dir=staging
        )
        result = self.run(dummy)
        case = _collect(result, staging, staging, ["dummy"], shapes, spec.num_classes, spec.limits)
        if case["dummy"].ok:
            message = "the container produced a valid label map"
            return ValidationReport(True, message, info.format, "labels", log=result.log)
        error_kind, message = _run_failure(
            result, default=(case["dummy"].error_kind, case["dummy"].message)
        )
        return ValidationReport(False, message, info.format, error_kind=error_kind, log=result.log)

    @staticmethod
    def _sandbox(backend: str, production: bool = False) -> OciSandbox | DockerSandbox:
        if backend == "bwrap":
            return OciSandbox(production=production or production_switch_on())
        engines = [backend] if backend in ("docker", "podman") else ["docker", "podman"]
        reasons = []
        for engine in engines:
            sandbox = DockerSandbox(engine)
            ok, why = sandbox.available()
            if ok:
                return sandbox
            reasons.append(why)
        raise SandboxError("no container engine works on this worker: " + "; ".join(reasons))


# How each executor kind named by a format handler (evaluator.modelformats) is run.
_ROUTES: dict[str, _HarnessRoute | _ContainerRoute] = {
    "harness": _HarnessRoute(),
    "container": _ContainerRoute(),
}


def _collect(
    result: SandboxResult,
    staging: Path,
    out: Path,
    case_ids: Sequence[str],
    shapes: dict[str, tuple[int, int]],
    num_classes: int,
    limits: Limits,
) -> dict[str, CaseResult]:
    reported = {str(e.get("case_id")): e for e in result.events if e.get("event") == "case"}
    rejected = dict(result.rejected)
    fallback_kind, fallback_msg = _run_failure(result)
    max_bytes = limits.max_output_mb * 1024**2
    cases: dict[str, CaseResult] = {}
    for case_id in case_ids:
        name = f"{case_id}.npy"
        event = reported.get(case_id)
        if case_id in result.stopped:  # a warm sandbox was stopped on (or before) this case
            kind, msg = _run_failure(result.stopped[case_id], default=_ENDED)
            cases[case_id] = CaseResult(case_id, False, kind, msg)
            continue
        if event is not None and event.get("status") == "error":
            kind = inside_kind(event.get("kind"))
            cases[case_id] = CaseResult(case_id, False, kind, str(event.get("message", ""))[:2000])
            continue
        src = staging / name
        if name in rejected:
            reason = f"output refused: {rejected[name]}"
            too_big = "size" in rejected[name] or "larger" in rejected[name]
            kind = OUTPUT_TOO_LARGE if too_big else INVALID_OUTPUT
            cases[case_id] = CaseResult(case_id, False, kind, reason)
            continue
        if not os.path.lexists(src):
            kind, msg = (fallback_kind, fallback_msg)
            if not kind:
                kind, msg = MODEL_ERROR, "the model produced no output for this case"
            cases[case_id] = CaseResult(case_id, False, kind, msg)
            continue
        why = validate_label_map(
            src, shape=shapes[case_id], num_classes=num_classes, max_bytes=max_bytes
        )
        if why is not None:
            cases[case_id] = CaseResult(case_id, False, INVALID_OUTPUT, why)
            continue
        os.replace(src, out / name)
        cases[case_id] = CaseResult(case_id, True)
    for case_id, case in cases.items():
        if not case.ok:  # a rerun must not leave an earlier run's map looking like a result
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out / f"{case_id}.npy")
    return cases


_ENDED = (MODEL_ERROR, "the model process ended before this case was finished")


def _run_failure(result: SandboxResult, default=(None, "")) -> tuple[str | None, str]:
    """The run-level failure (kind, participant message), from the strongest evidence: what
    the host and the kernel observed first, reports from inside the sandbox last. Nothing
    from inside can make a run a platform failure (sandbox_error): a forged "fatal" event or
    a killed supervisor is charged like any other model failure."""
    if result.stream_limit:
        return OUTPUT_TOO_LARGE, "the model wrote too much to stdout/stderr and was stopped"
    if result.timed_out:
        return TIMEOUT, "the run exceeded its wall-clock time limit and was stopped"
    if result.memory_exceeded:
        return MEMORY, "the run's processes together exceeded the memory limit and were stopped"
    if result.process_limit:
        return (
            TOO_MANY_PROCESSES,
            "the model started more processes or threads than allowed and was stopped",
        )
    if result.supervisor_lost:
        return MODEL_ERROR, "the sandbox's supervisor was stopped from inside the sandbox"
    fatal = [e for e in result.events if e.get("event") == "fatal"]
    if fatal:
        claimed = fatal[-1].get("kind")
        kind = inside_kind(claimed)
        if kind != claimed:  # a claim of a platform fault from inside: not shown
            return kind, fixed_message(kind)
        return kind, str(fatal[-1].get("message", ""))[:4000]
    sig = result.signal
    if sig == signal.SIGXCPU:
        return TIMEOUT, "the run exceeded its CPU time limit and was stopped"
    if sig == signal.SIGKILL:
        return MEMORY, "the model process was killed (most likely by the memory limit)"
    if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
        return MODEL_ERROR, f"the model process crashed (signal {signal.Signals(sig).name})"
    if sig is not None:
        return MODEL_ERROR, f"the model process was killed by signal {sig}"
    if result.exit_code not in (0, None):
        return MODEL_ERROR, f"the model process exited with code {result.exit_code}"
    return default
