"""Per-run control groups: memory, process and CPU limits over a sandbox's whole process tree,
enforced by the kernel (no polling).

The trusted worker creates one group per run, writes its limits, and starts bwrap through a
tiny launcher (``/bin/sh``) that writes its own pid into the group's ``cgroup.procs`` and then
execs bwrap, so every process of the run is in the group before any model code starts. After
the run the host reads what the kernel observed (OOM kills, refused forks), kills whatever
is left in the group and removes it.

Two layouts are supported:
- cgroup v2, where a delegated cgroup2 subtree with the memory and pids controllers exists
  (``XENOBENCH_CGROUP_ROOT`` names it, a cgroup that holds no process itself, as cgroup v2's
  "no internal processes" rule requires; otherwise the mount point is tried);
- cgroup v1, with the memory and pids (and cpu, when present) hierarchies writable.

``memory`` counts anonymous memory and tmpfs/shm pages alike (both layouts charge shmem to
the group that wrote it); swap is disabled for the group (memory.swap.max = 0, or
memory.memsw.limit_in_bytes = the memory limit and swappiness 0 on v1).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .limits import Limits

log = logging.getLogger(__name__)

CGROUP_FS = Path("/sys/fs/cgroup")
ROOT_ENV = "XENOBENCH_CGROUP_ROOT"
DISABLE_ENV = "XENOBENCH_CGROUP"  # "off": never use cgroups (tests of the fallback)
GROUP_PREFIX = "xenobench"
CPU_PERIOD_US = 100_000
# The launcher: write our pid into each cgroup.procs given, then exec the command.
LAUNCHER = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; '
    'exec "$@"'
)
LAUNCH_FAILED = 125


@dataclass
class Outcome:
    """What the kernel observed for one run's group."""

    memory_exceeded: bool = False
    too_many_processes: bool = False
    peak_memory_bytes: int = 0


class RunGroup:
    """One run's cgroup (v1: one folder per controller; v2: one folder)."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs  # controller -> folder ("unified" for v2)
        self.oom_seen = False  # the kernel's OOM notification arrived (v1 watcher)

    # --- life cycle -------------------------------------------------------------------
    @classmethod
    def create(cls, limits: Limits, *, tag: str = "") -> RunGroup:
        """Create the group and write its limits; raises OSError where that fails."""
        layout = detect()
        if layout is None:
            raise OSError("no usable cgroup hierarchy")
        version, bases = layout
        name = f"run-{tag or ''}{uuid.uuid4().hex[:12]}"
        dirs: dict[str, Path] = {}
        group = cls(version, dirs)
        try:
            for controller, base in bases.items():
                path = base / name
                path.mkdir()
                dirs[controller] = path
            group._write_limits(limits)
        except OSError:
            group.destroy()
            raise
        return group

    def _write_limits(self, limits: Limits) -> None:
        memory = limits.memory_mb * 1024**2
        cpus = max(1, limits.threads) + 1  # the model's threads + the prefetch helper
        quota = cpus * CPU_PERIOD_US
        if self.version == 2:
            d = self.dirs["unified"]
            _write(d / "memory.max", memory)
            _write_optional(d / "memory.swap.max", 0)
            _write_optional(d / "memory.oom.group", 1)
            _write(d / "pids.max", limits.max_processes)
            _write_optional(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        mem = self.dirs["memory"]
        _write_optional(mem / "memory.swappiness", 0)
        _write(mem / "memory.limit_in_bytes", memory)
        _write_optional(mem / "memory.memsw.limit_in_bytes", memory)
        _write(self.dirs["pids"] / "pids.max", limits.max_processes)
        if "cpu" in self.dirs:
            _write_optional(self.dirs["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write_optional(self.dirs["cpu"] / "cpu.cfs_quota_us", quota)

    def launcher(self, argv: list[str]) -> list[str]:
        """argv that joins this group, then execs `argv` (exit 125 when joining fails)."""
        procs = [str(d / "cgroup.procs") for d in self.dirs.values()]
        return ["/bin/sh", "-c", LAUNCHER, "sh", str(len(procs)), *procs, *argv]

    def outcome(self) -> Outcome:
        if self.version == 2:
            d = self.dirs["unified"]
            mem = _keyed(d / "memory.events")
            pids = _keyed(d / "pids.events")
            return Outcome(
                memory_exceeded=mem.get("oom_kill", 0) > 0 or mem.get("oom_group_kill", 0) > 0,
                too_many_processes=pids.get("max", 0) > 0,
                peak_memory_bytes=_int(d / "memory.peak"),
            )
        mem_dir = self.dirs["memory"]
        oom = _keyed(mem_dir / "memory.oom_control")
        if "oom_kill" in oom:
            memory = oom["oom_kill"] > 0 or oom.get("under_oom", 0) > 0
        else:  # old kernels: the limit was hit and could not be reclaimed
            memory = _int(mem_dir / "memory.failcnt") > 0 and _int(
                mem_dir / "memory.max_usage_in_bytes"
            ) >= _int(mem_dir / "memory.limit_in_bytes")
        pids = _keyed(self.dirs["pids"] / "pids.events")
        return Outcome(
            memory_exceeded=memory or self.oom_seen,
            too_many_processes=pids.get("max", 0) > 0,
            peak_memory_bytes=_int(mem_dir / "memory.max_usage_in_bytes"),
        )

    def on_oom(self, callback: Callable[[], None]) -> threading.Event:
        """Call `callback` once when the kernel reports an OOM in the group (v1: an eventfd
        on memory.oom_control, woken by the kernel, so the run stops at its first OOM kill
        rather than continuing with the survivors; v2 has memory.oom.group for that).
        Set the returned event to stop watching."""
        done = threading.Event()
        if self.version != 1 or not hasattr(os, "eventfd"):
            return done
        mem = self.dirs["memory"]
        try:
            efd = os.eventfd(0, os.EFD_CLOEXEC)
            ofd = os.open(mem / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            _write(mem / "cgroup.event_control", f"{efd} {ofd}")
        except OSError:
            return done

        def watch() -> None:
            try:
                while not done.is_set():
                    ready, _, _ = select.select([efd], [], [], 0.5)
                    if ready:
                        os.eventfd_read(efd)
                        if not done.is_set():
                            self.oom_seen = True
                            callback()
                        return
            finally:
                os.close(efd)
                os.close(ofd)

        threading.Thread(target=watch, name="xenobench-oom", daemon=True).start()
        return done

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the group until it is empty."""
        if self.version == 2:
            kill = self.dirs["unified"] / "cgroup.kill"
            if kill.exists():
                _write_optional(kill, 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        log.warning("cgroup %s still holds processes after SIGKILL", self.dirs)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in list(self.dirs.values()):
            try:
                found.update(int(x) for x in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(found)

    def destroy(self) -> None:
        """Kill what is left and remove the group's folders."""
        if self.dirs:
            self.kill_all()
        for d in list(self.dirs.values()):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs.clear()


# --- detection --------------------------------------------------------------------------


def detect() -> tuple[int, dict[str, Path]] | None:
    """(version, controller -> base folder) of a hierarchy where run groups can be created."""
    if os.environ.get(DISABLE_ENV, "").strip().lower() in {"off", "0", "no", "false"}:
        return None
    return _detect(os.environ.get(ROOT_ENV, ""))


@cache
def _detect(configured: str) -> tuple[int, dict[str, Path]] | None:
    v2 = _v2_base(Path(configured)) if configured else _v2_base(CGROUP_FS)
    if v2 is None and not configured:
        v2 = _v2_base(CGROUP_FS / "unified")
    if v2 is not None:
        return 2, {"unified": v2}
    v1 = _v1_bases(Path(configured) if configured else CGROUP_FS)
    if v1 is not None:
        return 1, v1
    return None


def _v2_base(mount: Path) -> Path | None:
    controllers = mount / "cgroup.controllers"
    try:
        available = set(controllers.read_text().split())
    except OSError:
        return None
    if not {"memory", "pids"} <= available:
        return None
    base = mount / GROUP_PREFIX
    try:
        base.mkdir(exist_ok=True)
        enabled = set((mount / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= enabled:
            _write(mount / "cgroup.subtree_control", "+memory +pids")
        _write_optional(mount / "cgroup.subtree_control", "+cpu")
        # Each controller on its own: one unavailable controller fails the whole write.
        for controller in ("+memory", "+pids", "+cpu"):
            _write_optional(base / "cgroup.subtree_control", controller)
        if not {"memory", "pids"} <= set((base / "cgroup.subtree_control").read_text().split()):
            return None
        _probe(base, "memory.max")
    except OSError:
        return None
    return base


def _v1_bases(root: Path) -> dict[str, Path] | None:
    bases: dict[str, Path] = {}
    for controller, probe in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max")):
        mount = root / controller
        if not (mount / "cgroup.procs").exists():
            return None
        try:
            base = mount / GROUP_PREFIX
            base.mkdir(exist_ok=True)
            _probe(base, probe)
        except OSError:
            return None
        bases[controller] = base
    cpu = root / "cpu"
    if (cpu / "cpu.cfs_quota_us").exists():
        try:
            (cpu / GROUP_PREFIX).mkdir(exist_ok=True)
            bases["cpu"] = cpu / GROUP_PREFIX
        except OSError:
            pass
    return bases


def _probe(base: Path, limit_file: str) -> None:
    probe = base / f"probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    probe.mkdir()
    try:
        _write(probe / limit_file, 64 * 1024**2 if limit_file.startswith("memory") else 8)
    finally:
        probe.rmdir()


# --- small helpers ----------------------------------------------------------------------


def _write(path: Path, value) -> None:
    with open(path, "w") as fh:
        fh.write(str(value))


def _write_optional(path: Path, value) -> None:
    try:
        _write(path, value)
    except OSError:
        pass


def _int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
    except OSError:
        pass
    return out
