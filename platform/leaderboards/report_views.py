"""Report pages and their downloads: one self-contained HTML file, or a PDF printed from it.

The PDF is cached by the snapshot ids it shows (snapshots never change), so Chromium runs
once per ranking version, not once per download.
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from challenges.permissions import can_view_leaderboard
from challenges.views import get_challenge, get_phase

from .pdf import PdfUnavailable, html_to_pdf
from .reports import challenge_report_context, inline_css, phase_report_context
from .services import current_snapshot


def _download(request, ctx: dict, name: str, cache_id: str):
    """?download=html or ?download=pdf; None for the page itself."""
    kind = request.GET.get("download")
    if kind not in ("html", "pdf"):
        return None
    html = render_to_string(
        "leaderboards/report_standalone.html", {**ctx, "inline_css": inline_css()}, request
    )
    if kind == "html":
        resp = HttpResponse(html, content_type="text/html; charset=utf-8")
        resp["Content-Disposition"] = f'attachment; filename="{name}.html"'
        return resp
    key = "report-pdf:" + hashlib.sha1(cache_id.encode()).hexdigest()
    pdf = cache.get(key)
    if pdf is None:
        try:
            pdf = html_to_pdf(html)
        except PdfUnavailable as exc:
            return HttpResponse(str(exc), status=503, content_type="text/plain; charset=utf-8")
        cache.set(key, pdf, timeout=7 * 24 * 3600)
    resp = HttpResponse(pdf, content_type="application/pdf")
    resp["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
    return resp


def phase_report(request, slug, task, phase):
    p = get_phase(request, slug, task, phase)
    if not can_view_leaderboard(request.user, p):
        raise Http404("No report")
    snap = current_snapshot(p)
    ctx = phase_report_context(p, snap)
    ctx["kind"] = "phase"
    name = f"{p.challenge.slug}-{p.task.slug}-{p.slug}-report"
    if snap is not None:
        name += f"-v{snap.version}"
    cache_id = f"phase|{snap.pk}|{snap.created_at.isoformat()}" if snap else f"phase|{p.pk}|none"
    resp = _download(request, ctx, name, cache_id)
    return resp or render(request, "leaderboards/report.html", ctx)


def challenge_report(request, slug):
    challenge = get_challenge(request, slug)
    ctx = challenge_report_context(challenge, request.user)
    ctx["kind"] = "challenge"
    ids = "|".join(
        f"{t['snapshot'].pk}@{t['snapshot'].created_at.isoformat()}"
        for t in ctx["tasks"]
        if t["snapshot"] is not None
    )
    resp = _download(request, ctx, f"{challenge.slug}-report", f"challenge|{challenge.pk}|{ids}")
    return resp or render(request, "leaderboards/challenge_report.html", ctx)
