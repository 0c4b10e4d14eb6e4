"""Leaderboards, snapshots, exports, method pages and reports: all served from stored
snapshots, filtered by the same permission rules as everything else."""

from __future__ import annotations

import copy
import csv
import io
import json

from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control

from challenges.permissions import (
    can_view_case_results,
    can_view_leaderboard,
    can_view_scores,
    is_organizer,
    owns,
)
from challenges.views import get_challenge, get_phase
from submissions.models import Submission

from .models import RankingSnapshot
from .services import current_snapshot

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
    return get_object_or_404(RankingSnapshot, phase=phase, version=version)


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
    ctx.update(leaderboard_context(request, p, snap))
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


@cache_control(max_age=30)
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


def method_page(request, pk: int):
    sub = get_object_or_404(
        Submission.objects.select_related("phase__task__challenge", "team"), pk=pk
    )
    get_challenge(request, sub.phase.challenge.slug)
    if not can_view_scores(request.user, sub):
        raise Http404("No such method")
    snap = current_snapshot(sub.phase)
    row = next((r for r in (snap.rows if snap else []) if r["submission_id"] == sub.pk), None)
    by_label = {}
    by_state = {}
    if snap:
        for metric in ("dsc", "nsd"):
            by_label[metric] = (
                snap.breakdowns.get("by_label", {}).get(metric, {}).get(str(sub.pk), {})
            )
            by_state[metric] = (
                snap.breakdowns.get("by_state", {}).get(metric, {}).get(str(sub.pk), {})
            )
    labels = sub.phase.task.label_names
    organs = [
        {"name": n, "dsc": by_label.get("dsc", {}).get(n), "nsd": by_label.get("nsd", {}).get(n)}
        for n in labels
        if n in by_label.get("dsc", {})
    ]
    # Per-subject tables and failed case ids are per-case detail: only where the phase shows it.
    case_detail = can_view_case_results(request.user, sub)
    subjects = list(sub.case_scores.values("subject").order_by("subject").distinct())
    from django.db.models import Avg, Count, Q

    per_subject = (
        sub.case_scores.values("subject")
        .annotate(
            dsc=Avg("dsc"), nsd=Avg("nsd"), n=Count("id"), failed=Count("id", filter=Q(ok=False))
        )
        .order_by("subject")
        if case_detail
        else []
    )
    confusion = _sum_confusion(sub, len(labels))
    ctx = {"sub": sub, "phase": sub.phase, "row": row, "organs": organs, "by_state": by_state, "per_subject": per_subject,
           "n_subjects": len(subjects), "labels": labels, "confusion": confusion,
           "failed_cases": sub.case_scores.filter(ok=False)[:50] if case_detail else None}  # fmt: skip
    ctx["organ_chart"] = _bar_svg(organs)
    return render(request, "leaderboards/method.html", ctx)


def _sum_confusion(sub, k: int) -> list[list[float]] | None:
    import numpy as np

    total = np.zeros((k, k), dtype=np.int64)
    for conf in sub.case_scores.exclude(confusion=[]).values_list("confusion", flat=True):
        arr = np.asarray(conf, dtype=np.int64)
        if arr.shape == (k, k):
            total += arr
    if total.sum() == 0:
        return None
    rows = total.sum(axis=1, keepdims=True)
    norm = np.divide(total, np.maximum(rows, 1))
    return [[round(float(v), 3) for v in r] for r in norm]


def _bar_svg(organs: list[dict]) -> str:
    """A small inline bar chart (no JavaScript, no CDN) of DSC per organ."""
    if not organs:
        return ""
    h = 22 * len(organs) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 460 {h}" role="img" aria-label="DSC per organ">'
    ]
    for i, o in enumerate(organs):
        y = 10 + i * 22
        v = o["dsc"] or 0.0
        parts.append(
            f'<text x="110" y="{y + 14}" text-anchor="end" font-size="12">{o["name"]}</text>'
        )
        parts.append(
            f'<rect x="115" y="{y + 3}" width="{300 * v:.1f}" height="15" fill="#0072B2"><title>{o["name"]}: {v:.3f}</title></rect>'
        )
        parts.append(f'<text x="{120 + 300 * v:.1f}" y="{y + 14}" font-size="11">{v:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def report(request, slug, task, phase):
    p = get_phase(request, slug, task, phase)
    if not can_view_leaderboard(request.user, p):
        raise Http404("No report")
    snap = current_snapshot(p)
    ctx = {"phase": p, "task": p.task, "challenge": p.challenge, "snapshot": snap, "rows": snap.rows if snap else [],
           "dataset": _dataset_summary(p), "model": (snap.result.get("dsc") or {}).get("model") if snap else None}  # fmt: skip
    if request.GET.get("download") == "html":
        resp = render(request, "leaderboards/report_standalone.html", ctx)
        resp["Content-Disposition"] = (
            f'attachment; filename="{p.challenge.slug}-{p.task.slug}-{p.slug}-report.html"'
        )
        return resp
    return render(request, "leaderboards/report.html", ctx)


def _dataset_summary(phase) -> dict:
    ds = phase.test_dataset
    if not ds:
        return {}
    rows = [r for r in ds.manifest if r["image_name"] in set(phase.case_ids)]
    from collections import Counter

    return {
        "images": len(rows),
        "subjects": len({r["subject"] for r in rows}),
        "species": dict(Counter(r["species"] for r in rows)),
        "states": dict(Counter(r["tissue_state"] for r in rows)),
    }


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
