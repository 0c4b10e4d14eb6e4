"""Resource limits for one sandboxed run (shared by every backend)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-run limits. memory_mb caps the run's cgroup (the whole process tree, tmpfs and shm
    pages included) where one can be created, and each process's address space as well."""

    wall_seconds: float = 600.0
    cpu_seconds: int = 3600
    memory_mb: int = 8192
    max_processes: int = 64
    max_output_mb: int = 64  # per output file, and the size of the output tmpfs
    max_open_files: int = 256
    threads: int = 1
    gpu: bool = False
    max_log_kb: int = 64  # participant-visible log, head and tail kept
    max_stream_mb: int = 16  # stdout + stderr drained by the host; the run is killed past it
    # Warm sandboxes: time one case may take once it is served (0: wall_seconds). The load
    # of the model counts against the run's wall_seconds only.
    case_seconds: float = 0.0

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
            "max_stream_mb",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive")
        if self.case_seconds < 0:
            raise ValueError("Limits.case_seconds must not be negative")

    def tmpfs_mb(self) -> int:
        """Size of each scratch tmpfs (/tmp, /dev/shm): a quarter of the memory, 64..1024 MB."""
        return max(64, min(1024, self.memory_mb // 4))

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
