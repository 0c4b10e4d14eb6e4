"""The worker's report of what bounds sandboxed runs, and its refusal to start without a
whole-tree bound where that is required (production)."""

from __future__ import annotations

import pytest

from ops import signals
from ops.health import check_workers
from ops.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


class Exited(Exception):
    pass


@pytest.fixture
def no_exit(monkeypatch):
    def fake_exit(code):
        raise Exited(code)

    monkeypatch.setattr(signals.os, "_exit", fake_exit)


def test_evaluation_worker_reports_its_mechanism(settings, no_exit):
    from django.utils import timezone

    settings.SANDBOX_BACKEND = "bwrap"
    settings.SANDBOX_REQUIRE_BOUNDED = False
    found = signals.report_sandbox("w1@host", "default,evaluation")
    assert found["limits"] in ("cgroup-v1", "cgroup-v2", "rlimits")
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        hostname="w1@host", pid=1, queues="evaluation", started_at=now, last_seen=now
    )
    (worker,) = check_workers()["workers"]
    assert worker["sandbox"] == found
    assert signals.report_sandbox("s1@host", "statistics") is None  # runs no sandbox


def test_unbounded_sandbox_refused_where_required(settings, monkeypatch, no_exit):
    settings.SANDBOX_REQUIRE_BOUNDED = True
    settings.SANDBOX_BACKEND = "none"
    with pytest.raises(Exited) as exited:
        signals.report_sandbox("w2@host", "evaluation")
    assert exited.value.args == (signals.REFUSED_EXIT,)
    settings.SANDBOX_BACKEND = "bwrap"
    monkeypatch.setenv("XENOBENCH_CGROUP", "off")  # no cgroup: rlimits only
    with pytest.raises(Exited):
        signals.report_sandbox("w2@host", "evaluation")
