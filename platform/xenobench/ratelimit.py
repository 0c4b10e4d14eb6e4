"""A small fixed-window rate limiter (login and upload) on the atomic shared counters: N
concurrent hits count exactly N, whatever process serves them."""

from __future__ import annotations

import functools
import time

from django.http import HttpResponse

from . import counters


def client_key(request) -> str:
    if request.user.is_authenticated:
        return f"u{request.user.pk}"
    return "ip" + request.META.get("REMOTE_ADDR", "?")


def hit(scope: str, who: str, limit: int, per_seconds: int) -> bool:
    """Count one hit; False when over the limit."""
    window = int(time.time() // per_seconds)
    return counters.incr(f"rl:{scope}:{who}:{window}", per_seconds + 5) <= limit


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
