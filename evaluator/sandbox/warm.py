"""Warm sandboxes: one sandboxed harness process that loads the model once and then serves
case after case, run after run (the chunks of one submission), instead of paying the
interpreter start, ``import torch`` and the model load for every chunk.

The confinement is the one of a one-shot run (the backend's ``prepare``: bwrap namespaces,
the per-run cgroup, seccomp, rlimits, size-capped tmpfs mounts, the in-sandbox supervisor).
What changes is how cases reach the model and how outputs come back:

- /input is a host folder of this session; a case's cube is linked into it only when the
  case is fed to the harness and removed once the case is closed. At most ``window`` cases
  are visible at once (the one being run and, with prefetching, the next one), and a case
  is revealed only after every case before it but ``window - 1`` has been closed, so a model
  never sees a case whose turn has not come, nor another run's cases.
- The harness reports each case on the (untrusted) event channel. Only a report for the
  oldest open case closes it: the host then asks the supervisor for that case's output file
  (a framed tar on the supervisor's own pipe, removed from the capped /output tmpfs), hides
  the cube, and reveals the next case. A forged report only closes the model's own case
  early, without its output.
- Limits are enforced by the host per case (``Limits.case_seconds``, from the moment the
  case is the oldest open one) and per run (``Limits.wall_seconds``, from the start of the
  run), and by the kernel over the whole session (cgroup memory/pids/CPU, rlimits). A stop
  kills the whole tree; the case being served is charged with what the host observed, and
  the rest of the run goes on in a fresh sandbox (``serve_run``), as long as the model had
  served a case before and the restart budget lasts; otherwise the rest is charged with the
  same failure, as a one-shot run would be.

``WarmPool`` holds at most one session per worker process, keyed by everything that shapes
the process (submission attempt, model, task settings, limits); a different key, an idle
timeout or a run budget ends it.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ._supervised import STARTS, Prepared
from .base import (
    MAX_EVENT_LINE,
    CappedLog,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    extract_outputs,
    kill_tree,
)
from .cgroup import LAUNCH_FAILED
from .limits import Limits

COLLECT_SECONDS = 30.0  # the supervisor answers a collect within this, or the session ends
MAX_QUEUED_EVENTS = 10_000  # events beyond this backlog are dropped (a flooding model)
MAX_KEPT_EVENTS = 200  # non-case events kept per run (fatal, loaded)
MAX_RESTARTS = 2  # fresh sandboxes per run after a stop, for the rest of the run's cases
SESSION_RUNS = 64  # runs one session serves before it is replaced
IDLE_SECONDS = float(os.environ.get("XENOBENCH_WARM_IDLE_SECONDS", "60"))
WARM_DIR_ENV = "XENOBENCH_WARM_DIR"  # where sessions' /input folders are made


@dataclass
class Part:
    """What one session did for one run."""

    events: list[dict] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    log: str = ""
    head: str | None = None  # the case being served when the session stopped
    rest: list[str] = field(default_factory=list)  # cases not closed besides the head
    death: SandboxResult | None = None  # what the host observed when the session stopped


class WarmSession:
    """One sandboxed harness process in serve mode (see the module docstring)."""

    def __init__(
        self,
        prepared: Prepared,
        request: SandboxRequest,
        folder: Path,
        *,
        window: int,
        link: Callable[[Path, Path], None],
    ) -> None:
        self.request = request
        self.limits = request.limits
        self.folder = folder  # owned by the session, removed at its end
        self.input_dir = folder / "input"  # shown at /input
        self.window = max(1, window)
        self._link = link
        self.prepared = prepared
        self.group = prepared.group
        self.loaded = False
        self.served = 0  # cases closed over the session's life
        self.runs = 0
        self.busy = False  # lent out by the pool for a run
        self.dead = False
        self.last_used = time.monotonic()
        self._killed_for_time = False
        self._status: dict = {}
        self._started = threading.Event()
        self._events: queue.Queue = queue.Queue()
        self._frames: queue.Queue = queue.Queue()
        self._log_lock = threading.Lock()
        self._overflowed = False
        self._log = self._new_log()  # output before the first run is capped the same way
        self._closed: SandboxResult | None = None
        self._start()

    # --- life cycle ---------------------------------------------------------------------
    def _start(self) -> None:
        prepared = self.prepared
        ev_r, ev_w = os.pipe()
        st_r, st_w = os.pipe()
        tar_r, tar_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        feed_r, feed_w = os.pipe()
        cfg = dict(prepared.cfg, status_fd=st_w, tar_fd=tar_w, ctl_fd=ctl_r, feed_fd=feed_r)
        cfg["serve"] = True
        cfg["env"] = dict(cfg["env"], XENOBENCH_EVENT_FD=str(ev_w), XENOBENCH_FEED_FD=str(feed_r))
        argv = [*prepared.outer, *prepared.supervisor, json.dumps(cfg)]
        if self.group is not None:
            argv = self.group.launcher(argv)
        child_fds = (ev_w, st_w, tar_w, ctl_r, feed_r, *prepared.extra_fds)
        STARTS["processes"] += 1
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=child_fds,
                start_new_session=True,
                env=prepared.env,
            )
        except OSError as exc:
            for fd in (ev_r, st_r, tar_r, ctl_w, feed_w, *child_fds):
                os.close(fd)
            prepared.release()
            raise SandboxError(f"the sandbox failed to start: {exc}") from None
        for fd in child_fds:
            os.close(fd)
        self._ctl = ctl_w
        self._feed = feed_w
        for fd in (ctl_w, feed_w):
            os.set_blocking(fd, False)  # a model that stops reading must not block the host
        self._oom = self.group.on_oom(self.kill) if self.group is not None else None
        self._threads = [
            _thread(self._pump_log, self.proc.stdout),
            _thread(self._pump_events, ev_r),
            _thread(self._pump_status, st_r),
            _thread(self._pump_frames, tar_r),
        ]
        self._started.wait(self.request.startup_grace_seconds)
        if not self._status.get("started"):  # the sandbox itself did not come up: ours
            self.kill()
            code = self.proc.wait()
            self.close()
            if code == LAUNCH_FAILED and self.group is not None:
                raise SandboxError("the run could not join its cgroup")
            raise SandboxError(f"the sandbox failed to start (exit {code})")

    @property
    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def kill(self) -> None:
        """The host's stop: the whole tree of the session, whatever it does."""
        self.dead = True
        kill_tree(self.proc)
        if self.group is not None:
            self.group.kill_all()

    def close(self) -> SandboxResult:
        """End the session (kill what is left) and return what the host observed."""
        if self._closed is not None:
            return self._closed
        if not self.dead:  # idle: end the feed, so the supervisor reports (CPU time) and exits
            with contextlib.suppress(OSError):
                os.close(self._feed)
            self._feed = -1
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.kill()
        for fd in (self._ctl, self._feed):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._ctl = self._feed = -1
        if self._oom is not None:
            self._oom.set()
        self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.proc.stdout.close()
        seen = self.group.outcome() if self.group is not None else None
        status = self._status
        lost = "exit_code" not in status and "signal" not in status
        result = SandboxResult(
            exit_code=status.get("exit_code") if not lost else self.proc.returncode,
            signal=status.get("signal"),
            timed_out=bool(status.get("timed_out")) or self._killed_for_time,
            elapsed=0.0,
            log="",
            events=[],
            outputs=[],
            rejected=[],
            cpu_seconds=float(status.get("cpu_seconds") or 0.0),
            max_rss_kb=int(status.get("max_rss_kb") or 0),
            supervisor_lost=lost and not self._killed_for_time,
            process_limit=bool(status.get("process_limit"))
            or bool(seen and seen.too_many_processes),
            stream_limit=self._overflowed,
            memory_exceeded=bool(seen and seen.memory_exceeded),
            mechanism=self.prepared.mechanism,
        )
        self.prepared.release()
        shutil.rmtree(self.folder, ignore_errors=True)
        self._closed = result
        return result

    # --- validation and runs ------------------------------------------------------------
    def validate(self, dummy_hw: tuple[int, int], channels: int, *, deadline: float) -> Part:
        """The session's first request: load the model and run it on a dummy cube (events
        "loaded", then "validated" or "fatal"); the session stays warm for the runs."""
        part = Part()
        log = self._new_log()
        self._send(self._feed, {"validate": list(dummy_hw), "channels": channels})
        done = False
        while not done and not self.dead:
            now = time.monotonic()
            if now >= deadline:
                self._killed_for_time = True
                self.kill()
                break
            try:
                event = self._events.get(timeout=min(0.5, deadline - now))
            except queue.Empty:
                if self.proc.poll() is not None:
                    self.dead = True
                continue
            if event is None:
                self.dead = True
                break
            kind = event.get("event")
            if kind == "loaded":
                self.loaded = True
            if kind != "case" and len(part.events) < MAX_KEPT_EVENTS:
                part.events.append(event)
            done = kind in ("validated", "fatal")
        validated = any(e.get("event") == "validated" for e in part.events)
        if not validated and not self.dead:
            with contextlib.suppress(subprocess.TimeoutExpired):  # let it report its exit
                self.proc.wait(timeout=max(0.0, min(10.0, deadline - time.monotonic())))
            self.dead = True
        part.log = log.text()
        if self.dead:
            self._end_part(part)
        self.last_used = time.monotonic()
        return part

    def _new_log(self) -> CappedLog:
        log = CappedLog(self.limits.max_log_kb * 1024, hard_cap=self.limits.max_stream_mb * 1024**2)
        log.on_overflow = self._on_overflow
        with self._log_lock:
            self._log = log
        return log

    def _end_part(self, part: Part) -> None:
        death = self.close()
        death.events = part.events
        death.log = part.log
        part.death = death

    def run(
        self,
        case_ids: Sequence[str],
        cubes_dir: Path,
        staging: Path,
        *,
        accept: Callable[[str], bool] | None,
        on_event: Callable[[dict], None] | None,
        case_seconds: float,
        deadline: float,
    ) -> Part:
        """Serve `case_ids` in order; returns when all are closed or the session stopped."""
        self.runs += 1
        part = Part()
        log = self._new_log()
        pending = deque(case_ids)
        open_: deque[str] = deque()
        head_since: float | None = None
        try:
            while pending or open_:
                while pending and len(open_) < self.window and not self.dead:
                    case_id = pending.popleft()
                    open_.append(case_id)
                    self._reveal(cubes_dir, case_id)
                    self._send(self._feed, {"case_id": case_id})
                if self.dead:
                    break
                now = time.monotonic()
                if head_since is None and self.loaded:
                    head_since = now
                limit = deadline if head_since is None else min(deadline, head_since + case_seconds)
                if now >= limit:
                    self._killed_for_time = True
                    self.kill()
                    break
                try:
                    event = self._events.get(timeout=min(0.5, limit - now))
                except queue.Empty:
                    if self.proc.poll() is not None:
                        self.dead = True
                    continue
                if event is None:  # the event channel closed: every writer is gone
                    self.dead = True
                    break
                kind = event.get("event")
                if kind == "loaded":
                    self.loaded = True
                if kind != "case":
                    if len(part.events) < MAX_KEPT_EVENTS:
                        part.events.append(event)
                    continue
                if not open_ or event.get("case_id") != open_[0]:
                    continue  # only the case being served can be closed
                case_id = open_.popleft()
                self.loaded = True
                self._collect(case_id, staging, accept, part)
                self._hide(case_id)
                if self.dead:
                    open_.appendleft(case_id)  # its output never came back
                    break
                part.events.append(event)
                self.served += 1
                head_since = time.monotonic()
                if on_event is not None:
                    with contextlib.suppress(Exception):
                        on_event(event)
        except BaseException:  # e.g. the task's soft time limit: cases left half-fed
            self.kill()
            raise
        finally:
            for case_id in open_:
                self._hide(case_id)
            self.last_used = time.monotonic()
        part.log = log.text()
        if self.dead:
            part.head = open_[0] if open_ else None
            part.rest = [*list(open_)[1:], *pending]
            self._end_part(part)
        return part

    def _on_overflow(self) -> None:
        self._overflowed = True
        self.kill()

    def _reveal(self, cubes_dir: Path, case_id: str) -> None:
        src = (cubes_dir / f"{case_id}.npy").resolve()
        self._link(src, self.input_dir / f"{case_id}.npy")

    def _hide(self, case_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.input_dir / f"{case_id}.npy")

    def _send(self, fd: int, message: dict) -> None:
        try:
            os.write(fd, (json.dumps(message) + "\n").encode())
        except OSError:  # closed, or a model that stopped reading: the session is over
            self.kill()

    def _collect(self, case_id: str, staging: Path, accept, part: Part) -> None:
        """The case's output file, from the supervisor's framed tar, validated on copy-out."""
        name = f"{case_id}.npy"
        self._send(self._ctl, {"op": "collect", "names": [name]})
        if self.dead:
            return
        try:
            frame = self._frames.get(timeout=COLLECT_SECONDS)
        except queue.Empty:
            frame = None
        if frame is None:  # the supervisor is gone or stuck: stopped from inside
            self.kill()
            return
        header, data = frame
        for skipped in header.get("skipped") or []:
            if isinstance(skipped, list) and len(skipped) == 2:
                part.rejected.append((str(skipped[0]), str(skipped[1])))
        extract_outputs(
            io.BytesIO(data),
            staging,
            max_file_bytes=self.limits.max_output_mb * 1024**2,
            max_total_bytes=self.request.total_output_bytes(),
            accept=lambda n: n == name and (accept is None or accept(n)),
            outputs=part.outputs,
            rejected=part.rejected,
        )

    # --- pumps --------------------------------------------------------------------------
    def _pump_log(self, stream) -> None:
        while chunk := stream.read(65536):
            with self._log_lock:
                log = self._log
            log.feed(chunk)

    def _pump_events(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as fh:
            while True:
                line = fh.readline(MAX_EVENT_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_EVENT_LINE or self._events.qsize() >= MAX_QUEUED_EVENTS:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self._events.put(event)
        self._events.put(None)

    def _pump_status(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as fh:
            while line := fh.readline(1024 * 1024):
                with contextlib.suppress(ValueError):
                    value = json.loads(line)
                    if isinstance(value, dict):
                        self._status.update(value)
                        if value.get("started"):
                            self._started.set()
        self._started.set()

    def _pump_frames(self, fd: int) -> None:
        limit = self.request.total_output_bytes() + 1024**2
        with os.fdopen(fd, "rb") as fh:
            while True:
                line = fh.readline(MAX_EVENT_LINE + 1)
                try:
                    header = json.loads(line)
                    size = int(header["size"])
                except (ValueError, KeyError, TypeError):
                    break
                if not 0 <= size <= limit:
                    break
                data = fh.read(size)
                if len(data) != size:
                    break
                self._frames.put((header, data))
        self._frames.put(None)


class WarmPool:
    """At most one warm session per worker process, reused while the key stays the same."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS, max_runs: int = SESSION_RUNS) -> None:
        self.idle_seconds = idle_seconds
        self.max_runs = max_runs
        self.starts = 0  # sessions started by this pool (benchmarks and tests count them)
        self.cpu_seconds = 0.0  # CPU time of the sessions it ended (as their supervisors saw)
        self._key: object = None
        self._session: WarmSession | None = None
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None

    def session(
        self, key: object, start: Callable[[], WarmSession], *, fresh: bool = False
    ) -> tuple[WarmSession, bool]:
        """The warm session for `key` (and whether it was started now); `fresh`: a new one
        in any case (validation opens a session)."""
        with self._lock:
            self._cancel_timer()
            current = self._session
            if (
                not fresh
                and current is not None
                and self._key == key
                and current.alive
                and current.runs < self.max_runs
            ):
                current.busy = True
                return current, False
            self.close()
            self._session = start()
            self._session.busy = True
            self._key = key
            self.starts += 1
            return self._session, True

    def release(self, session: WarmSession) -> None:
        """A run is over: close the session after `idle_seconds` without a new run."""
        with self._lock:
            session.busy = False
            if session is not self._session:
                return
            if not session.alive:
                self.close()
                return
            self._cancel_timer()
            self._timer = threading.Timer(self.idle_seconds, self._idle, args=(session,))
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        with self._lock:
            self._cancel_timer()
            session, self._session, self._key = self._session, None, None
            if session is not None:
                self.cpu_seconds += session.close().cpu_seconds

    def _idle(self, session: WarmSession) -> None:
        with self._lock:
            if session is self._session and not session.busy:
                self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


POOL = WarmPool()
atexit.register(POOL.close)


def serve_run(
    pool: WarmPool,
    key: object,
    start: Callable[[], WarmSession],
    case_ids: Sequence[str],
    cubes_dir: Path,
    staging: Path,
    *,
    limits: Limits,
    accept: Callable[[str], bool] | None = None,
    on_event: Callable[[dict], None] | None = None,
    max_restarts: int = MAX_RESTARTS,
) -> SandboxResult:
    """One run through warm sessions, restarting after a stop while the policy allows (see
    the module docstring); returns one SandboxResult whose ``stopped`` says which cases a
    stop was charged to."""
    t0 = time.monotonic()
    deadline = t0 + limits.wall_seconds
    case_seconds = limits.case_seconds or limits.wall_seconds
    remaining = list(case_ids)
    total = SandboxResult(
        exit_code=0,
        signal=None,
        timed_out=False,
        elapsed=0.0,
        log="",
        events=[],
        outputs=[],
        rejected=[],
    )
    logs: list[str] = []
    restarts = 0
    while remaining:
        session, fresh = pool.session(key, start)
        total.starts += int(fresh)
        total.mechanism = session.prepared.mechanism
        try:
            part = session.run(
                remaining,
                cubes_dir,
                staging,
                accept=accept,
                on_event=on_event,
                case_seconds=case_seconds,
                deadline=deadline,
            )
        finally:
            pool.release(session)
        total.events += part.events
        total.outputs += part.outputs
        total.rejected += part.rejected
        if part.log:
            logs.append(part.log)
        death = part.death
        if death is None:
            break
        total.cpu_seconds += death.cpu_seconds
        total.max_rss_kb = max(total.max_rss_kb, death.max_rss_kb)
        if part.head is not None:
            total.stopped[part.head] = death
        remaining = part.rest
        out_of_time = time.monotonic() >= deadline
        if out_of_time or session.served == 0 or restarts >= max_restarts:
            for case_id in remaining:  # as a one-shot run: the rest shares the failure
                total.stopped[case_id] = death
            break
        restarts += 1
    total.log = "\n".join(logs)
    total.elapsed = time.monotonic() - t0
    return total


def serve_validation(
    pool: WarmPool,
    key: object,
    start: Callable[[], WarmSession],
    dummy_hw: tuple[int, int],
    channels: int,
    *,
    limits: Limits,
) -> SandboxResult:
    """Validate the model in a new warm session for `key`, which then serves the runs of the
    same key: one start per submission on this worker, the validation included."""
    t0 = time.monotonic()
    session, _ = pool.session(key, start, fresh=True)
    try:
        part = session.validate(dummy_hw, channels, deadline=t0 + limits.wall_seconds)
    except BaseException:
        session.kill()
        raise
    finally:
        pool.release(session)
    if part.death is not None:
        result = part.death
    else:
        result = SandboxResult(
            exit_code=0,
            signal=None,
            timed_out=False,
            elapsed=0.0,
            log=part.log,
            events=part.events,
            outputs=[],
            rejected=[],
            mechanism=session.prepared.mechanism,
        )
    result.starts = 1
    result.elapsed = time.monotonic() - t0
    return result


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (free), or a copy where the cube lives on another file system."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def new_session_dir() -> Path:
    """A session's folder, with its empty /input, readable by an unprivileged sandbox uid; in
    $XENOBENCH_WARM_DIR (default: the temporary folder), which should be on the cubes' file
    system so that revealing a case is a hard link, not a copy."""
    root = os.environ.get(WARM_DIR_ENV) or None
    if root:
        os.makedirs(root, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="xb-warm-", dir=root))
    (folder / "input").mkdir()
    for path in (folder, folder / "input"):
        os.chmod(path, 0o755)
    return folder


def session_limits(limits: Limits) -> Limits:
    """The supervisor's backstops over a whole session (the host enforces the per-run and
    per-case clocks): wall clock and the per-process CPU rlimit scaled by the runs a session
    may serve. Memory, processes and CPU bandwidth stay per session, enforced by the kernel."""
    return replace(
        limits,
        wall_seconds=limits.wall_seconds * SESSION_RUNS,
        cpu_seconds=limits.cpu_seconds * SESSION_RUNS,
    )


def _thread(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
