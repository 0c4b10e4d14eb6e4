"""Atomic, expiring counters shared by every web and worker process.

Rate limits count hits per window and the ranking debounce marks "a recomputation is
scheduled"; both need a read-modify-write that no other process can interleave. Django's file
cache does `add`/`incr` as separate read and write steps (two processes may both read 3 and
both write 4), so these counters live where the update is atomic:

- Redis (REDIS_URL set): INCR + EXPIRE in one Lua script, SET NX EX;
- otherwise the database (`ops.Counter`): one row per key, changed under a row lock inside a
  transaction (SQLite's IMMEDIATE transactions serialise writers anyway).
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from functools import lru_cache
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

MAX_KEY = 200


class Counters(Protocol):
    def incr(self, key: str, window_s: float) -> int: ...
    def add_once(self, key: str, ttl: float) -> bool: ...
    def get(self, key: str) -> int: ...
    def delete(self, key: str) -> None: ...


def _key(key: str) -> str:
    if len(key) <= MAX_KEY:
        return key
    return key[: MAX_KEY - 41] + ":" + hashlib.sha1(key.encode()).hexdigest()


class DatabaseCounters:
    """Counters in the `ops.Counter` table (the embedded default: no server needed)."""

    def _locked(self, key: str, ttl: float):
        """(row, created) with the row locked until the surrounding transaction ends; an
        expired row is reset as if it had just been created."""
        from ops.models import Counter

        now = timezone.now()
        expires = now + timedelta(seconds=ttl)
        row, created = Counter.objects.select_for_update().get_or_create(
            key=_key(key), defaults={"value": 0, "expires_at": expires}
        )
        if not created and row.expires_at <= now:
            row.value, row.expires_at = 0, expires
            created = True
        return row, created

    def _prune(self) -> None:
        """Fixed-window keys are never reused: drop expired rows as new ones appear (outside
        the locked transaction, so pruning never waits while holding a counter's lock)."""
        from ops.models import Counter

        Counter.objects.filter(expires_at__lt=timezone.now()).delete()

    def incr(self, key: str, window_s: float) -> int:
        with transaction.atomic():
            row, fresh = self._locked(key, window_s)
            row.value += 1
            row.save(update_fields=["value", "expires_at"])
        if fresh:
            self._prune()
        return row.value

    def add_once(self, key: str, ttl: float) -> bool:
        with transaction.atomic():
            row, fresh = self._locked(key, ttl)
            if fresh:
                row.value = 1
                row.save(update_fields=["value", "expires_at"])
        if fresh:
            self._prune()
        return fresh

    def get(self, key: str) -> int:
        from ops.models import Counter

        row = Counter.objects.filter(key=_key(key), expires_at__gt=timezone.now()).first()
        return row.value if row else 0

    def delete(self, key: str) -> None:
        from ops.models import Counter

        Counter.objects.filter(key=_key(key)).delete()


# INCR and EXPIRE in one script: a crash between the two cannot leave a key that never expires.
_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class RedisCounters:
    """Counters in Redis: every operation is a single atomic server-side command."""

    prefix = "xb:counter:"

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self._incr = self.client.register_script(_INCR)

    def incr(self, key: str, window_s: float) -> int:
        return int(self._incr(keys=[self.prefix + key], args=[_ms(window_s)]))

    def add_once(self, key: str, ttl: float) -> bool:
        return bool(self.client.set(self.prefix + key, 1, nx=True, px=_ms(ttl)))

    def get(self, key: str) -> int:
        return int(self.client.get(self.prefix + key) or 0)

    def delete(self, key: str) -> None:
        self.client.delete(self.prefix + key)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@lru_cache(maxsize=4)
def _redis(url: str) -> RedisCounters:
    return RedisCounters(url)


def backend() -> Counters:
    """Redis when REDIS_URL is configured, else the database."""
    url = getattr(settings, "REDIS_URL", "")
    return _redis(url) if url else DatabaseCounters()


def incr(key: str, window_s: float) -> int:
    """Add one to `key` and return the new value; the count starts again at 1 once `window_s`
    seconds have passed since the first increment."""
    return backend().incr(key, window_s)


def add_once(key: str, ttl: float) -> bool:
    """Set `key` for `ttl` seconds unless it is set: True for exactly one concurrent caller."""
    return backend().add_once(key, ttl)


def get(key: str) -> int:
    """The current value (0 when missing or expired)."""
    return backend().get(key)


def delete(key: str) -> None:
    backend().delete(key)
