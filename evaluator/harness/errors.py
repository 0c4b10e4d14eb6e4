"""Error kinds shared by the harness and the trusted side."""

from __future__ import annotations

TIMEOUT = "timeout"
MEMORY = "memory"
INVALID_OUTPUT = "invalid_output"
MODEL_ERROR = "model_error"
SANDBOX_ERROR = "sandbox_error"
FORMAT_ERROR = "format_error"


class HarnessError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


_MEMORY_HINTS = (
    "can't allocate memory",
    "defaultcpuallocator",
    "bad_alloc",
    "failed to allocate",
    "out of memory",
    "cannot allocate memory",
    "memoryerror",
)


def classify(exc: BaseException) -> tuple[str, str]:
    """Map an exception raised while loading/running a model to (kind, participant message)."""
    if isinstance(exc, HarnessError):
        return exc.kind, exc.message
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or any(h in text.lower() for h in _MEMORY_HINTS):
        return MEMORY, "the model ran out of memory (memory limit reached): " + _short(text)
    return MODEL_ERROR, "the model raised an error: " + _short(text)


def _short(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"
