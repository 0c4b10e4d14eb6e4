"""Error kinds: the names the issue tracker and the platform use, how a model's exception
maps to one, and what a report from inside the sandbox may claim."""

from __future__ import annotations

import errno

import pytest

from evaluator.harness import errors


def test_limit_kinds_have_their_public_names():
    assert (errors.MEMORY, errors.TIMEOUT) == ("memory_exceeded", "time_exceeded")
    assert (errors.TOO_MANY_PROCESSES, errors.OUTPUT_TOO_LARGE) == (
        "too_many_processes",
        "output_too_large",
    )
    for kind in (errors.MEMORY, errors.TIMEOUT, errors.TOO_MANY_PROCESSES):
        assert errors.inside_kind(kind) == kind and errors.fixed_message(kind)
    # The old names are not kinds any more: a report claiming one is a model error.
    assert errors.inside_kind("memory") == errors.inside_kind("timeout") == errors.MODEL_ERROR
    assert errors.inside_kind(errors.SANDBOX_ERROR) == errors.MODEL_ERROR


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (MemoryError(), errors.MEMORY),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory"), errors.MEMORY),
        (RuntimeError("can't start new thread"), errors.TOO_MANY_PROCESSES),
        (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), errors.TOO_MANY_PROCESSES),
        (RuntimeError("pthread_create failed: Resource temporarily unavailable"), errors.TOO_MANY_PROCESSES),
        (ValueError("shapes do not match"), errors.MODEL_ERROR),
        (errors.HarnessError(errors.INVALID_OUTPUT, "bad"), errors.INVALID_OUTPUT),
    ],
)  # fmt: skip
def test_exceptions_map_to_kinds(exc, kind):
    got, message = errors.classify(exc)
    assert got == kind and message
