"""Leaderboards, snapshots, exports, method pages and reports: all served from stored
snapshots, filtered by the same permission rules as everything else."""

from __future__ import annotations

import csv
import io
import json

from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control
from django.views.decorators.vary import vary_on_cookie

from challenges.permissions import can_view_leaderboard
from challenges.selectors import get_phase_for

from .method import method_page  # noqa: F401 - routed as lv.method_page
from .models import RankingSnapshot
from .report_views import challenge_report, phase_report  # noqa: F401 - routed from urls
from .rows import EXPORT_COLUMNS as EXPORT_COLUMNS
from .rows import columns_for, rows_from_snapshot
from .selectors import can_see_some_rows, leaderboard_context, visible_rows
from .services import LIGHT_FIELDS, current_snapshot, task_metric


def get_phase(request, slug, task, phase):
    """The phase named in the URL if the viewer may see its challenge (else 404)."""
    return get_phase_for(request.user, slug, task, phase)


def _snapshot_or_404(phase, version: int | None) -> RankingSnapshot | None:
    if version is None:
        return current_snapshot(phase)
    return get_object_or_404(
        RankingSnapshot.objects.only(*LIGHT_FIELDS), phase=phase, version=version
    )


def snapshot_page(request, slug, task, phase, version: int):
    p = get_phase(request, slug, task, phase)
    if not can_view_leaderboard(request.user, p):
        raise Http404("No leaderboard")
    snap = _snapshot_or_404(p, version)
    ctx = {
        "phase": p,
        "task": p.task,
        "challenge": p.challenge,
        "can_see_leaderboard": True,
        "permalink": True,
    }
    ctx.update(
        leaderboard_context(
            request.user,
            p,
            snap,
            q=request.GET.get("q", ""),
            sort=request.GET.get("sort", "rank"),
            permalink=True,
        )
    )
    return render(request, "challenges/phase_detail.html", ctx)


# Export columns and values: rows.LeaderboardRow (EXPORT_COLUMNS for a default task).

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula (team and method names are typed
    by participants) gets a leading single quote; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@cache_control(private=True, max_age=30)  # rows depend on the viewer: never a shared cache
@vary_on_cookie
def export(request, slug, task, phase, fmt: str):
    if fmt not in ("csv", "json"):
        raise Http404("Export formats: csv, json")
    p = get_phase(request, slug, task, phase)
    if not can_see_some_rows(request.user, p):
        raise Http404("No leaderboard")
    version = request.GET.get("version")
    snap = _snapshot_or_404(p, int(version) if version and version.isdigit() else None)
    primary = task_metric(p.task)[0]
    rows = rows_from_snapshot(visible_rows(request.user, p, snap), primary)
    name = f"{p.challenge.slug}-{p.task.slug}-{p.slug}-v{snap.version if snap else 0}"
    if fmt == "json":
        payload = {"phase": str(p), "version": snap.version if snap else None,
                   "created_at": snap.created_at.isoformat() if snap else None,
                   "primary_metric": primary, "scored_classes": p.task.scored_classes,
                   "rows": [r.to_export() for r in rows]}  # fmt: skip
        resp = JsonResponse(payload)
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns_for(rows, primary))
        w.writeheader()
        for r in rows:
            w.writerow({k: spreadsheet_safe(v) for k, v in r.to_export().items()})
        resp = HttpResponse(buf.getvalue(), content_type="text/csv")
    resp["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return resp


report = phase_report  # the phase report keeps its route name


def snapshot_json(request, slug, task, phase):
    p = get_phase(request, slug, task, phase)
    if not can_view_leaderboard(request.user, p):
        raise Http404("No leaderboard")
    snap = current_snapshot(p)
    return HttpResponse(
        json.dumps(
            {
                "version": snap.version if snap else None,
                "primary_metric": task_metric(p.task)[0],
                "result": snap.result if snap else {},
            }
        ),
        content_type="application/json",
    )
