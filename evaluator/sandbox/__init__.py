"""Pluggable sandboxes for untrusted participant code.

- "bwrap" (default, Linux): BwrapSandbox
- "docker" / "podman": DockerSandbox, for container submissions
- "none": NoSandbox, organizer-trusted code in development only, refused in production
"""

from __future__ import annotations

from .base import (
    Mount,
    ProductionRefused,
    Sandbox,
    SandboxError,
    SandboxRequest,
    SandboxResult,
)
from .bwrap import BwrapSandbox
from .docker import DockerSandbox, ImageRef, ImageRefused
from .limits import Limits
from .none import PRODUCTION_ENV, NoSandbox, production_switch_on

BACKENDS = ("bwrap", "docker", "podman", "none")

__all__ = [
    "BACKENDS",
    "PRODUCTION_ENV",
    "BwrapSandbox",
    "DockerSandbox",
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


def get_sandbox(name: str, *, production: bool = False) -> Sandbox:
    """Backend by name; "none" raises ProductionRefused when production is on."""
    if name == "bwrap":
        return BwrapSandbox()
    if name in ("docker", "podman"):
        return DockerSandbox(name)
    if name == "none":
        return NoSandbox(production=production)
    raise SandboxError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")
