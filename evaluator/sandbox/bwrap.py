"""bubblewrap backend: namespaces, read-only runtime, size-capped tmpfs output, rlimits."""

from __future__ import annotations

import glob
import shutil
import subprocess
from functools import cache

from ._supervised import child_env, run_supervised
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


class BwrapSandbox(Sandbox):
    """Default Linux backend. Needs unprivileged user namespaces (or a setuid bwrap)."""

    name = "bwrap"

    def __init__(self, bwrap: str | None = None, runtime: Runtime | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or "/usr/bin/bwrap"
        self.runtime = runtime or host_runtime()

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
        argv += ["--size", str(request.total_output_bytes() + 1024**2), "--tmpfs", OUTPUT]
        argv += ["--remount-ro", "/", "--chdir", "/tmp"]
        if limits.gpu:
            argv += gpu_binds()
        return argv

    def run(self, request: SandboxRequest) -> SandboxResult:
        self._refuse_image(request)
        ok, why = self.available()
        if not ok:
            raise SandboxError(f"bubblewrap is not usable on this worker: {why}")
        tmp_mb = max(64, min(1024, request.limits.memory_mb // 4))
        outer = self.command(request, tmp_mb=tmp_mb)
        supervisor = [str(self.runtime.python), "-I", "-S", "-B", f"{SANDBOX_SRC}/{SUPERVISOR_REL}"]
        cfg = {
            "argv": self._argv(request),
            "env": child_env(request, 0),
            "rlimits": request.limits.rlimits(),
            "wall_seconds": request.limits.wall_seconds,
            "output_dir": OUTPUT,
            "max_total_output": request.total_output_bytes(),
            "isolated": True,
            "cwd": "/tmp",
        }
        return run_supervised(outer, supervisor, cfg, request, env={"PATH": "/usr/bin:/bin"})

    def _argv(self, request: SandboxRequest) -> list[str]:
        prefix = self.python_argv(request.python_main) if request.python_main else []
        return [*prefix, *request.argv]


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
