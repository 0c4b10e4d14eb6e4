"""One definition of "alive" for workers and tasks, and one worker command line."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ops.health import check_workers
from ops.heartbeat import is_alive, live_workers, stale_before
from ops.models import WorkerHeartbeat
from xenobench.worker import worker_argv


def test_a_heartbeat_is_alive_until_it_is_stale_seconds_old(settings):
    settings.WORKER_STALE_SECONDS = 20
    now = timezone.now()
    assert stale_before(now) == now - timedelta(seconds=20)
    assert is_alive(now - timedelta(seconds=19), now)
    assert is_alive(now - timedelta(seconds=20), now)  # the boundary still counts
    assert not is_alive(now - timedelta(seconds=21), now)
    assert not is_alive(None, now)  # never seen


@pytest.mark.django_db
def test_health_reports_only_live_workers(settings):
    settings.WORKER_STALE_SECONDS = 20
    now = timezone.now()
    for name, age in (("fresh@h", 1), ("gone@h", 60)):
        WorkerHeartbeat.objects.create(
            hostname=name, pid=1, started_at=now, last_seen=now - timedelta(seconds=age)
        )
    assert [w.hostname for w in live_workers()] == ["fresh@h"]
    report = check_workers()
    assert report["ok"] and [w["hostname"] for w in report["workers"]] == ["fresh@h"]
    WorkerHeartbeat.objects.filter(hostname="fresh@h").delete()
    assert not check_workers()["ok"]


def test_worker_argv_is_the_one_worker_command_line():
    argv = worker_argv("evaluation,default", 2, "eval@%h", "WARNING", python="/py")
    assert argv[:6] == ["/py", "-m", "celery", "-A", "xenobench", "worker"]
    opts = dict(zip(argv[6::2], argv[7::2], strict=False))
    assert opts["-Q"] == "evaluation,default" and opts["-c"] == "2"
    assert opts["-n"] == "eval@%h" and opts["-l"] == "WARNING"
    # No broadcast channel on the filesystem broker: liveness comes from the heartbeat rows.
    assert "--without-gossip" in argv and "--without-mingle" in argv


def test_python_m_xenobench_worker_execs_the_same_command(monkeypatch):
    from xenobench import worker

    calls = []
    monkeypatch.setattr(worker.os, "execv", lambda path, argv: calls.append((path, argv)))
    worker.main(["--queues", "statistics,default", "--concurrency", "1", "--name", "stats"])
    expected = worker_argv("statistics,default", 1, "stats@%h", "INFO")
    assert calls == [(expected[0], expected)]
