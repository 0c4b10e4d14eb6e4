"""Real PostgreSQL and Redis on this machine (.ci/run starts them when they are down)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_HOST = os.environ.get("XENOBENCH_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("XENOBENCH_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("XENOBENCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named database, dropped afterwards."""
    import psycopg

    name = f"xenobench_test_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://{PG_USER}@{PG_HOST}:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{PG_USER}@{PG_HOST}:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()
