"""Report contents: per phase (one task) and per challenge (consensus across tasks).

Everything comes from stored snapshots; the only computation on a page view is the
consensus across tasks (mean ranks: microseconds) and its heatmap, cached by the snapshot
ids it was drawn from.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from typing import Any

from django.contrib.staticfiles import finders
from django.core.cache import cache

from challenges.permissions import can_view_leaderboard

from .leaderboard import breakdown_tables, describe_model
from .models import RankingSnapshot
from .rows import rows_from_snapshot
from .services import task_metric

log = logging.getLogger(__name__)

FIGURE_TEXT: dict[str, tuple[str, str]] = {
    "forest": (
        "Model-based means with 95% confidence intervals",
        "Each method's typical image score estimated by the ranking model (named above), with "
        "its 95% confidence interval. Colours mark the tiers: methods in one tier are not "
        "significantly worse than the tier's first method.",
    ),
    "blobs": (
        "Rank stability over the subject bootstrap",
        "Each blob's area is the share of bootstrap replicates (subjects resampled with "
        "replacement) in which the method took that rank; the line spans the 95% rank interval.",
    ),
    "significance": (
        "Significance map",
        "Pairwise comparisons of the ranking model, Holm-adjusted over all pairs: the row method "
        "is significantly better (or worse) than the column method, or not distinguishable.",
    ),
    "podium": (
        "Podium plot",
        "Each image's score drawn at the place the method reached on that image; the bars show "
        "how often each method took each place.",
    ),
    "dots": (
        "Image scores per method",
        "Every test image's score as a dot, with a box plot per method (methods in rank order).",
    ),
    "schemes": (
        "Ranks across ranking schemes",
        "The rank of each method under the mixed model and the challengeR schemes (mean then "
        "rank, median then rank, rank then mean, test then rank). Crossing lines mean the "
        "order depends on the scheme.",
    ),
}

STATISTICS_TEXT = [
    "Each test image receives one score per metric: the DSC (overlap) and NSD (boundary "
    "agreement within a tolerance) averaged over the classes present in the reference or the "
    "prediction. An image a method failed on counts with the worst value (0), so skipping hard "
    "images never helps.",
    "Images of one subject are alike, so they are not independent evidence. The main ranking "
    "therefore uses a linear mixed model on the logit of the image scores, with one fixed "
    "effect per method and random effects for the subject, the image within its subject, and "
    "the subject-by-method interaction (a method may suit some subjects better). The estimated "
    "means are transformed back to the score scale: these model-based means describe a typical "
    "image and are usually closer to the median than to the raw mean (the plain submission "
    "score: per organ the mean over subjects of each subject's mean, then the mean over organs), "
    "which the tables show beside them.",
    "{comparisons} The p-values are adjusted with Holm's method, which keeps the chance of any "
    "false 'better' claim at or below the significance level. Tiers summarise this: walking "
    "down the ranking, a method opens a new tier when its Holm-adjusted p against the first "
    "method of the current tier (shown in the ranking table) is below the significance level.",
    "The stability of the order is checked by a bootstrap that resamples whole subjects with "
    "replacement and ranks the methods in every replicate. The rank interval holds 95% of those "
    "ranks; Kendall's tau measures how similar each replicate's order is to the full ranking.",
    "For comparison with other challenges the challengeR schemes are shown: mean then rank, "
    "median then rank, rank then mean, and test then rank (one-sided Wilcoxon signed-rank tests "
    "over images, Holm-adjusted; these treat images as independent).",
    "Limits: {limits}scores of exactly 0 or 1 are clipped before the logit, so results for them "
    "depend on the clipping constant; Holm controls errors within one metric and task, not "
    "across them.",
]
COMPARISONS = {
    "t": "All pairs of methods are compared with t tests of the model's contrasts, with "
    "Satterthwaite degrees of freedom (as R's lmerTest): with few subjects the degrees of "
    "freedom are small and intervals honestly wide; the confidence intervals of the means use "
    "the same t reference.",
    "cluster": "The full mixed model could not be fitted, so methods are compared on their "
    "plain means with a cluster-robust covariance over subjects and t tests with (subjects - 1) "
    "degrees of freedom.",
    "z": "All pairs of methods are compared with Wald z tests of the model's contrasts (this "
    "ranking was made without a small-sample correction).",
}
LIMITS = {
    "t": "",
    "cluster": "",
    "z": "the Wald z tests have no small-sample correction and are optimistic with few subjects; ",
}


def statistics_text(model: dict[str, Any] | None = None) -> list[str]:
    """The plain-words methods section, saying which test this ranking actually used."""
    kind = {"satterthwaite": "t", "cluster": "cluster"}.get((model or {}).get("ddf"), "z")
    return [p.format(comparisons=COMPARISONS[kind], limits=LIMITS[kind]) for p in STATISTICS_TEXT]


def full_snapshot(snap: RankingSnapshot | None) -> RankingSnapshot | None:
    return RankingSnapshot.objects.get(pk=snap.pk) if snap is not None else None


def dataset_summary(phase) -> dict[str, Any]:
    """Species, subjects, images and tissue states of the phase's hidden test cases."""
    ds = phase.test_dataset
    if not ds:
        return {}
    wanted = set(phase.case_ids)
    rows = [r for r in ds.manifest if r.get("image_name") in wanted]
    combos = Counter((r.get("species", "?"), r.get("tissue_state", "?")) for r in rows)
    subjects_by_species: dict[str, set] = {}
    for r in rows:
        subjects_by_species.setdefault(r.get("species", "?"), set()).add(r.get("subject"))
    return {
        "images": len(rows),
        "subjects": len({r.get("subject") for r in rows}),
        "species": dict(Counter(r.get("species", "?") for r in rows)),
        "states": dict(Counter(r.get("tissue_state", "?") for r in rows)),
        "table": [
            {
                "species": sp,
                "state": st,
                "images": n,
                "subjects": len(
                    {
                        r.get("subject")
                        for r in rows
                        if r.get("species") == sp and r.get("tissue_state") == st
                    }
                ),
            }
            for (sp, st), n in sorted(combos.items())
        ],
        "subjects_by_species": {k: len(v) for k, v in sorted(subjects_by_species.items())},
        "labels": ds.label_names,
    }


def phase_report_context(phase, snap: RankingSnapshot | None) -> dict[str, Any]:
    snap = full_snapshot(snap)
    ctx: dict[str, Any] = {
        "phase": phase,
        "task": phase.task,
        "challenge": phase.challenge,
        "snapshot": snap,
        "dataset": dataset_summary(phase),
        "statistics_text": statistics_text(),
    }
    if snap is None:
        return ctx
    primary = task_metric(phase.task)[0]
    rows = rows_from_snapshot(snap.rows, primary)
    primary = rows[0].primary_metric if rows else primary
    res = snap.result.get(primary) or {}
    model_desc = describe_model(res)
    ctx.update(
        model_desc=model_desc,
        statistics_text=statistics_text(model_desc),
        contrasts=contrast_rows(res),
        plan=plan_for_result(res),
        rows=rows,
        primary=primary,
        metric_names=[m.upper() for m in rows[0].metric_names] if rows else [primary.upper()],
        model=res.get("model"),
        bootstrap=res.get("bootstrap"),
        n_cases=res.get("n_cases"),
        n_subjects=res.get("n_subjects"),
        engine_version=res.get("engine_version"),
        versions=res.get("versions") or {},
        figures=[
            {
                "name": name,
                "title": FIGURE_TEXT.get(name, (name, ""))[0],
                "caption": FIGURE_TEXT.get(name, ("", ""))[1],
                "svg": svg,
            }
            for name, svg in snap.figures.items()
        ],  # fmt: skip
        breakdowns=breakdown_tables(snap.breakdowns, rows, phase.task.label_names, primary),
    )
    return ctx


def contrast_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's table of pairwise comparisons (model scale), with their df."""
    return [
        {**c, "df": c.get("df"), "test_stat": c.get("t", c.get("z"))}
        for c in result.get("contrasts") or []
    ]


def plan_for_result(result: dict[str, Any], margin: float | None = None) -> dict[str, Any] | None:
    """Test-set planning from the ranking's variance components (evaluator.ranking.power):
    None when the ranking used no mixed model, a dict with ``error`` when no plan fits."""
    from evaluator.ranking.power import DEFAULT_MARGIN, plan_from_result

    if not result or not (result.get("model") or {}).get("variance_components"):
        return None
    try:
        plan = plan_from_result(result, margin=DEFAULT_MARGIN if margin is None else margin)
    except ValueError as exc:
        return {"error": str(exc), "margin": margin or DEFAULT_MARGIN}
    return {**plan.to_dict(), "enough": plan.enough, "metric": result.get("metric", "")}


def parse_margin(raw: str | None) -> tuple[float, str | None]:
    """The planning margin from a form value: (margin, problem or None); default 0.05."""
    from evaluator.ranking.power import DEFAULT_MARGIN

    if raw in (None, ""):
        return DEFAULT_MARGIN, None
    try:
        margin = float(raw)
    except (TypeError, ValueError):
        return DEFAULT_MARGIN, f"the margin must be a number, got {raw!r}"
    if not 0 < margin < 1:
        return DEFAULT_MARGIN, "the margin must lie between 0 and 1"
    return margin, None


def task_plans(task, margin: float) -> list[dict[str, Any]]:
    """Test-set planning for every phase of a task with a ranking (organizer view): each
    phase's latest snapshot, its primary metric's variance components."""
    primary = task_metric(task)[0]
    out = []
    for phase in sorted(task.phases.all(), key=lambda p: (p.order, p.pk)):
        snap = RankingSnapshot.objects.filter(phase=phase).order_by("-version").first()
        if snap is None:
            continue
        res = (snap.result or {}).get(primary) or {}
        out.append(
            {
                "phase": phase,
                "snapshot": snap,
                "model": describe_model(res),
                "plan": plan_for_result(res, margin),
            }
        )
    return out


def primary_phase(task, user):
    """The task's last phase (by order) whose ranking this viewer may read and that has one."""
    for p in sorted(task.phases.all(), key=lambda p: (p.order, p.pk), reverse=True):
        if not can_view_leaderboard(user, p):
            continue
        snap = RankingSnapshot.objects.filter(phase=p).order_by("-version").first()
        if snap and snap.rows:
            return p, snap
    return None, None


def challenge_report_context(challenge, user) -> dict[str, Any]:
    """Consensus across the tasks: each team's rank per task (LMM rank of its leaderboard
    entry), averaged over tasks and ranked again. Teams are the identity across tasks."""
    from evaluator.ranking import RankingError
    from evaluator.ranking.consensus import consensus

    tasks = []
    tables: dict[str, dict[str, int]] = {}
    for task in challenge.tasks.prefetch_related("phases"):
        phase, snap = primary_phase(task, user)
        tasks.append({"task": task, "phase": phase, "snapshot": snap})
        if snap is not None:
            ranks = {r.team: r.rank for r in rows_from_snapshot(snap.rows) if r.rank is not None}
            if ranks:
                tables[task.title] = ranks
    ctx: dict[str, Any] = {"challenge": challenge, "tasks": tasks, "consensus": None}
    if not tables:
        return ctx
    try:
        cons = consensus(tables).to_dict()
    except RankingError as exc:
        ctx["consensus_error"] = str(exc)
        return ctx
    ids = "-".join(str(t["snapshot"].pk) for t in tasks if t["snapshot"] is not None)
    key = (
        "consensus-heatmap:"
        + hashlib.sha1(
            (
                ids + "|" + "|".join(str(t["snapshot"].created_at) for t in tasks if t["snapshot"])
            ).encode()
        ).hexdigest()
    )
    svg = cache.get(key)
    if svg is None:
        from evaluator.ranking.figures import rank_heatmap

        try:
            svg = rank_heatmap(cons)
        except Exception:  # noqa: BLE001 - a figure never blocks the report
            log.exception("rank heatmap failed")
            svg = ""
        cache.set(key, svg, timeout=7 * 24 * 3600)
    task_names = cons["tasks"]
    ctx["consensus"] = cons
    ctx["heatmap"] = svg
    ctx["consensus_rows"] = [
        {
            "team": m,
            "rank": cons["rank"][m],
            "mean_rank": cons["mean_rank"][m],
            "task_ranks": [cons["task_ranks"][t].get(m) for t in task_names],
            "loo": [cons["leave_one_out_ranks"].get(t, {}).get(m) for t in task_names],
        }
        for m in cons["methods"]
    ]
    ctx["loo_tau"] = [(t, cons["leave_one_out_tau"].get(t)) for t in task_names]
    return ctx


def inline_css() -> str:
    """The site's stylesheet, inlined so a downloaded report is one self-contained file."""
    path = finders.find("xenobench/site.css")
    return open(path, encoding="utf-8").read() if path else ""
