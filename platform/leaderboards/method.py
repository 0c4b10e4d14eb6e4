"""The method page of one submission, each part only as far as visibility allows.

Levels (rules in challenges.permissions, unchanged here):
- can_view_scores: aggregates - rank row, per organ / tissue state / species, the unnamed
  distribution over subjects, the confusion matrix, the number of failed cases;
- can_view_case_results: per-case detail - the per-subject table (test subject ids) and the
  list of failed case ids with their errors.
Description, paper link, model format and digest are shown to everyone who may see the page.
"""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from challenges.permissions import can_view_case_results, can_view_scores
from challenges.selectors import get_challenge_for
from evaluator import aggregation as agg
from submissions.models import Submission

from .plots import bar_chart, strip_plot
from .rows import LeaderboardRow, ranked_metrics
from .services import breakdowns, current_snapshot, label_table, task_metric


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


def _by(values: dict[str, dict], names: list[str], metrics: tuple[str, ...]) -> list[dict]:
    """Rows {name, values: [metric values in ``metrics`` order], <metric>: value}."""
    out = []
    for n in names:
        vals = {m: values.get(m, {}).get(n) for m in metrics}
        out.append({"name": n, "values": [vals[m] for m in metrics], **vals})
    return out


def _per_subject(sub: Submission, metrics: tuple[str, ...]) -> list[dict]:
    """Per test subject: its submission score (evaluator.aggregation.by_subject) per metric,
    with the number of images and of failed images."""
    counts = {
        r["subject"]: r
        for r in sub.case_scores.values("subject").annotate(
            n=Count("id"), failed=Count("id", filter=Q(ok=False))
        )
    }
    df = label_table([sub], metrics)
    scores: dict[str, dict[str, float | None]] = {s: {} for s in counts}
    for m in metrics:
        if df.empty or df[m].isna().any():
            continue
        for _, r in agg.by_subject(df, m).iterrows():
            scores.setdefault(r["subject"], {})[m] = float(r[m])
    return [
        {
            "subject": s,
            "values": [scores[s].get(m) for m in metrics],
            **{m: scores[s].get(m) for m in metrics},
            "n": counts.get(s, {}).get("n", 0),
            "failed": counts.get(s, {}).get("failed", 0),
        }
        for s in sorted(scores)
    ]


def method_context(request, sub: Submission) -> dict:
    phase = sub.phase
    labels = phase.task.label_names
    primary = task_metric(phase.task)[0]
    metrics = ranked_metrics(primary)
    snap = current_snapshot(phase)
    stored = next((r for r in (snap.rows if snap else []) if r["submission_id"] == sub.pk), None)
    row = LeaderboardRow.from_snapshot_dict(stored, primary_metric=primary) if stored else None
    # Straight from this submission's stored scores: also right for a team's other entries.
    bd = breakdowns([sub], metrics)
    sid = str(sub.pk)
    part = {k: {m: bd[k].get(m, {}).get(sid, {}) for m in metrics} for k in bd}
    found = {n for m in metrics for n in part["by_label"][m]}
    organ_names = [n for n in labels if n in found] + sorted(found - set(labels))
    state_names = sorted({n for m in metrics for n in part["by_state"][m]})
    species_names = sorted({n for m in metrics for n in part["by_species"][m]})
    organs = _by(part["by_label"], organ_names, metrics)
    per_subject = _per_subject(sub, metrics)
    case_detail = can_view_case_results(request.user, sub)
    bounded = primary in ("dsc", "iou", "nsd")
    return {
        "sub": sub,
        "phase": phase,
        "task": phase.task,
        "challenge": phase.challenge,
        "snapshot": snap,
        "row": row,
        "primary": primary,
        "metrics": [m.upper() for m in metrics],
        "organs": organs,
        "states": _by(part["by_state"], state_names, metrics),
        "species": _by(part["by_species"], species_names, metrics)
        if len(species_names) > 1
        else [],
        "organ_chart": bar_chart(organs, key=primary, label=f"{primary.upper()} per organ")
        if bounded
        else "",
        "subject_chart": strip_plot(
            [s[primary] for s in per_subject], label=f"{primary.upper()} per subject"
        )
        if bounded
        else "",
        "n_subjects": len(per_subject),
        "n_cases": sum(s["n"] for s in per_subject),
        "n_failed": sum(s["failed"] for s in per_subject),
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
    get_challenge_for(request.user, sub.phase.challenge.slug)
    if not can_view_scores(request.user, sub):
        raise Http404("No such method")
    return render(request, "leaderboards/method.html", method_context(request, sub))
