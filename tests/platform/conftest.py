from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connection

from tests.integration.procs import platform_env, wait_until, worker

from .builders import simulate


@pytest.fixture(scope="session")
def human_test_root(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("sim") / "human-test")


@pytest.fixture
def live_worker(transactional_db):
    """A real Celery worker process on the test database and the embedded broker."""
    db_name = connection.settings_dict["NAME"]
    env = platform_env(
        settings.DATA_ROOT,
        DATABASE_URL=f"sqlite:///{db_name}",
        SANDBOX_BACKEND=settings.SANDBOX_BACKEND,
        RECONCILE_LOST_MESSAGE_SECONDS="5",
    )
    with worker(env, name=f"w{time.monotonic_ns()}") as proc:
        proc.env = env
        yield proc


def wait_for(pred, timeout: float = 180, interval: float = 0.5, what: str = "condition"):
    """wait_until with the longer defaults that a real evaluation needs."""
    return wait_until(pred, timeout=timeout, interval=interval, what=what)
