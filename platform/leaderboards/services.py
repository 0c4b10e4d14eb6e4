"""Build a ranking snapshot for a phase from stored per-case results with the evaluator's
statistics engine. Pages and exports only ever read snapshots.

Every score derived from stored results (a submission's score, the "best" leaderboard rule,
breakdowns, status pages) goes through evaluator.aggregation on the stored (image, label)
rows: one path, in the direction of the task's primary metric."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from django.db import transaction

from challenges.models import Phase, Task
from evaluator import aggregation as agg
from submissions.models import CaseScore, LabelScore, Status, Submission

from .models import RankingSnapshot
from .rows import REPORTED_METRICS, LeaderboardRow, MetricEstimate, ranked_metrics

log = logging.getLogger(__name__)
LABEL_META = ("subject", "tissue_state", "species")


def task_metric(task: Task) -> tuple[str, bool]:
    """The task's primary metric and its direction, from the task spec (Task.spec). A task
    whose settings do not validate (TaskSpecError) keeps its stored metric: its leaderboard
    must still render while the organizer fixes it."""
    try:
        spec = task.spec
    except (AttributeError, ValueError):
        spec = None
    if spec is not None:
        return spec.primary_metric, bool(spec.higher_is_better)
    metric = task.primary_metric or "dsc"
    return metric, agg.higher_is_better(metric)


def label_table(
    subs: list[Submission], metrics: tuple[str, ...] = REPORTED_METRICS
) -> pd.DataFrame:
    """The stored (image, label) scores of these submissions as one long table: the input of
    every aggregate (columns submission_id, case, label, subject, tissue_state, species and
    the metrics)."""
    rows = LabelScore.objects.filter(submission__in=subs).values(
        "submission_id", "case_id", "label_name", *LABEL_META, *metrics
    )
    df = pd.DataFrame(list(rows))
    columns = ["submission_id", "case", "label", *LABEL_META, *metrics]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = df.rename(columns={"case_id": "case", "label_name": "label"})
    df["species"] = df["species"].replace("", "unknown")
    return df[columns]


def submission_scores(subs: list[Submission], metric: str) -> dict[int, float | None]:
    """Each submission's score on ``metric`` (evaluator.aggregation.submission_score);
    None for a submission without (aggregable) label scores."""
    df = label_table(subs, (metric,))
    out: dict[int, float | None] = {s.pk: None for s in subs}
    if df.empty:
        return out
    for _, r in agg.scores_by(df, metric, "submission_id").iterrows():
        v = r[metric]
        out[int(r["submission_id"])] = None if pd.isna(v) else float(v)
    return out


def score_summary(sub: Submission) -> dict[str, Any]:
    """What status pages and the API show of a finished submission: the submission score of
    the task's primary metric and of the reported metrics, all by the one hierarchy."""
    primary, hib = task_metric(sub.phase.task)
    metrics = ranked_metrics(primary)
    df = label_table([sub], metrics)
    scores = agg.submission_scores(df, metrics) if not df.empty else dict.fromkeys(metrics)
    return {
        "primary_metric": primary,
        "higher_is_better": hib,
        "score": scores[primary],
        "scores": scores,
    }


def score_fields(sub: Submission) -> dict[str, Any]:
    """The flat score fields of status pages and the API: ``score`` (the primary metric's
    submission score), ``primary_metric``, and ``mean_dsc``/``mean_nsd`` (DSC and NSD
    submission scores by the same hierarchy; names kept for existing clients)."""
    summary = score_summary(sub)
    return {
        "primary_metric": summary["primary_metric"],
        "higher_is_better": summary["higher_is_better"],
        "score": summary["score"],
        "mean_dsc": summary["scores"].get("dsc"),
        "mean_nsd": summary["scores"].get("nsd"),
    }


def owner_key(s: Submission) -> str:
    return f"team:{s.team_id}" if s.team_id else f"user:{s.user_id}"


def select_entries(
    subs: list[Submission],
    rule: str,
    *,
    scores: dict[int, float | None] | None = None,
    metric: str = "dsc",
) -> list[Submission]:
    """One submission per owner (team or solo participant) by a leaderboard rule.

    ``subs`` must be in submission order (earliest first). "latest": the last one; "chosen":
    the last one marked chosen, else the last one; "best": the best ``scores`` value in the
    direction of ``metric`` (evaluator.aggregation.better), the earlier one on a tie.
    """
    picked: dict[str, Submission] = {}
    for s in subs:
        key = owner_key(s)
        cur = picked.get(key)
        if rule == "latest":
            picked[key] = s
        elif rule == "chosen":
            if cur is None or s.chosen or not cur.chosen:
                picked[key] = s
        elif rule == "best":
            if cur is None or agg.better(
                (scores or {}).get(s.pk), (scores or {}).get(cur.pk), metric
            ):
                picked[key] = s
        else:
            raise ValueError(f"unknown leaderboard rule {rule!r}")
    return sorted(picked.values(), key=lambda s: s.pk)


def eligible_submissions(phase: Phase) -> list[Submission]:
    """One submission per team (or solo participant) by the phase's leaderboard rule; only
    succeeded, not disqualified submissions take part."""
    subs = list(
        Submission.objects.filter(phase=phase, status=Status.SUCCEEDED, disqualified=False)
        .select_related("team", "user")
        .order_by("created_at", "pk")
    )
    metric, _ = task_metric(phase.task)
    scores = submission_scores(subs, metric) if phase.leaderboard_rule == "best" else None
    return select_entries(subs, phase.leaderboard_rule, scores=scores, metric=metric)


def method_label(s: Submission) -> str:
    return f"{s.owner_label} / {s.method_name} (#{s.pk})"


CASE_COLUMNS = ("dsc", "nsd")  # image scores stored per case by the pipeline


def case_table(subs: list[Submission], metrics: tuple[str, ...] = REPORTED_METRICS) -> pd.DataFrame:
    """One row per (submission, image) with the image score of each metric: the stored one
    (the pipeline's evaluator.aggregation.image_score) for DSC and NSD, the same mean over
    the stored label rows (evaluator.aggregation.image_scores) for any other metric."""
    base = [m for m in metrics if m in CASE_COLUMNS]
    rows = CaseScore.objects.filter(submission__in=subs).values(
        "submission_id", "case_id", "subject", "tissue_state", "species", "ok", *base
    )
    df = pd.DataFrame(list(rows))
    columns = ["method", "case", "subject", "tissue_state", "species", "ok", *metrics]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = df.rename(columns={"case_id": "case"})
    extra = [m for m in metrics if m not in CASE_COLUMNS]
    if extra:
        labels = label_table(subs, tuple(extra))
        parts = [
            agg.image_scores(part, extra).assign(submission_id=sid)[
                ["submission_id", "case", *extra]
            ]
            for sid, part in labels.groupby("submission_id")
        ]
        if parts:
            df = df.merge(pd.concat(parts), on=["submission_id", "case"], how="left")
        else:
            df = df.assign(**dict.fromkeys(extra, float("nan")))
    labels_by_id = {s.pk: method_label(s) for s in subs}
    df["method"] = df["submission_id"].map(labels_by_id)
    return df


def _per_submission(values: dict[int, pd.Series]) -> dict[str, dict[str, float | None]]:
    """Every submission gets every column (None where it has no value), rounded for JSON."""
    table = pd.DataFrame(values).T.sort_index(axis=1)
    return {
        str(sid): {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in row.items()}
        for sid, row in table.iterrows()
    }


def breakdowns(
    subs: list[Submission], metrics: tuple[str, ...] = REPORTED_METRICS
) -> dict[str, Any]:
    """Per organ, tissue state and species, per metric and submission: the submission score
    (evaluator.aggregation) restricted to each part. Keys: by_label, by_state, by_species."""
    out: dict[str, Any] = {"by_label": {}, "by_state": {}, "by_species": {}}
    df = label_table(subs, metrics)
    if df.empty:
        return out
    for metric in metrics:
        parts: dict[str, dict[int, pd.Series]] = {k: {} for k in out}
        for sid, part in df.groupby("submission_id", sort=True):
            if part[metric].isna().any():
                continue  # e.g. an HD95 undefined for some label: no breakdown for it
            parts["by_label"][sid] = agg.by_label(part, metric)
            parts["by_state"][sid] = agg.by_tissue_state(part, metric).set_index("tissue_state")[
                metric
            ]
            parts["by_species"][sid] = agg.by_species(part, metric).set_index("species")[metric]
        for key, values in parts.items():
            if values:
                out[key][metric] = _per_submission(values)
    return out


FIGURES = ("forest", "blobs", "significance", "podium", "dots", "schemes")


def _figures(result_dict: dict, df: pd.DataFrame, metric: str) -> dict[str, str]:
    """Every figure of the ranking engine as SVG; one broken figure never blocks the rest."""
    from evaluator.ranking import figures as fg

    table = df[["method", "case", "subject", metric]] if not df.empty else df
    makers = {
        "forest": lambda: fg.forest_plot(result_dict),
        "blobs": lambda: fg.blob_plot(result_dict),
        "significance": lambda: fg.significance_map(result_dict),
        "podium": lambda: fg.podium_plot(result_dict, table),
        "dots": lambda: fg.dot_box_plot(result_dict, table),
        "schemes": lambda: fg.scheme_lines(result_dict),
    }
    out = {}
    for name, make in makers.items():
        try:
            out[name] = make()
        except Exception:  # noqa: BLE001
            log.exception("figure %s failed", name)
    return out


def build_snapshot(phase: Phase, *, n_bootstrap: int | None = None) -> RankingSnapshot:
    """Rank the phase's entries on the task's primary metric (rank and tier) and on the
    reported secondary metrics (shown alongside), each in its own direction."""
    from evaluator.ranking import RankingError, rank_methods
    from evaluator.ranking.settings import RankingSettings

    settings = {**RankingSettings().to_dict(), **(phase.task.ranking_settings or {})}
    if n_bootstrap is not None:
        settings["n_bootstrap"] = n_bootstrap
    primary, primary_hib = task_metric(phase.task)
    metrics = ranked_metrics(primary)
    subs = eligible_submissions(phase)
    df = case_table(subs, metrics)
    results: dict[str, Any] = {}
    warnings: list[str] = []
    if subs and not df.empty:
        for metric in metrics:
            try:
                res = rank_methods(
                    df[["method", "case", "subject", metric]],
                    metric=metric,
                    higher_is_better=primary_hib if metric == primary else None,
                    n_bootstrap=int(settings["n_bootstrap"]),
                    seed=int(settings["seed"]),
                    alpha=float(settings["alpha"]),
                )
                results[metric] = res.to_dict()
                warnings += [f"{metric}: {w}" for w in res.warnings]
            except RankingError as exc:
                warnings.append(f"{metric}: ranking not possible: {exc}")
    rows = [r.to_dict() for r in _rows(subs, results, df, primary, metrics)]
    figures = _figures(results[primary], df, primary) if primary in results else {}
    with transaction.atomic():
        prev = (
            RankingSnapshot.objects.select_for_update()
            .filter(phase=phase)
            .order_by("-version")
            .first()
        )
        snap = RankingSnapshot.objects.create(
            phase=phase,
            version=(prev.version + 1) if prev else 1,
            settings=settings,
            submission_ids=[s.pk for s in subs],
            rows=rows,
            result=results,
            breakdowns=breakdowns(subs, metrics),
            figures=figures,
            changes=_changes(prev.rows if prev else [], rows),
            warnings=warnings,
        )
    return snap


def _rows(
    subs: list[Submission],
    results: dict,
    df: pd.DataFrame,
    primary: str,
    metrics: tuple[str, ...],
) -> list[LeaderboardRow]:
    """Rank, tier and rank interval from the primary metric's ranking; every metric's
    estimate alongside. Sorted by rank, then by the primary estimate in its direction."""
    by_metric = {m: {r["method"]: r for r in res.get("methods", [])} for m, res in results.items()}
    raw = {m: submission_scores(subs, m) for m in metrics} if subs else {}
    tier_tests = tier_decisions(results.get(primary) or {})
    rows = []
    for s in subs:
        label = method_label(s)
        p = by_metric.get(primary, {}).get(label, {})
        sub_df = df[df["method"] == label] if not df.empty else df
        estimates = []
        for m in metrics:
            e = by_metric.get(m, {}).get(label, {})
            estimates.append(
                MetricEstimate(
                    m,
                    e.get("estimate"),
                    e.get("ci_low"),
                    e.get("ci_high"),
                    e.get("mean"),
                    raw.get(m, {}).get(s.pk),
                    e.get("df"),
                )
            )
        rows.append(
            LeaderboardRow(
                submission_id=s.pk,
                team=s.owner_label,
                method=s.method_name,
                label=label,
                primary_metric=primary,
                metrics=tuple(estimates),
                rank=p.get("rank"),
                tier=p.get("tier"),
                rank_interval=(p.get("boot_rank_low"), p.get("boot_rank_high")),
                rank_median=p.get("boot_rank_median"),
                tier_test=tier_tests.get(label),
                scheme_ranks=p.get("scheme_ranks", {}),
                n_cases=int(len(sub_df)),
                n_failed=int((~sub_df["ok"].astype(bool)).sum()) if len(sub_df) else 0,
                submitted_at=s.created_at.isoformat(),
                model_format=s.model_format,
                sha256=s.sha256,
            )
        )
    best_first = agg.sort_key(primary)
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0, best_first(r.estimate), r.submission_id))
    return rows


def tier_decisions(result: dict) -> dict[str, dict[str, Any]]:
    """For each method, the Holm-adjusted contrast that placed it in its tier (the engine's
    rule, evaluator.ranking.engine.assign_tiers): walking down the ranking, the comparison
    with the current tier's first method ("leader") or with the method above ("adjacent").
    A method that opened a new tier shows the significant comparison with the previous tier's
    first method. The leaderboard shows these, so a tier is read off the numbers on the page."""
    methods = [m["method"] for m in result.get("methods", [])]
    tiers = {m["method"]: m.get("tier") for m in result.get("methods", [])}
    con = {(c["method_a"], c["method_b"]): c for c in result.get("contrasts", [])}
    rule = (result.get("settings") or {}).get("tier_rule", "leader")
    out: dict[str, dict[str, Any]] = {}
    head = methods[0] if methods else None
    for pos, m in enumerate(methods[1:], start=1):
        ref = head if rule == "leader" else methods[pos - 1]
        c = con.get((ref, m)) or con.get((m, ref)) or {}
        out[m] = {
            "vs": ref,
            "p_holm": c.get("p_holm"),
            "df": c.get("df"),
            "new_tier": tiers.get(m) != tiers.get(ref),
        }
        if tiers.get(m) != tiers.get(ref):
            head = m
    return out


def _changes(old: list[dict], new: list[dict]) -> list[str]:
    before = {r["submission_id"]: r for r in old}
    after = {r["submission_id"]: r for r in new}
    out = []
    for sid, r in after.items():
        if sid not in before:
            out.append(f"new entry: {r['label']} at rank {r['rank']}")
        elif before[sid]["rank"] != r["rank"]:
            out.append(f"{r['label']}: rank {before[sid]['rank']} -> {r['rank']}")
    for sid, r in before.items():
        if sid not in after:
            out.append(f"removed: {r['label']}")
    return out


LIGHT_FIELDS = ("id", "phase_id", "version", "created_at")


def current_snapshot(phase: Phase) -> RankingSnapshot | None:
    """The latest snapshot with only its identity loaded: pages render cached fragments keyed
    by the (immutable) snapshot id; rows, result and figures load on first access."""
    return (
        RankingSnapshot.objects.filter(phase=phase).only(*LIGHT_FIELDS).order_by("-version").first()
    )
