"""Statistics-queue work: ranking recomputation and report PDFs.

Rankings are debounced and rate-limited: a burst of finished submissions triggers one
recomputation, and a phase is re-ranked at most once per RANKING_MIN_INTERVAL_SECONDS (a full
ranking with 1000 bootstraps takes seconds). Report PDFs are printed here rather than in a web
request (leaderboards.report_pdf)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from xenobench import counters

log = logging.getLogger(__name__)
DEBOUNCE_SECONDS = 3


def _key(phase_id: int) -> str:
    return f"ranking-scheduled:{phase_id}"


def _countdown(phase_id: int) -> float:
    from .models import RankingSnapshot

    last = (
        RankingSnapshot.objects.filter(phase_id=phase_id)
        .order_by("-version")
        .values_list("created_at", flat=True)
        .first()
    )
    if last is None:
        return DEBOUNCE_SECONDS
    since = (timezone.now() - last).total_seconds()
    return max(DEBOUNCE_SECONDS, settings.RANKING_MIN_INTERVAL_SECONDS - since)


def schedule_ranking(phase_id: int) -> bool:
    if not counters.add_once(_key(phase_id), 600):
        return False  # one is already scheduled and will see this result too
    try:
        recompute_ranking.apply_async(
            args=[phase_id], countdown=_countdown(phase_id), queue="statistics"
        )
    except Exception:  # noqa: BLE001 - broker down: let the next result (or an organizer) retry
        counters.delete(_key(phase_id))
        log.warning("could not schedule the ranking of phase %s", phase_id)
        return False
    return True


@shared_task(name="leaderboards.tasks.recompute_ranking", acks_late=True)
def recompute_ranking(phase_id: int) -> int:
    from challenges.models import Phase

    from .services import build_snapshot

    counters.delete(_key(phase_id))  # results arriving from now on schedule a new run
    snap = build_snapshot(Phase.objects.get(pk=phase_id))
    return snap.version


@shared_task(name="leaderboards.tasks.render_report_pdf")
def render_report_pdf(job: dict) -> str:
    """Print one report to its PDF file (idempotent: an existing file is kept)."""
    from .report_pdf import PdfJob, render

    return render(PdfJob(**job))
