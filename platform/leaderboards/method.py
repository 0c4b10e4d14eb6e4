"""The method page of one submission, each part only as far as visibility allows.

Levels (rules in challenges.permissions, unchanged here):
- can_view_scores: aggregates - rank row, per organ / tissue state / species, the unnamed
  distribution over subjects, the confusion matrix, the number of failed cases;
- can_view_case_results: per-case detail - the per-subject table (test subject ids) and the
  list of failed case ids with their errors.
Description, paper link, model format and digest are shown to everyone who may see the page.
"""

from __future__ import annotations

from django.db.models import Avg, Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from challenges.permissions import can_view_case_results, can_view_scores
from challenges.views import get_challenge
from submissions.models import Submission

from .plots import bar_chart, strip_plot
from .services import current_snapshot, label_breakdown, species_breakdown


def _sum_confusion(sub: Submission, k: int) -> list[list[float]] | None:
    """Row-normalised confusion matrix summed over cases (rows: reference)."""
    import numpy as np

    total = np.zeros((k, k), dtype=np.int64)
    for conf in sub.case_scores.exclude(confusion=[]).values_list("confusion", flat=True):
        arr = np.asarray(conf, dtype=np.int64)
        if arr.shape == (k, k):
            total += arr
    if total.sum() == 0:
        return None
    norm = total / np.maximum(total.sum(axis=1, keepdims=True), 1)
    return [[round(float(v), 3) for v in r] for r in norm]


def method_context(request, sub: Submission) -> dict:
    phase = sub.phase
    labels = phase.task.label_names
    snap = current_snapshot(phase)
    row = next((r for r in (snap.rows if snap else []) if r["submission_id"] == sub.pk), None)
    # Straight from this submission's stored scores: also right for a team's other entries.
    lb = label_breakdown([sub])
    by_label = {m: lb.get("by_label", {}).get(m, {}).get(str(sub.pk), {}) for m in ("dsc", "nsd")}
    by_state = {m: lb.get("by_state", {}).get(m, {}).get(str(sub.pk), {}) for m in ("dsc", "nsd")}
    sp = species_breakdown([sub])
    by_species = {m: sp.get(m, {}).get(str(sub.pk), {}) for m in ("dsc", "nsd")}
    names = [n for n in labels if n in by_label["dsc"]] + sorted(set(by_label["dsc"]) - set(labels))
    organs = [
        {"name": n, "dsc": by_label["dsc"].get(n), "nsd": by_label["nsd"].get(n)} for n in names
    ]
    states = [
        {"name": s, "dsc": v, "nsd": by_state["nsd"].get(s)} for s, v in by_state["dsc"].items()
    ]
    species = [
        {"name": s, "dsc": v, "nsd": by_species["nsd"].get(s)} for s, v in by_species["dsc"].items()
    ]
    per_subject = list(
        sub.case_scores.values("subject")
        .annotate(
            dsc=Avg("dsc"), nsd=Avg("nsd"), n=Count("id"), failed=Count("id", filter=Q(ok=False))
        )
        .order_by("subject")
    )
    case_detail = can_view_case_results(request.user, sub)
    n_failed = sum(s["failed"] for s in per_subject)
    return {
        "sub": sub,
        "phase": phase,
        "task": phase.task,
        "challenge": phase.challenge,
        "snapshot": snap,
        "row": row,
        "organs": organs,
        "states": states,
        "species": species if len(species) > 1 else [],
        "organ_chart": bar_chart(organs),
        "subject_chart": strip_plot([s["dsc"] for s in per_subject]),
        "n_subjects": len(per_subject),
        "n_cases": sum(s["n"] for s in per_subject),
        "n_failed": n_failed,
        "case_detail": case_detail,
        "per_subject": per_subject if case_detail else [],
        "failed_cases": list(sub.case_scores.filter(ok=False)[:50]) if case_detail else [],
        "labels": labels,
        "confusion": _sum_confusion(sub, len(labels)),
    }


def method_page(request, pk: int):
    sub = get_object_or_404(
        Submission.objects.select_related("phase__task__challenge", "team", "user"), pk=pk
    )
    get_challenge(request, sub.phase.challenge.slug)
    if not can_view_scores(request.user, sub):
        raise Http404("No such method")
    return render(request, "leaderboards/method.html", method_context(request, sub))
