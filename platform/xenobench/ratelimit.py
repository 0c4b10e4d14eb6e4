"""A small fixed-window rate limiter on the shared cache (login and upload)."""

from __future__ import annotations

import functools
import time

from django.core.cache import cache
from django.http import HttpResponse


def client_key(request) -> str:
    if request.user.is_authenticated:
        return f"u{request.user.pk}"
    return "ip" + request.META.get("REMOTE_ADDR", "?")


def hit(scope: str, who: str, limit: int, per_seconds: int) -> bool:
    """Count one hit; False when over the limit."""
    window = int(time.time() // per_seconds)
    key = f"rl:{scope}:{who}:{window}"
    cache.add(key, 0, timeout=per_seconds + 5)
    try:
        n = cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=per_seconds + 5)
        n = 1
    return n <= limit


def ratelimit(scope: str, limit: int, per_seconds: int, methods=("POST",)):
    def deco(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method in methods and not hit(
                scope, client_key(request), limit, per_seconds
            ):
                return HttpResponse(
                    f"Too many {scope} attempts; try again in a few minutes.",
                    status=429,
                    content_type="text/plain",
                )
            return view(request, *args, **kwargs)

        return wrapped

    return deco
