"""Per-run sandbox limits: the phase's (memory, time, threads) and the operator's
(settings.SANDBOX_LIMITS, from SANDBOX_MAX_* variables), as docs/security.md lists them."""

from __future__ import annotations

import dataclasses

from challenges.models import Phase
from evaluator.sandbox import Limits
from submissions.pipeline.run import limits_for


def test_operator_limits_reach_every_run(settings):
    settings.SANDBOX_LIMITS = {
        "max_processes": 12,
        "max_output_mb": 8,
        "max_stream_mb": 2,
        "max_log_kb": 16,
        "max_open_files": 99,
    }
    phase = Phase(wall_seconds=100, cpu_threads=2, memory_mb=1024, gpu=False)
    limits = limits_for(phase)
    assert (limits.max_processes, limits.max_output_mb, limits.max_stream_mb) == (12, 8, 2)
    assert (limits.max_log_kb, limits.max_open_files) == (16, 99)
    assert (limits.memory_mb, limits.threads, limits.wall_seconds) == (1024, 2, 100.0)
    assert limits.cpu_seconds == 100 * 2 + 60


def test_default_settings_are_the_sandbox_defaults():
    from xenobench import settings as defaults

    built = Limits(**defaults.SANDBOX_LIMITS)
    for name in defaults.SANDBOX_LIMITS:
        assert getattr(built, name) == next(
            f.default for f in dataclasses.fields(Limits) if f.name == name
        )
