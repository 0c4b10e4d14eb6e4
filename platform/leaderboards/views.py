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

from challenges.permissions import (
    can_view_leaderboard,
    is_organizer,
    owns,
)
from challenges.views import get_phase
from submissions.models import Submission

from .leaderboard import SORT_KEYS, render_fragment
from .method import method_page  # noqa: F401 - routed as lv.method_page
from .models import RankingSnapshot
from .report_views import challenge_report, phase_report  # noqa: F401 - routed from urls
from .services import LIGHT_FIELDS, current_snapshot


def visible_rows(request, phase, snap: RankingSnapshot | None) -> list[dict]:
    """All rows where results are public (or for organizers); a team's own rows on
    team-only phases; nothing on hidden phases before they are published."""
    if snap is None:
        return []
    if phase.results_public() or is_organizer(request.user, phase.challenge):
        return snap.rows
    mine = _own_ids(request.user, phase, snap)
    return [r for r in snap.rows if r["submission_id"] in mine]


def _own_ids(user, phase, snap: RankingSnapshot) -> set[int]:
    if phase.visibility != "team" or not user.is_authenticated:
        return set()
    subs = Submission.objects.filter(pk__in=snap.submission_ids).select_related("team")
    return {s.pk for s in subs if owns(user, s)}


def can_see_some_rows(user, phase) -> bool:
    return can_view_leaderboard(user, phase) or (
        phase.visibility == "team" and user.is_authenticated
    )


def leaderboard_context(request, phase, snap, *, permalink: bool = False) -> dict:
    """Context for the leaderboard section: the rendered (cached) fragment plus its inputs.

    The visibility class decides which cached fragment a viewer gets: everyone who may see
    all rows shares one; on team-only phases the class is the set of own submissions."""
    q = request.GET.get("q", "").strip().lower()[:100]
    sort = request.GET.get("sort", "rank")
    if sort.lstrip("-") not in SORT_KEYS:
        sort = "rank"
    full = phase.results_public() or is_organizer(request.user, phase.challenge)
    if full:
        vis, rows_for = "all", (lambda s: s.rows)
    else:
        mine = _own_ids(request.user, phase, snap) if snap is not None else set()
        vis = "team:" + ",".join(map(str, sorted(mine)))
        rows_for = lambda s: [r for r in s.rows if r["submission_id"] in mine]  # noqa: E731
    html = render_fragment(
        phase=phase, snap=snap, rows_for=rows_for, vis=vis, full=full, q=q, sort=sort,
        permalink=permalink,
    )  # fmt: skip
    return {"snapshot": snap, "q": q, "sort": sort, "leaderboard_html": html, "full": full}


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
    ctx.update(leaderboard_context(request, p, snap, permalink=True))
    return render(request, "challenges/phase_detail.html", ctx)


EXPORT_COLUMNS = ["rank", "tier", "team", "method", "dsc", "dsc_ci_low", "dsc_ci_high", "nsd", "nsd_ci_low", "nsd_ci_high",
                  "rank_interval_low", "rank_interval_high", "n_cases", "n_failed", "submitted", "submission_id"]  # fmt: skip


def _flat(r: dict) -> dict:
    return {
        **{k: r.get(k) for k in EXPORT_COLUMNS},
        "dsc_ci_low": r["dsc_ci"][0], "dsc_ci_high": r["dsc_ci"][1],
        "nsd_ci_low": r["nsd_ci"][0], "nsd_ci_high": r["nsd_ci"][1],
        "rank_interval_low": r["rank_interval"][0], "rank_interval_high": r["rank_interval"][1],
    }  # fmt: skip


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
    rows = visible_rows(request, p, snap)
    name = f"{p.challenge.slug}-{p.task.slug}-{p.slug}-v{snap.version if snap else 0}"
    if fmt == "json":
        payload = {"phase": str(p), "version": snap.version if snap else None,
                   "created_at": snap.created_at.isoformat() if snap else None, "rows": [_flat(r) for r in rows]}  # fmt: skip
        resp = JsonResponse(payload)
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(_flat(r))
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
            {"version": snap.version if snap else None, "result": snap.result if snap else {}}
        ),
        content_type="application/json",
    )
