"""Harness entry point inside the sandbox: `main([job_json_path])`.

Events (one JSON object per line on fd $XENOBENCH_EVENT_FD):
  {"event": "loaded", "format", "seconds"}
  {"event": "validated", "output_kind", "output_shape"}
  {"event": "case", "case_id", "index", "total", "status": "ok"|"error", "kind", "message"}
  {"event": "fatal", "kind", "message"}
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from datasets.spectral import preprocess

from .errors import MODEL_ERROR, OUTPUT_TOO_LARGE, SANDBOX_ERROR, HarnessError, classify
from .loaders import load


class Events:
    def __init__(self) -> None:
        fd = os.environ.get("XENOBENCH_EVENT_FD")
        self.fd = int(fd) if fd and fd.isdigit() else None

    def emit(self, **event) -> None:
        line = (json.dumps(event) + "\n").encode()
        if self.fd is None:
            sys.stderr.write(line.decode())
            return
        view = memoryview(line)
        while view:
            view = view[os.write(self.fd, view) :]


def _path_mapper():
    """Identity inside a sandbox; the dev-only "none" backend maps sandbox paths to host ones."""
    mapping = json.loads(os.environ.get("XENOBENCH_PATH_MAP") or "[]")

    def host(path: str) -> str:
        for dest, real in mapping:
            if path == dest or path.startswith(dest + "/"):
                return real + path[len(dest) :]
        return path

    return host


def main(argv: list[str]) -> int:
    events = Events()
    try:
        with open(argv[0], encoding="utf-8") as fh:
            job = json.load(fh)
        host = _path_mapper()
        for key in ("model", "cubes_dir", "output_dir"):
            if job.get(key):
                job[key] = host(job[key])
        if job["mode"] == "validate":
            return _validate(job, _load(job, events), events)
        return _infer(job, lambda: _load(job, events), events)
    except HarnessError as exc:
        events.emit(event="fatal", kind=exc.kind, message=exc.message)
        return 3
    except BaseException as exc:  # noqa: BLE001
        kind, message = classify(exc)
        events.emit(event="fatal", kind=kind, message=message)
        return 3


def _load(job: dict, events: Events):
    t0 = time.monotonic()
    try:
        runner = load(
            job["model"],
            job["format"],
            num_classes=int(job["num_classes"]),
            threads=int(job.get("threads", 1)),
            gpu=bool(job.get("gpu")),
        )
    except HarnessError:
        raise
    except BaseException as exc:  # noqa: BLE001 - any load failure is the model's
        kind, message = classify(exc)
        if kind == MODEL_ERROR:
            message = "the model could not be loaded: " + str(exc)[:2000]
        raise HarnessError(kind, message) from None
    events.emit(event="loaded", format=job["format"], seconds=time.monotonic() - t0)
    return runner


def exit_main(argv: list[str]) -> int:
    """Entry point used by the sandbox: skips interpreter teardown (torch's can take ~0.5 s);
    every output is already closed and every event written unbuffered."""
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _validate(job: dict, runner, events: Events) -> int:
    h, w = job.get("dummy_hw", [48, 64])
    rng = np.random.default_rng(0)
    cube = rng.random((h, w, int(job["channels"])), dtype=np.float32) + 0.01
    batch = prepare_batch([cube], job.get("preprocessing", "l1"))
    try:
        labels, kind = runner(batch)
    except HarnessError:
        raise
    except BaseException as exc:  # noqa: BLE001
        raise HarnessError(*classify(exc)) from None
    events.emit(event="validated", output_kind=kind, output_shape=list(labels.shape))
    return 0


def _infer(job: dict, load_runner, events: Events) -> int:
    """Run every case. Unless job["prefetch"] is false, the next batch is read and
    preprocessed on a helper thread while the model runs (numpy releases the GIL), and the
    first one while the model loads."""
    case_ids = list(job["case_ids"])
    total = len(case_ids)
    method = job.get("preprocessing", "l1")
    out_dir = job["output_dir"]
    batch_size = max(1, int(job.get("batch_size", 1)))
    groups = _groups(case_ids, batch_size, job["cubes_dir"], job.get("channels"))

    def produce():
        try:
            good, bad = next(groups)
        except StopIteration:
            return None
        batch, error = None, None
        if good:
            try:
                batch = prepare_batch([cube for _, cube in good], method)
            except BaseException as exc:  # noqa: BLE001
                error = classify(exc)
        return good, bad, batch, error

    done = 0
    pool = ThreadPoolExecutor(1) if job.get("prefetch", True) else None
    try:
        future = pool.submit(produce) if pool else None
        runner = load_runner()
        while True:
            item = future.result() if future is not None else produce()
            if item is None:
                break
            if pool:
                future = pool.submit(produce)
            good, bad, batch, error = item
            for case_id, exc in bad:
                done += 1
                events.emit(
                    event="case",
                    case_id=case_id,
                    index=done,
                    total=total,
                    status="error",
                    kind=exc.kind,
                    message=exc.message,
                )
            if not good:
                continue
            t_batch = time.monotonic()
            if error is None:
                try:
                    labels, _ = runner(batch)
                except HarnessError as exc:
                    error = (exc.kind, exc.message)
                except BaseException as exc:  # noqa: BLE001
                    error = classify(exc)
            del batch
            for k, (case_id, _) in enumerate(good):
                done += 1
                if error is None:
                    error_k = _write(os.path.join(out_dir, case_id + ".npy"), labels[k])
                else:
                    error_k = error
                kind, message = error_k if error_k else (None, None)
                events.emit(
                    event="case",
                    case_id=case_id,
                    index=done,
                    total=total,
                    status="ok" if error_k is None else "error",
                    kind=kind,
                    message=message,
                    seconds=(time.monotonic() - t_batch) / len(good),
                )
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return 0


def _groups(case_ids: list[str], batch_size: int, cubes_dir: str, channels):
    """Yield (cases to run together, cases that could not be read); a batch holds cubes of
    one shape only."""
    i, total = 0, len(case_ids)
    carry = None
    while i < total or carry is not None:
        good: list[tuple[str, np.ndarray]] = []
        bad: list[tuple[str, HarnessError]] = []
        if carry is not None:
            good.append(carry)
            carry = None
        while i < total and len(good) < batch_size:
            case_id = case_ids[i]
            i += 1
            try:
                cube = read_cube(os.path.join(cubes_dir, case_id + ".npy"), channels)
            except HarnessError as exc:
                bad.append((case_id, exc))
                continue
            if good and good[0][1].shape != cube.shape:
                carry = (case_id, cube)
                break
            good.append((case_id, cube))
        yield good, bad


def prepare_batch(cubes: list[np.ndarray], method: str) -> np.ndarray:
    """(H, W, C) cubes of one shape -> the float32 [B, C, H, W] batch every model format
    receives: datasets.spectral.preprocess, the function the starter kit trains with."""
    if len(cubes) == 1:
        return preprocess(cubes[0], method, channels_first=True)[None]
    return np.stack([preprocess(cube, method, channels_first=True) for cube in cubes])


def read_cube(path: str, channels) -> np.ndarray:
    try:
        cube = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise HarnessError(SANDBOX_ERROR, f"cannot read the input cube: {exc}") from None
    if cube.ndim != 3 or cube.dtype not in (np.float32, np.float16):
        raise HarnessError(SANDBOX_ERROR, f"bad input cube {cube.shape} {cube.dtype}")
    if channels and cube.shape[2] != int(channels):
        raise HarnessError(SANDBOX_ERROR, f"cube has {cube.shape[2]} channels, not {channels}")
    return cube


def _write(path: str, labels: np.ndarray) -> tuple[str, str] | None:
    try:
        np.save(path, np.ascontiguousarray(labels, dtype=np.uint8), allow_pickle=False)
    except OSError as exc:
        if exc.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
            return OUTPUT_TOO_LARGE, "the output is larger than the allowed output size"
        return SANDBOX_ERROR, f"cannot write the output: {exc}"
    return None
