"""Resource limits for one sandboxed run (shared by every backend)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-run limits. memory_mb caps the address space (bwrap) or the cgroup (containers)."""

    wall_seconds: float = 600.0
    cpu_seconds: int = 3600
    memory_mb: int = 8192
    max_processes: int = 64
    max_output_mb: int = 64  # per output file, and the size of the output tmpfs
    max_open_files: int = 256
    threads: int = 1
    gpu: bool = False
    max_log_kb: int = 64  # participant-visible log, head and tail kept

    def __post_init__(self) -> None:
        for name in (
            "wall_seconds",
            "cpu_seconds",
            "memory_mb",
            "max_processes",
            "max_output_mb",
            "max_open_files",
            "threads",
            "max_log_kb",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive")

    def rlimits(self) -> dict[str, int]:
        """Kernel rlimits applied to the untrusted process inside the sandbox."""
        return {
            "RLIMIT_AS": self.memory_mb * 1024 * 1024,
            "RLIMIT_CPU": int(self.cpu_seconds),
            "RLIMIT_NPROC": int(self.max_processes),
            "RLIMIT_FSIZE": self.max_output_mb * 1024 * 1024,
            "RLIMIT_NOFILE": int(self.max_open_files),
            "RLIMIT_CORE": 0,
        }
