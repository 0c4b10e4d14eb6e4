"""Pluggable sandboxes for untrusted participant code.

Every backend is an ``Executor``: ``run(request: SandboxRequest) -> SandboxResult``, one
signature for all (a container image travels as ``request.image``).

- "bwrap" (default, Linux): BwrapSandbox; container images under it: oci.OciSandbox (the
  image unpacked as a read-only root, no daemon)
- "docker" / "podman": DockerSandbox, for container submissions where an engine runs
- "none": NoSandbox, organizer-trusted code in development only, refused in production

bwrap layout: /usr, the Python prefix and the venv's site-packages read-only, only the
evaluator/ and datasets/ source folders (at /opt/xenobench/src), the model file(s) at
/model, the run's cubes only at /input, a job file at /job; / itself is remounted read-only;
/tmp, /dev/shm and /output are size-capped tmpfs. Each run gets its own cgroup (cgroup.py:
memory incl. tmpfs/shm pages, pids, CPU over the whole tree; rlimits where none can be
created) and a seccomp filter (seccomp.py). A small supervisor (_supervisor.py) inside the
sandbox applies the rlimits, enforces the wall clock, kills every leftover process and streams
/output back as a tar that the trusted side unpacks with checks (regular files, safe names,
sizes). Nothing reported from inside counts as a platform failure (see _supervised.py).
warm.py keeps one such sandbox running per submission on a worker (model loaded once, cases
fed one at a time, same confinement; backends that can: ``prepare(request)``).
docs/security.md lists every limit and what each backend guarantees.
"""

from __future__ import annotations

import os

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
    "mechanism",
    "production_switch_on",
    "require_bounded",
]


def mechanism(name: str) -> dict[str, object]:
    """What bounds a run under backend `name` on this worker (reported at worker start):
    ``limits`` is "cgroup-v2", "cgroup-v1" (whole process tree), "rlimits" (per process
    only), "container" or "none"; ``bounds_tree`` whether memory and processes are capped over
    the whole tree by the kernel; ``seccomp`` whether a system call filter applies."""
    from . import cgroup, seccomp

    if name == "bwrap":
        layout = cgroup.detect()
        limits = f"cgroup-v{layout[0]}" if layout else "rlimits"
        uid = os.environ.get("XENOBENCH_SANDBOX_UID", "").strip()
        return {
            "backend": name,
            "limits": limits,
            "bounds_tree": layout is not None,
            "seccomp": seccomp.available()[0],
            # fallback only: bwrap runs as this host uid, so RLIMIT_NPROC binds
            "unprivileged_uid": int(uid) if layout is None and uid.isdigit() else None,
        }
    if name in ("docker", "podman"):
        return {"backend": name, "limits": "container", "bounds_tree": True, "seccomp": True}
    return {"backend": name, "limits": "none", "bounds_tree": False, "seccomp": False}


def require_bounded(name: str) -> dict[str, object]:
    """The mechanism of `name`, or ProductionRefused where it does not bound the whole process
    tree with a seccomp filter (what production requires)."""
    found = mechanism(name)
    if not (found["bounds_tree"] and found["seccomp"]):
        raise ProductionRefused(
            f"the {name} sandbox on this worker is bounded by {found['limits']} "
            f"(seccomp: {'yes' if found['seccomp'] else 'no'}); production needs a per-run "
            "cgroup (v2 delegated, or v1 memory+pids) and libseccomp (pyseccomp)"
        )
    return found


def get_sandbox(name: str, *, production: bool = False) -> Executor:
    """Backend by name; "none" raises ProductionRefused when production is on."""
    if name == "bwrap":
        return BwrapSandbox(production=production or production_switch_on())
    if name in ("docker", "podman"):
        return DockerSandbox(name)
    if name == "none":
        return NoSandbox(production=production)
    raise SandboxError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")
