"""Atomic counters: concurrent increments from separate connections are never lost, exactly
one concurrent add_once wins, and counts start again after their window. Both backends: the
database (SQLite test database, one connection per thread) and Redis (skipped if down)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from django.db import connection

from xenobench import counters

N_THREADS, PER_THREAD = 8, 5


def hammer(fn: Callable[[], object], n_threads: int = N_THREADS, per_thread: int = 1) -> list:
    """Run fn per_thread times in each of n_threads threads released at once."""
    start = threading.Barrier(n_threads)
    results: list = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work():
        try:
            start.wait()
            for _ in range(per_thread):
                value = fn()
                with lock:
                    results.append(value)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()  # each thread had its own database connection

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


@pytest.fixture
def redis_counters():
    # db 14: its own Redis test database (test_foundation_services flushes db 15), so the
    # two can run side by side on pytest-xdist workers.
    try:
        c = counters.RedisCounters("redis://127.0.0.1:6379/14")
        c.client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Redis at 127.0.0.1:6379: {exc}")
    yield c
    for key in c.client.scan_iter(c.prefix + "test-*"):
        c.client.delete(key)


@pytest.fixture(params=["database", "redis"])
def backend(request, transactional_db):
    if request.param == "database":
        return counters.DatabaseCounters()
    return request.getfixturevalue("redis_counters")


def test_concurrent_increments_are_all_counted(backend):
    key = f"test-incr-{uuid.uuid4().hex}"
    values = hammer(lambda: backend.incr(key, 60), per_thread=PER_THREAD)
    n = N_THREADS * PER_THREAD
    assert sorted(values) == list(range(1, n + 1))  # every caller saw a distinct count
    assert backend.get(key) == n


def test_exactly_one_concurrent_add_once_wins(backend):
    key = f"test-once-{uuid.uuid4().hex}"
    wins = hammer(lambda: backend.add_once(key, 60))
    assert wins.count(True) == 1 and len(wins) == N_THREADS
    assert backend.add_once(key, 60) is False
    backend.delete(key)
    assert backend.get(key) == 0 and backend.add_once(key, 60) is True


def test_counts_and_markers_expire(backend):
    key = f"test-expire-{uuid.uuid4().hex}"
    assert [backend.incr(key, 0.3) for _ in range(3)] == [1, 2, 3]
    assert backend.add_once(key + "-m", 0.3) is True
    time.sleep(0.5)
    assert backend.get(key) == 0
    assert backend.incr(key, 0.3) == 1  # a new window starts at one
    assert backend.add_once(key + "-m", 0.3) is True


def test_database_prunes_expired_rows(transactional_db):
    from ops.models import Counter

    db = counters.DatabaseCounters()
    db.incr("test-old", 0.1)
    time.sleep(0.2)
    db.incr("test-new", 60)
    assert list(Counter.objects.values_list("key", flat=True)) == ["test-new"]


def test_module_functions_use_redis_only_when_configured(settings, db):
    settings.REDIS_URL = ""
    assert isinstance(counters.backend(), counters.DatabaseCounters)
    settings.REDIS_URL = "redis://127.0.0.1:6379/14"
    assert isinstance(counters.backend(), counters.RedisCounters)


def test_rate_limit_counts_concurrent_hits_exactly(transactional_db):
    """The login limit lets exactly `limit` of many simultaneous attempts through."""
    from xenobench.ratelimit import hit

    who = f"test-{uuid.uuid4().hex}"
    allowed = hammer(lambda: hit("login", who, 10, 300), n_threads=8, per_thread=2)
    assert allowed.count(True) == 10 and allowed.count(False) == 6


def test_ranking_debounce_schedules_one_recomputation(transactional_db, monkeypatch):
    from leaderboards import tasks

    sent: list = []
    monkeypatch.setattr(tasks.recompute_ranking, "apply_async", lambda **kw: sent.append(kw))
    results = hammer(lambda: tasks.schedule_ranking(4242))
    assert results.count(True) == 1 and len(sent) == 1
    assert sent[0]["args"] == [4242] and sent[0]["queue"] == "statistics"
