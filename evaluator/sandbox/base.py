"""Backend-independent pieces: the Executor protocol every backend implements, the
request/result types and the trusted-side plumbing (capped log capture, the JSON-lines event
channel, safe copy-out of the output tar)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tarfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from .limits import Limits

SAFE_NAME = re.compile(r"^[A-Za-z0-9_#@+=,.-]{1,200}$")
MAX_EVENT_LINE = 64 * 1024
MAX_EVENTS = 200_000
MAX_EVENT_BYTES = 32 * 1024**2  # all events of one run together


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the participant's code): a platform error."""


class ProductionRefused(SandboxError):
    """An unsandboxed backend was requested while the production switch is on."""


@dataclass(frozen=True)
class Mount:
    """A host path made visible read-only inside the sandbox at `dest`."""

    host: Path
    dest: str


@dataclass(frozen=True)
class ImageRef:
    """A loaded container image: every run is pinned to its content digest."""

    image_id: str  # sha256:...
    user: str


@dataclass
class SandboxRequest:
    argv: Sequence[str]  # the command, with in-sandbox paths
    mounts: Sequence[Mount]
    output_dir: Path  # host directory that receives the validated copies of /output
    limits: Limits
    env: dict[str, str] = field(default_factory=dict)
    on_event: Callable[[dict], None] | None = None  # JSON lines written to $XENOBENCH_EVENT_FD
    output_names: Callable[[str], bool] | None = None  # which output file names to accept
    startup_grace_seconds: float = 60.0
    output_quota_bytes: int = 0  # total size of /output; 0: 4 x max_output_mb + 64 MiB
    python_main: str | None = None  # "module:function": argv is prefixed with the interpreter
    image: ImageRef | None = None  # container backends: the image to run argv in

    def total_output_bytes(self) -> int:
        if self.output_quota_bytes > 0:
            return self.output_quota_bytes
        return self.limits.max_output_mb * 1024**2 * 4 + 64 * 1024**2


@dataclass
class SandboxResult:
    exit_code: int | None
    signal: int | None
    timed_out: bool
    elapsed: float
    log: str
    events: list[dict]
    outputs: list[str]  # file names copied into output_dir
    rejected: list[tuple[str, str]]  # (file name, reason) refused on copy-out
    cpu_seconds: float = 0.0
    max_rss_kb: int = 0
    supervisor_lost: bool = False  # the supervisor died after the model started (charged)
    process_limit: bool = False  # stopped for running more processes than allowed
    stream_limit: bool = False  # stopped for writing more than max_stream_mb to stdout/stderr
    memory_exceeded: bool = False  # the run's cgroup saw an OOM kill (host-observed)
    mechanism: str = ""  # what bounded the run: "cgroup-v1", "cgroup-v2", "rlimits", ...
    # Warm sessions (warm.py): cases a sandboxed process was stopped on, or never reached
    # because it stopped, with what the host observed about that stop (charged per case).
    stopped: dict[str, SandboxResult] = field(default_factory=dict)
    starts: int = 0  # sandboxed processes started for this run (0: served by a warm one)

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == 0
            and not self.timed_out
            and not self.supervisor_lost
            and not self.process_limit
            and not self.stream_limit
            and not self.memory_exceeded
        )


@runtime_checkable
class Executor(Protocol):
    """What the trusted side needs from a backend (bwrap, docker/podman, none): run one
    request confined, with its limits, and copy /output back safely. Everything a run needs,
    the container image included, travels in the request, so callers never care which
    backend they hold."""

    name: str

    def available(self) -> tuple[bool, str]:
        """(usable on this worker, why not)."""
        ...

    def run(self, request: SandboxRequest) -> SandboxResult: ...


class Sandbox(ABC):
    """Base class of the built-in backends; each implements Executor."""

    name = "abstract"

    def available(self) -> tuple[bool, str]:
        return True, ""

    @abstractmethod
    def run(self, request: SandboxRequest) -> SandboxResult:
        """Run ``request`` confined and return what the host observed."""

    def _refuse_image(self, request: SandboxRequest) -> None:
        if request.image is not None:
            raise SandboxError(
                f"the {self.name} sandbox runs model files; container images need docker/podman"
            )


class CappedLog:
    """Keeps the head and the tail of a stream, so a chatty model cannot flood memory.

    Past `hard_cap` bytes in all, `on_overflow` is called once (the host stops the run) and
    the rest is drained and dropped."""

    def __init__(self, cap_bytes: int, *, hard_cap: int = 0) -> None:
        self.cap = max(cap_bytes, 1024)
        self.hard_cap = hard_cap
        self.total = 0
        self.overflowed = False
        self.on_overflow: Callable[[], None] | None = None
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self.hard_cap and self.total > self.hard_cap:
            if not self.overflowed:
                self.overflowed = True
                if self.on_overflow is not None:
                    self.on_overflow()
            self.dropped += len(data)
            return
        room = self.cap // 2 - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            excess = len(self.tail) - self.cap // 2
            if excess > 0:
                self.dropped += excess
                del self.tail[:excess]

    def text(self) -> str:
        middle = f"\n[... {self.dropped} bytes of log omitted ...]\n" if self.dropped else ""
        return (bytes(self.head) + middle.encode() + bytes(self.tail)).decode("utf-8", "replace")


def read_log(stream, log: CappedLog) -> threading.Thread:
    def pump() -> None:
        while chunk := stream.read(65536):
            log.feed(chunk)

    return _start(pump)


def read_events(fd: int, sink: list[dict], on_event: Callable[[dict], None] | None):
    def pump() -> None:
        budget = MAX_EVENT_BYTES
        with os.fdopen(fd, "rb") as fh:
            while True:
                line = fh.readline(MAX_EVENT_LINE + 1)
                if not line:
                    return
                if len(line) > MAX_EVENT_LINE or len(sink) >= MAX_EVENTS or budget <= 0:
                    continue  # keep draining so the writer never blocks
                budget -= len(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                sink.append(event)
                if on_event is not None:
                    try:
                        on_event(event)
                    except Exception:  # noqa: BLE001 - a progress callback must not kill us
                        pass

    return _start(pump)


def read_status(fd: int, box: dict) -> threading.Thread:
    """JSON lines from the supervisor only: {"started": true}, then the final status."""

    def pump() -> None:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(1024 * 1024)
        for line in data.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                box.update(value)

    return _start(pump)


def extract_outputs(
    fileobj,
    output_dir: Path,
    *,
    max_file_bytes: int,
    max_total_bytes: int,
    accept: Callable[[str], bool] | None,
    outputs: list[str],
    rejected: list[tuple[str, str]],
) -> None:
    """Copy regular, flat, safely named, size-capped files from a tar stream into output_dir.

    The stream comes from inside the sandbox and is treated as hostile: no links, no paths,
    no special files, bounded sizes. Always drains the stream so the writer never blocks.
    """
    total = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for member in tar:
                name = member.name
                reason = None
                if not member.isfile():
                    reason = "not a regular file"
                elif not SAFE_NAME.match(name) or name.startswith("."):
                    reason = "unsafe file name"
                elif accept is not None and not accept(name):
                    reason = "unexpected output file"
                elif member.size > max_file_bytes:
                    reason = f"larger than the {max_file_bytes // 1024**2} MB output limit"
                elif total + member.size > max_total_bytes:
                    reason = "total output size limit reached"
                if reason:
                    rejected.append((name, reason))
                    continue
                src = tar.extractfile(member)
                target = output_dir / name
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as dst:
                    remaining = member.size
                    while remaining > 0:
                        chunk = src.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        dst.write(chunk)
                        remaining -= len(chunk)
                total += member.size
                outputs.append(name)
    except (tarfile.TarError, OSError) as exc:
        rejected.append(("*", f"output copy-out failed: {exc}"))
    finally:
        while fileobj.read(1 << 20):
            pass


def kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _start(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread
