"""Pluggable sandboxes for untrusted participant code.

Every backend is an ``Executor``: ``run(request: SandboxRequest) -> SandboxResult``, one
signature for all (a container image travels as ``request.image``).

- "bwrap" (default, Linux): BwrapSandbox
- "docker" / "podman": DockerSandbox, for container submissions
- "none": NoSandbox, organizer-trusted code in development only, refused in production

bwrap layout: /usr, the Python prefix and the venv's site-packages read-only, only the
evaluator/ and datasets/ source folders (at /opt/xenobench/src), the model file(s) at
/model, the cubes at /input, a job file at /job; / itself is remounted read-only; /tmp and
/output are size-capped tmpfs. A small supervisor (_supervisor.py) inside the sandbox applies the
rlimits, enforces the wall clock, kills every leftover process and streams /output back as a
tar that the trusted side unpacks with checks (regular files, safe names, sizes).

Known limits: RLIMIT_AS bounds each process, not their sum (no cgroup here); when the worker
runs as root the sandbox user maps to uid 0 outside, which the kernel exempts from
RLIMIT_NPROC, so the supervisor also counts processes (every 50 ms) and stops the run.
Run workers as a non-root user where possible. No seccomp filter yet.
"""

from __future__ import annotations

from .base import (
    Executor,
    ImageRef,
    Mount,
    ProductionRefused,
    Sandbox,
    SandboxError,
    SandboxRequest,
    SandboxResult,
)
from .bwrap import BwrapSandbox
from .docker import DockerSandbox, ImageRefused
from .limits import Limits
from .none import PRODUCTION_ENV, NoSandbox, production_switch_on

BACKENDS = ("bwrap", "docker", "podman", "none")

__all__ = [
    "BACKENDS",
    "PRODUCTION_ENV",
    "BwrapSandbox",
    "DockerSandbox",
    "Executor",
    "ImageRef",
    "ImageRefused",
    "Limits",
    "Mount",
    "NoSandbox",
    "ProductionRefused",
    "Sandbox",
    "SandboxError",
    "SandboxRequest",
    "SandboxResult",
    "get_sandbox",
    "production_switch_on",
]


def get_sandbox(name: str, *, production: bool = False) -> Executor:
    """Backend by name; "none" raises ProductionRefused when production is on."""
    if name == "bwrap":
        return BwrapSandbox()
    if name in ("docker", "podman"):
        return DockerSandbox(name)
    if name == "none":
        return NoSandbox(production=production)
    raise SandboxError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")
