"""Migration 0004 renames the stored error kinds "timeout" and "memory" to the names the
harness now reports (evaluator.harness.errors), in both directions, on every stored kind field."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from evaluator.harness.errors import MEMORY, TIMEOUT
from submissions.models import CaseScore, Status, Submission

from .test_pipeline_units import make_sub, world  # noqa: F401 - fixtures

BEFORE = ("submissions", "0003_text_limits_http_urls")


def _migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def _leaf() -> list[tuple[str, str]]:
    graph = MigrationExecutor(connection).loader.graph
    return [node for node in graph.leaf_nodes() if node[0] == "submissions"]


def _kinds(sub: Submission) -> tuple[str, list[str]]:
    sub.refresh_from_db()
    rows = CaseScore.objects.filter(submission=sub).order_by("case_id")
    return sub.failure_kind, [c.error_kind for c in rows]


@pytest.mark.django_db(transaction=True)
def test_stored_kinds_are_renamed_both_ways(world):  # noqa: F811
    assert (TIMEOUT, MEMORY) == ("time_exceeded", "memory_exceeded")
    timed_out = make_sub(world, status=Status.TIMED_OUT, failure_kind=TIMEOUT)
    other = make_sub(world, status=Status.FAILED, failure_kind="invalid_output")
    for case, kind in (("a", TIMEOUT), ("b", MEMORY), ("c", "too_many_processes"), ("d", "")):
        CaseScore.objects.create(
            submission=timed_out, case_id=case, subject="s", ok=not kind, error_kind=kind,
            dsc=0.0, nsd=0.0,
        )  # fmt: skip
    try:
        _migrate([BEFORE])
        assert _kinds(timed_out) == ("timeout", ["timeout", "memory", "too_many_processes", ""])
        assert _kinds(other)[0] == "invalid_output"
    finally:
        _migrate(_leaf())
    assert _kinds(timed_out) == (TIMEOUT, [TIMEOUT, MEMORY, "too_many_processes", ""])
    assert _kinds(other)[0] == "invalid_output"
