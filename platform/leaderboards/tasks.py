"""Ranking recomputation on the statistics queue, debounced: a burst of finished submissions
triggers one recomputation."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache

DEBOUNCE_SECONDS = 3


def _key(phase_id: int) -> str:
    return f"ranking-scheduled:{phase_id}"


def schedule_ranking(phase_id: int) -> bool:
    if not cache.add(_key(phase_id), 1, timeout=300):
        return False  # one is already scheduled and will see this result too
    recompute_ranking.apply_async(args=[phase_id], countdown=DEBOUNCE_SECONDS, queue="statistics")
    return True


@shared_task(name="leaderboards.tasks.recompute_ranking", acks_late=True)
def recompute_ranking(phase_id: int) -> int:
    from challenges.models import Phase

    from .services import build_snapshot

    cache.delete(_key(phase_id))  # results arriving from now on schedule a new run
    snap = build_snapshot(Phase.objects.get(pk=phase_id))
    return snap.version
