"""bubblewrap backend: namespaces, read-only runtime, size-capped tmpfs mounts, a per-run
cgroup over the whole process tree (or rlimits where none can be created), a seccomp filter."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from functools import cache

from . import cgroup, seccomp
from ._supervised import Prepared, child_env, run_supervised
from .base import Sandbox, SandboxError, SandboxRequest, SandboxResult
from .runtime import (
    SANDBOX_SITE,
    SANDBOX_SRC,
    SOURCE_PACKAGES,
    SUPERVISOR_REL,
    Runtime,
    host_runtime,
)

OUTPUT = "/output"
NOBODY = "65534"
# Fallback without a cgroup on a root worker: run bwrap itself as this host uid, so that the
# sandbox's processes belong to an unprivileged user and RLIMIT_NPROC binds. The runtime, the
# model files and the cubes must be readable by it. Unset: no drop (documented limitation).
SANDBOX_UID_ENV = "XENOBENCH_SANDBOX_UID"
log = logging.getLogger(__name__)


class BwrapSandbox(Sandbox):
    """Default Linux backend. Needs unprivileged user namespaces (or a setuid bwrap)."""

    name = "bwrap"

    def __init__(
        self,
        bwrap: str | None = None,
        runtime: Runtime | None = None,
        *,
        production: bool = False,
    ) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or "/usr/bin/bwrap"
        self.runtime = runtime or host_runtime()
        self.production = production

    def available(self) -> tuple[bool, str]:
        return _probe(self.bwrap)

    def python_argv(self, main: str) -> list[str]:
        site = SANDBOX_SITE if self.runtime.site_packages else ""
        return self.runtime.bootstrap(main, site=site, src=SANDBOX_SRC)

    def command(self, request: SandboxRequest, *, tmp_mb: int) -> list[str]:
        """The bwrap argv (without the supervisor); unit-tested for its confinement flags."""
        rt = self.runtime
        limits = request.limits
        argv = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--uid", NOBODY,
            "--gid", NOBODY,
            "--hostname", "sandbox",
            "--clearenv",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin",
            "--proc", "/proc",
            "--dev", "/dev",
            "--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu",
        ]  # fmt: skip
        if not str(rt.prefix).startswith("/usr/"):
            argv += ["--ro-bind", str(rt.prefix), str(rt.prefix)]
        if rt.site_packages:
            argv += ["--ro-bind", str(rt.site_packages), SANDBOX_SITE]
        for package in SOURCE_PACKAGES:
            argv += ["--ro-bind", str(rt.src_root / package), f"{SANDBOX_SRC}/{package}"]
        for mount in request.mounts:
            argv += ["--ro-bind", str(mount.host), mount.dest]
        argv += ["--size", str(tmp_mb * 1024**2), "--tmpfs", "/tmp"]
        argv += ["--size", str(tmp_mb * 1024**2), "--tmpfs", "/dev/shm"]
        argv += ["--size", str(request.total_output_bytes() + 1024**2), "--tmpfs", OUTPUT]
        # / and the /dev tmpfs read-only (device nodes stay usable): only the capped tmpfs
        # above take writes.
        argv += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", "/tmp"]
        if limits.gpu:
            argv += gpu_binds()
        return argv

    def prepare(self, request: SandboxRequest) -> Prepared:
        """The confinement of one sandboxed process (bwrap argv, cgroup, seccomp, rlimits,
        supervisor config), for a one-shot run or a warm session alike."""
        self._refuse_image(request)
        ok, why = self.available()
        if not ok:
            raise SandboxError(f"bubblewrap is not usable on this worker: {why}")
        outer = self.command(request, tmp_mb=request.limits.tmpfs_mb())
        group = None
        try:
            group = cgroup.RunGroup.create(request.limits)
        except OSError as exc:
            if self.production:
                raise SandboxError(f"no cgroup for the run in production: {exc}") from None
        extra_fds: list[int] = []
        try:
            extra_fds.append(seccomp.filter_fd())
            outer[1:1] = ["--seccomp", str(extra_fds[-1])]
        except seccomp.SeccompUnavailable as exc:
            if self.production:
                if group is not None:
                    group.destroy()
                raise SandboxError(f"no seccomp filter in production: {exc}") from None
            log.warning("running without a seccomp filter: %s", exc)
        if group is None:
            outer = unprivileged(outer)
        rlimits = request.limits.rlimits()
        if group is not None:
            # The cgroup bounds the resident memory of the whole tree; a per-process address
            # space cap on top would only refuse runtimes that reserve large virtual ranges.
            rlimits.pop("RLIMIT_AS")
        supervisor = [str(self.runtime.python), "-I", "-S", "-B", f"{SANDBOX_SRC}/{SUPERVISOR_REL}"]
        cfg = {
            "argv": self._argv(request),
            "env": child_env(request, 0),
            "rlimits": rlimits,
            "wall_seconds": request.limits.wall_seconds,
            "output_dir": OUTPUT,
            "max_total_output": request.total_output_bytes(),
            "isolated": True,
            "count_processes": group is None,  # the kernel's pids.max does it otherwise
            "cwd": "/tmp",
        }
        return Prepared(
            outer=outer,
            supervisor=supervisor,
            cfg=cfg,
            env={"PATH": "/usr/bin:/bin"},
            group=group,
            extra_fds=extra_fds,
            mechanism=f"cgroup-v{group.version}" if group else "rlimits",
        )

    def run(self, request: SandboxRequest) -> SandboxResult:
        prepared = self.prepare(request)
        group = prepared.group
        try:
            result = run_supervised(
                prepared.outer,
                prepared.supervisor,
                prepared.cfg,
                request,
                env=prepared.env,
                group=group,
                extra_fds=prepared.extra_fds,
            )
            if group is not None:
                seen = group.outcome()
                result.memory_exceeded = seen.memory_exceeded
                result.process_limit = result.process_limit or seen.too_many_processes
            result.mechanism = prepared.mechanism
            return result
        finally:
            prepared.release()

    def _argv(self, request: SandboxRequest) -> list[str]:
        prefix = self.python_argv(request.python_main) if request.python_main else []
        return [*prefix, *request.argv]


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` run as the host uid in $XENOBENCH_SANDBOX_UID (setpriv), when the worker is
    root and that variable is set; otherwise unchanged."""
    uid = os.environ.get(SANDBOX_UID_ENV, "").strip()
    if not uid or os.geteuid() != 0:
        return argv
    if not uid.isdigit() or int(uid) == 0:
        raise SandboxError(f"{SANDBOX_UID_ENV} must be a non-zero numeric uid")
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    drop = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
    return [*drop, "--", *argv]


def gpu_binds() -> list[str]:
    """NVIDIA device nodes and driver info, bound only when the task asks for a GPU."""
    argv: list[str] = []
    for dev in sorted(glob.glob("/dev/nvidia*")):
        argv += ["--dev-bind", dev, dev]
    argv += ["--ro-bind-try", "/sys", "/sys"]
    return argv


@cache
def _probe(bwrap: str) -> tuple[bool, str]:
    if not shutil.which(bwrap):
        return False, f"{bwrap} not found"
    try:
        proc = subprocess.run(
            [
                bwrap,
                "--unshare-all",
                "--unshare-user",
                "--die-with-parent",
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/bin",
                "/bin",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "/usr/bin/true",
            ],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    if proc.returncode != 0:
        return False, proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
    return True, ""
