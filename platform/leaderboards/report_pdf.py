"""Report PDFs, printed by a Celery worker and kept in the "reports" storage (xenobench/storage.py).

Why off the request path: Chromium needs seconds (up to two minutes on a loaded machine) per
report, which would hold a web worker for as long. The page asks for a PDF, a worker prints
it once per ranking version, and every later download is a plain file.

A job is identified by the snapshots a report shows: snapshots never change, so a file
named after them stays right forever, and a new ranking version gets a new file. The same
snapshots give the same report whoever asks (the challenge report differs between viewers
only by which phases' snapshots they may read), so viewers share files.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import BinaryIO

from django.conf import settings
from django.template.loader import render_to_string

from xenobench import counters, storage

from .pdf import PdfUnavailable, html_to_pdf
from .reports import challenge_report_context, inline_css, phase_report_context, primary_phase

log = logging.getLogger(__name__)

READY, RENDERING, FAILED, MISSING = "ready", "rendering", "failed", "missing"
CHANGED = (
    "The ranking changed while the PDF was being prepared. Reload the report page to print "
    "the new version."
)
NOT_QUEUED = "The PDF could not be queued (no task queue is reachable); try again shortly."
BROKEN = "PDF rendering failed on the server; download the HTML file instead and print it."


@dataclass(frozen=True)
class PdfJob:
    kind: str  # "phase" or "challenge"
    object_id: int  # the phase's or the challenge's id
    name: str  # download file name without ".pdf"
    shows: str  # the snapshots the report shows (ids and creation times)
    snapshot_id: int | None = None  # phase reports: the snapshot to print
    user_id: int | None = None  # challenge reports: whose visibility picked the snapshots

    @property
    def key(self) -> str:
        return f"{self.name}-{hashlib.sha1(self.shows.encode()).hexdigest()[:16]}"

    @property
    def marker(self) -> str:
        return f"report-pdf:{self.key}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PdfState:
    state: str  # READY, RENDERING, FAILED or MISSING
    detail: str = ""

    def as_dict(self) -> dict:
        return {"state": self.state, "detail": self.detail}


def _snap_id(snap) -> str:
    return f"{snap.pk}@{snap.created_at.isoformat()}"


def phase_job(phase, snap) -> PdfJob:
    name = f"{phase.challenge.slug}-{phase.task.slug}-{phase.slug}-report"
    if snap is None:
        return PdfJob("phase", phase.pk, name, f"phase{phase.pk}|none")
    return PdfJob(
        "phase", phase.pk, f"{name}-v{snap.version}", f"phase{phase.pk}|{_snap_id(snap)}", snap.pk
    )


def _challenge_shows(challenge, user) -> str:
    snaps = [primary_phase(task, user)[1] for task in challenge.tasks.prefetch_related("phases")]
    return f"challenge{challenge.pk}|" + "|".join(_snap_id(s) for s in snaps if s is not None)


def challenge_job(challenge, user) -> PdfJob:
    uid = user.pk if user.is_authenticated else None
    return PdfJob(
        "challenge",
        challenge.pk,
        f"{challenge.slug}-report",
        _challenge_shows(challenge, user),
        user_id=uid,
    )


def standalone_html(ctx: dict) -> str:
    """The report as one self-contained HTML file (inline CSS and SVG figures)."""
    return render_to_string(
        "leaderboards/report_standalone.html", {**ctx, "inline_css": inline_css()}
    )


# --- files ------------------------------------------------------------------------------------


REPORTS = "reports"  # the named storage (settings.STORAGES)


def pdf_name(job: PdfJob) -> str:
    return f"{job.key}.pdf"


def _error_name(job: PdfJob) -> str:
    return f"{job.key}.error"


def open_pdf(job: PdfJob) -> BinaryIO:
    """The printed PDF, opened for reading (the caller closes it)."""
    return storage.open_file(REPORTS, pdf_name(job))


def _record_error(job: PdfJob, text: str) -> None:
    storage.save_bytes(REPORTS, _error_name(job), text.encode())


def state(job: PdfJob) -> PdfState:
    if storage.exists(REPORTS, pdf_name(job)):
        return PdfState(READY)
    if storage.exists(REPORTS, _error_name(job)):
        text = storage.read_bytes(REPORTS, _error_name(job))
        return PdfState(FAILED, text.decode("utf-8", errors="replace"))
    if counters.get(job.marker):
        return PdfState(RENDERING)
    return PdfState(MISSING)


def request_pdf(job: PdfJob, *, retry: bool = False) -> PdfState:
    """Queue the job unless its file exists, it failed (retry=True clears that) or it is
    queued already; returns the state after that (READY at once with an eager queue)."""
    from .tasks import render_report_pdf

    current = state(job)
    if current.state == READY or (current.state == FAILED and not retry):
        return current
    storage.delete(REPORTS, _error_name(job))
    if counters.add_once(job.marker, settings.STATISTICS_TIME_LIMIT + 60):
        try:
            render_report_pdf.apply_async(args=[job.as_dict()], queue="statistics")
        except Exception:  # noqa: BLE001 - broker down: say so instead of spinning forever
            log.warning("could not queue the PDF of %s", job.key, exc_info=True)
            counters.delete(job.marker)
            return PdfState(FAILED, NOT_QUEUED)
    return state(job)


# --- the worker's side ------------------------------------------------------------------------


def _context(job: PdfJob) -> dict | None:
    """The report's context, or None when the ranking moved on since the job was queued."""
    from challenges.models import Challenge, Phase

    from .models import RankingSnapshot

    if job.kind == "phase":
        phase = Phase.objects.select_related("task__challenge").get(pk=job.object_id)
        snap = (
            RankingSnapshot.objects.filter(pk=job.snapshot_id).first() if job.snapshot_id else None
        )
        if job.snapshot_id and snap is None:
            return None
        ctx = phase_report_context(phase, snap)
    else:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import AnonymousUser

        challenge = Challenge.objects.get(pk=job.object_id)
        user = (
            get_user_model().objects.filter(pk=job.user_id).first() if job.user_id else None
        ) or AnonymousUser()
        if _challenge_shows(challenge, user) != job.shows:
            return None
        ctx = challenge_report_context(challenge, user)
    return {**ctx, "kind": job.kind}


def render(job: PdfJob) -> str:
    """Print the job's report to its file (or record why not); returns the final state."""
    try:
        if storage.exists(REPORTS, pdf_name(job)):
            return READY
        ctx = _context(job)
        if ctx is None:
            _record_error(job, CHANGED)
            return FAILED
        try:
            data = html_to_pdf(standalone_html(ctx))
        except PdfUnavailable as exc:
            _record_error(job, str(exc))
            return FAILED
        storage.save_bytes(REPORTS, pdf_name(job), data)
        return READY
    except Exception:
        _record_error(job, BROKEN)
        raise
    finally:
        counters.delete(job.marker)
