"""Error kinds shared by the harness and the trusted side: the one home of their values (the
platform stores them in CaseScore.error_kind and Submission.failure_kind)."""

from __future__ import annotations

TIMEOUT = "time_exceeded"
MEMORY = "memory_exceeded"
INVALID_OUTPUT = "invalid_output"
MODEL_ERROR = "model_error"
SANDBOX_ERROR = "sandbox_error"
FORMAT_ERROR = "format_error"
TOO_MANY_PROCESSES = "too_many_processes"
OUTPUT_TOO_LARGE = "output_too_large"
# Kinds a report from inside the sandbox may claim; anything else (sandbox_error included)
# is read as model_error: the sandbox's inside is the participant's, never proof of our fault.
INSIDE_KINDS = frozenset(
    {
        TIMEOUT,
        MEMORY,
        INVALID_OUTPUT,
        MODEL_ERROR,
        FORMAT_ERROR,
        TOO_MANY_PROCESSES,
        OUTPUT_TOO_LARGE,
    }
)


# What a participant reads where the model's own text must not be shown (hidden phases: an
# exception message can carry statistics of the hidden cubes).
FIXED_MESSAGES = {
    TIMEOUT: "the run exceeded its time limit",
    MEMORY: "the run exceeded its memory limit",
    INVALID_OUTPUT: "the model's output was not a valid label map",
    MODEL_ERROR: "the model failed on this case",
    FORMAT_ERROR: "the model file could not be loaded",
    TOO_MANY_PROCESSES: "the model started more processes or threads than allowed",
    OUTPUT_TOO_LARGE: "the model wrote more output than allowed",
}


def fixed_message(kind: str | None) -> str:
    """The fixed participant message of an error kind (no model-provided text)."""
    return FIXED_MESSAGES.get(kind or "", FIXED_MESSAGES[MODEL_ERROR])


def inside_kind(kind: object) -> str:
    """The kind a report from inside the sandbox stands for (untrusted: never sandbox_error)."""
    return kind if isinstance(kind, str) and kind in INSIDE_KINDS else MODEL_ERROR


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


# A thread or process the kernel refused (RLIMIT_NPROC or pids.max: EAGAIN from clone).
_PROCESS_HINTS = (
    "can't start new thread",
    "pthread_create",
    "resource temporarily unavailable",
)


def classify(exc: BaseException) -> tuple[str, str]:
    """Map an exception raised while loading/running a model to (kind, participant message)."""
    if isinstance(exc, HarnessError):
        return exc.kind, exc.message
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or any(h in text.lower() for h in _MEMORY_HINTS):
        return MEMORY, "the model ran out of memory (memory limit reached): " + _short(text)
    if any(h in text.lower() for h in _PROCESS_HINTS):
        return TOO_MANY_PROCESSES, (
            "the model could not start another process or thread (process limit reached): "
            + _short(text)
        )
    return MODEL_ERROR, "the model raised an error: " + _short(text)


def _short(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"
