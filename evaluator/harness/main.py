"""Harness entry point inside the sandbox: `main([job_json_path])`.

Events (one JSON object per line on fd $XENOBENCH_EVENT_FD):
  {"event": "loaded", "format", "seconds"}
  {"event": "validated", "output_kind", "output_shape"}
  {"event": "case", "case_id", "index", "total", "status": "ok"|"error", "kind", "message"}
  {"event": "fatal", "kind", "message"}

Modes: "validate" (a dummy cube), "infer" (the job's case ids), "serve" (a warm sandbox:
case ids arrive one JSON line at a time on fd $XENOBENCH_FEED_FD, each once the host has
made its cube visible in /input, until the host closes the feed).
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
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
        if job["mode"] == "serve":
            return _serve(job, events)
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


def _serve(job: dict, events: Events) -> int:
    """Serve mode (a warm sandbox): the host's feed may open with a validation request (the
    dummy cube's H, W, channels), then sends case ids until it closes; the model is loaded
    once for all of them."""
    feed = _feed(int(os.environ["XENOBENCH_FEED_FD"]))
    first = next(feed, None)
    if first is None:
        return 0
    if "validate" in first:
        runner = _load(job, events)
        h, w = (int(v) for v in first["validate"])
        dummy = {**job, "dummy_hw": [h, w], "channels": int(first.get("channels") or 1)}
        _validate(dummy, runner, events)
        rest = feed
        load_runner = lambda: runner  # noqa: E731
    else:
        rest = itertools.chain([first], feed)
        load_runner = lambda: _load(job, events)  # noqa: E731
    case_ids = (str(m["case_id"]) for m in rest if isinstance(m.get("case_id"), str))
    return _infer(job, load_runner, events, case_ids)


def _infer(job: dict, load_runner, events: Events, fed: Iterable[str] | None = None) -> int:
    """Run every case. Unless job["prefetch"] is false, the next batch is read and
    preprocessed on a helper thread while the model runs (numpy releases the GIL), and the
    first one while the model loads. Cases `fed` by the host (serve mode) come one at a time
    (batches of one: a case's successor may only be fed once it is closed)."""
    if fed is not None:
        case_ids: Iterable[str] = fed
        total = 0
        batch_size = 1
    else:
        case_ids = list(job["case_ids"])
        total = len(case_ids)
        batch_size = max(1, int(job.get("batch_size", 1)))
    method = job.get("preprocessing", "l1")
    out_dir = job["output_dir"]
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


def _feed(fd: int) -> Iterator[dict]:
    """The host's requests, one JSON object a line, until it closes the feed."""
    with os.fdopen(fd, "rb") as fh:
        for line in fh:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                yield message


def _groups(case_ids: Iterable[str], batch_size: int, cubes_dir: str, channels):
    """Yield (cases to run together, cases that could not be read); a batch holds cubes of
    one shape only."""
    source = iter(case_ids)
    exhausted = False
    carry = None
    while not exhausted or carry is not None:
        good: list[tuple[str, np.ndarray]] = []
        bad: list[tuple[str, HarnessError]] = []
        if carry is not None:
            good.append(carry)
            carry = None
        while len(good) < batch_size:
            case_id = next(source, None)
            if case_id is None:
                exhausted = True
                break
            try:
                cube = read_cube(os.path.join(cubes_dir, case_id + ".npy"), channels)
            except HarnessError as exc:
                bad.append((case_id, exc))
                break  # reported at once: in serve mode the next case comes after it closes
            if good and good[0][1].shape != cube.shape:
                carry = (case_id, cube)
                break
            good.append((case_id, cube))
        if good or bad:
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
        # errno None: numpy's short write ("... requested and ... written") at RLIMIT_FSIZE
        # or a full output tmpfs.
        if exc.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT, None):
            return OUTPUT_TOO_LARGE, "the output is larger than the allowed output size"
        return SANDBOX_ERROR, f"cannot write the output: {exc}"
    return None
