"""Launch the in-sandbox supervisor and collect log, events, status and outputs.

Trust: the status pipe is held by the supervisor only (never inherited by the model), and
the supervisor writes a "started" line on it just before it starts the model. So the host
can tell a sandbox that failed to start (a platform problem) from one whose supervisor died
once the model ran (the model's doing: charged). Events come from the model's process and
are only ever progress hints."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .base import (
    CappedLog,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    extract_outputs,
    kill_tree,
    read_events,
    read_log,
    read_status,
)
from .cgroup import LAUNCH_FAILED, RunGroup

# Sandboxed processes started by this worker process (one-shot runs and warm sessions): what
# tests and benchmarks count to show that a warm sandbox starts once, not once per chunk.
STARTS = {"processes": 0}


@dataclass
class Prepared:
    """Everything a backend sets up for one sandboxed process, before it starts: shared by a
    one-shot run (run_supervised) and a warm session (warm.WarmSession), so both get the
    same confinement."""

    outer: list[str]  # the wrapper (bwrap argv), or nothing
    supervisor: list[str]  # interpreter + _supervisor.py
    cfg: dict  # the supervisor's configuration, completed with fds at launch
    env: dict[str, str] | None
    group: RunGroup | None = None
    extra_fds: list[int] = field(default_factory=list)
    mechanism: str = ""
    cleanup: Callable[[], None] | None = None  # called once the process has ended

    def release(self) -> None:
        if self.group is not None:
            self.group.destroy()
        if self.cleanup is not None:
            self.cleanup()


def child_env(request: SandboxRequest, event_fd: int) -> dict[str, str]:
    threads = str(request.limits.threads)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MALLOC_ARENA_MAX": "2",
        "PYTHONHASHSEED": "0",
        "XENOBENCH_EVENT_FD": str(event_fd),
    }
    env.update(request.env)
    return env


def run_supervised(
    outer: Sequence[str],
    supervisor: Sequence[str],
    cfg: dict,
    request: SandboxRequest,
    *,
    env: dict[str, str] | None,
    group: RunGroup | None = None,
    extra_fds: Sequence[int] = (),
) -> SandboxResult:
    """`outer` wraps the supervisor (bwrap argv, or nothing); cfg is completed with fds.
    With `group`, the whole tree is started inside that cgroup (see cgroup.LAUNCHER);
    `extra_fds` (the seccomp program) are passed to `outer` and closed here."""
    ev_r, ev_w = os.pipe()
    st_r, st_w = os.pipe()
    tar_r, tar_w = os.pipe()
    cfg = dict(cfg, status_fd=st_w, tar_fd=tar_w)
    cfg["env"]["XENOBENCH_EVENT_FD"] = str(ev_w)
    argv = [*outer, *supervisor, json.dumps(cfg)]
    if group is not None:
        argv = group.launcher(argv)
    limits = request.limits
    log = CappedLog(limits.max_log_kb * 1024, hard_cap=limits.max_stream_mb * 1024**2)
    events: list[dict] = []
    status: dict = {}
    outputs: list[str] = []
    rejected: list[tuple[str, str]] = []
    start = time.monotonic()
    STARTS["processes"] += 1
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(ev_w, st_w, tar_w, *extra_fds),
            start_new_session=True,
            env=env,
        )
    finally:
        for fd in (ev_w, st_w, tar_w, *extra_fds):
            os.close(fd)

    def stop() -> None:  # the host's own stop: kill the run's whole tree
        kill_tree(proc)
        if group is not None:
            group.kill_all()

    log.on_overflow = stop
    oom_watch = group.on_oom(stop) if group is not None else None
    tar_file = os.fdopen(tar_r, "rb")
    threads = [
        read_log(proc.stdout, log),
        read_events(ev_r, events, request.on_event),
        read_status(st_r, status),
    ]

    def copy_out() -> None:
        with tar_file:
            extract_outputs(
                tar_file,
                request.output_dir,
                max_file_bytes=limits.max_output_mb * 1024**2,
                max_total_bytes=cfg["max_total_output"],
                accept=request.output_names,
                outputs=outputs,
                rejected=rejected,
            )

    copier = threading.Thread(target=copy_out, daemon=True)
    copier.start()
    threads.append(copier)
    outer_deadline = limits.wall_seconds + request.startup_grace_seconds
    killed = False
    try:
        proc.wait(timeout=outer_deadline)
    except subprocess.TimeoutExpired:
        killed = True
    finally:
        if oom_watch is not None:
            oom_watch.set()
        stop()  # nothing may outlive the run, whatever happened
        proc.wait()
    for thread in threads:
        thread.join(timeout=30)
    proc.stdout.close()
    elapsed = time.monotonic() - start
    started = bool(status.get("started"))
    lost = "exit_code" not in status and "signal" not in status
    if not started and not log.overflowed and not killed:
        if proc.returncode == LAUNCH_FAILED and group is not None:
            raise SandboxError("the run could not join its cgroup")
        raise SandboxError(f"the sandbox failed to start (exit {proc.returncode})")
    if status.get("skipped"):
        rejected.extend((str(n), str(r)) for n, r in status["skipped"])
    return SandboxResult(
        exit_code=status.get("exit_code") if not lost else proc.returncode,
        signal=status.get("signal"),
        timed_out=bool(status.get("timed_out")) or killed,
        elapsed=elapsed,
        log=log.text(),
        events=events,
        outputs=outputs,
        rejected=rejected,
        cpu_seconds=float(status.get("cpu_seconds") or 0.0),
        max_rss_kb=int(status.get("max_rss_kb") or 0),
        supervisor_lost=lost,
        process_limit=bool(status.get("process_limit")),
        stream_limit=log.overflowed,
    )
