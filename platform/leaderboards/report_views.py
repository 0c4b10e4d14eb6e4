"""Report pages and their downloads: one self-contained HTML file, or a PDF printed from it.

The HTML file is rendered in the request (milliseconds). The PDF is printed by a worker
(leaderboards.report_pdf): the first request queues it and answers with a page that follows
its progress through a small JSON status endpoint; once printed for a ranking version, the
file is served directly.
"""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from challenges.permissions import can_view_leaderboard
from challenges.selectors import get_challenge_for, get_phase_for

from . import report_pdf
from .report_pdf import FAILED, READY, PdfJob
from .reports import challenge_report_context, phase_report_context
from .services import current_snapshot


def _html_download(ctx: dict, name: str) -> HttpResponse:
    resp = HttpResponse(report_pdf.standalone_html(ctx), content_type="text/html; charset=utf-8")
    resp["Content-Disposition"] = f'attachment; filename="{name}.html"'
    return resp


def _pdf_download(request, job: PdfJob, page: dict, report_url: str) -> HttpResponse:
    """The PDF file when it is printed; otherwise queue it and show its progress (202), or
    why it failed (503) with a way to try again."""
    st = report_pdf.request_pdf(job, retry=request.GET.get("retry") == "1")
    if st.state == READY:
        return FileResponse(
            report_pdf.open_pdf(job),
            as_attachment=True,
            filename=f"{job.name}.pdf",
            content_type="application/pdf",
        )
    ctx = {**page, "pdf": st, "report_url": report_url, "status_url": report_url + "pdf.json"}
    return render(
        request, "leaderboards/report_pdf.html", ctx, status=503 if st.state == FAILED else 202
    )


def _pdf_status(job: PdfJob, report_url: str) -> JsonResponse:
    st = report_pdf.state(job)
    return JsonResponse(
        {**st.as_dict(), "download_url": report_url + "?download=pdf"},
        headers={"Cache-Control": "no-store"},
    )


def _visible_phase(request, slug, task, phase):
    p = get_phase_for(request.user, slug, task, phase)
    if not can_view_leaderboard(request.user, p):
        raise Http404("No report")
    return p


def phase_report(request, slug, task, phase):
    p = _visible_phase(request, slug, task, phase)
    snap = current_snapshot(p)
    job = report_pdf.phase_job(p, snap)
    download = request.GET.get("download")
    if download == "pdf":
        page = {"phase": p, "task": p.task, "challenge": p.challenge, "kind": "phase"}
        return _pdf_download(request, job, page, request.path)
    ctx = {**phase_report_context(p, snap), "kind": "phase"}
    if download == "html":
        return _html_download(ctx, job.name)
    return render(request, "leaderboards/report.html", ctx)


def phase_report_pdf(request, slug, task, phase):
    """JSON: whether the phase report's PDF is ready, rendering, failed or not queued."""
    p = _visible_phase(request, slug, task, phase)
    url = reverse("phase-report", args=[slug, task, phase])
    return _pdf_status(report_pdf.phase_job(p, current_snapshot(p)), url)


def challenge_report(request, slug):
    challenge = get_challenge_for(request.user, slug)
    download = request.GET.get("download")
    if download == "pdf":
        job = report_pdf.challenge_job(challenge, request.user)
        page = {"challenge": challenge, "kind": "challenge"}
        return _pdf_download(request, job, page, request.path)
    ctx = {**challenge_report_context(challenge, request.user), "kind": "challenge"}
    if download == "html":
        return _html_download(ctx, f"{challenge.slug}-report")
    return render(request, "leaderboards/challenge_report.html", ctx)


def challenge_report_pdf(request, slug):
    """JSON: whether the challenge report's PDF is ready, rendering, failed or not queued."""
    challenge = get_challenge_for(request.user, slug)
    url = reverse("challenge-report", args=[slug])
    return _pdf_status(report_pdf.challenge_job(challenge, request.user), url)
