"""Build a ranking snapshot for a phase from stored per-case results with the evaluator's
statistics engine. Pages and exports only ever read snapshots."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from django.db import transaction
from django.db.models import Avg

from challenges.models import Phase
from submissions.models import CaseScore, LabelScore, Status, Submission

from .models import RankingSnapshot

log = logging.getLogger(__name__)
METRICS = ("dsc", "nsd")


def eligible_submissions(phase: Phase) -> list[Submission]:
    """One submission per team (or solo participant) by the phase's leaderboard rule."""
    subs = list(
        Submission.objects.filter(phase=phase, status=Status.SUCCEEDED, disqualified=False)
        .select_related("team", "user")
        .annotate(mean_dsc=Avg("case_scores__dsc"))
        .order_by("created_at")
    )
    best: dict[str, Submission] = {}
    for s in subs:
        key = f"team:{s.team_id}" if s.team_id else f"user:{s.user_id}"
        cur = best.get(key)
        if phase.leaderboard_rule == "latest":
            best[key] = s
        elif phase.leaderboard_rule == "chosen":
            # The latest chosen one; the latest one while none is chosen.
            if cur is None or s.chosen or not cur.chosen:
                best[key] = s
        elif cur is None or (s.mean_dsc or 0) > (cur.mean_dsc or 0):
            best[key] = s
    return sorted(best.values(), key=lambda s: s.pk)


def method_label(s: Submission) -> str:
    return f"{s.owner_label} / {s.method_name} (#{s.pk})"


def case_table(subs: list[Submission]) -> pd.DataFrame:
    rows = CaseScore.objects.filter(submission__in=subs).values(
        "submission_id", "case_id", "subject", "tissue_state", "species", "dsc", "nsd", "ok"
    )
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(
            columns=["method", "case", "subject", "tissue_state", "species", "dsc", "nsd", "ok"]
        )
    labels = {s.pk: method_label(s) for s in subs}
    df["method"] = df["submission_id"].map(labels)
    return df.rename(columns={"case_id": "case"})


def label_breakdown(subs: list[Submission]) -> dict[str, Any]:
    """Per organ and per tissue state: mean over subjects of per-subject means (the study's
    hierarchy, evaluator.aggregation), for each submission."""
    from evaluator.aggregation import aggregate_hierarchical, by_tissue_state

    rows = LabelScore.objects.filter(submission__in=subs).values(
        "submission_id", "case_id", "subject", "tissue_state", "label_name", "dsc", "nsd"
    )
    df = pd.DataFrame(list(rows))
    out: dict[str, Any] = {"by_label": {}, "by_state": {}}
    if df.empty:
        return out
    df = df.rename(columns={"case_id": "case", "label_name": "label"})
    for metric in METRICS:
        by_label, by_state = {}, {}
        for sid, part in df.groupby("submission_id", sort=True):
            by_label[sid] = aggregate_hierarchical(part, metric).per_label
            by_state[sid] = by_tissue_state(part, metric).set_index("tissue_state")[metric]
        out["by_label"][metric] = _per_submission(by_label)
        out["by_state"][metric] = _per_submission(by_state)
    return out


def _per_submission(values: dict[int, pd.Series]) -> dict[str, dict[str, float | None]]:
    """Every submission gets every column (None where it has no value), rounded for JSON."""
    table = pd.DataFrame(values).T.sort_index(axis=1)
    return {
        str(sid): {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in row.items()}
        for sid, row in table.iterrows()
    }


def species_breakdown(subs: list[Submission]) -> dict[str, Any]:
    """Image scores per species: mean over subjects of per-subject means, per submission."""
    rows = CaseScore.objects.filter(submission__in=subs).values(
        "submission_id", "subject", "species", "dsc", "nsd"
    )
    df = pd.DataFrame(list(rows))
    out: dict[str, Any] = {}
    if df.empty:
        return out
    df["species"] = df["species"].replace("", "unknown")
    for metric in METRICS:
        per_subject = df.groupby(["submission_id", "species", "subject"])[metric].mean()
        table = per_subject.groupby(level=[0, 1]).mean().unstack()
        out[metric] = {
            str(sid): {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in row.items()}
            for sid, row in table.iterrows()
        }
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
    from evaluator.ranking import RankingError, rank_methods

    settings = {
        "n_bootstrap": 1000,
        "alpha": 0.05,
        "seed": 0,
        **(phase.task.ranking_settings or {}),
    }
    if n_bootstrap is not None:
        settings["n_bootstrap"] = n_bootstrap
    subs = eligible_submissions(phase)
    df = case_table(subs)
    results: dict[str, Any] = {}
    warnings: list[str] = []
    if subs and not df.empty:
        for metric in METRICS:
            try:
                res = rank_methods(
                    df[["method", "case", "subject", metric]],
                    metric=metric,
                    n_bootstrap=int(settings["n_bootstrap"]),
                    seed=int(settings["seed"]),
                    alpha=float(settings["alpha"]),
                )
                results[metric] = res.to_dict()
                warnings += [f"{metric}: {w}" for w in res.warnings]
            except RankingError as exc:
                warnings.append(f"{metric}: ranking not possible: {exc}")
    rows = _rows(subs, results, df)
    primary = phase.task.primary_metric
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
            breakdowns={**label_breakdown(subs), "by_species": species_breakdown(subs)},
            figures=figures,
            changes=_changes(prev.rows if prev else [], rows),
            warnings=warnings,
        )
    return snap


def _rows(subs: list[Submission], results: dict, df: pd.DataFrame) -> list[dict]:
    by_metric = {m: {r["method"]: r for r in res.get("methods", [])} for m, res in results.items()}
    rows = []
    for s in subs:
        label = method_label(s)
        d = by_metric.get("dsc", {}).get(label, {})
        n = by_metric.get("nsd", {}).get(label, {})
        sub_df = df[df["method"] == label] if not df.empty else df
        rows.append(
            {
                "submission_id": s.pk,
                "method": s.method_name,
                "team": s.owner_label,
                "label": label,
                "rank": d.get("rank"),
                "tier": d.get("tier"),
                "dsc": d.get("estimate"),
                "dsc_ci": [d.get("ci_low"), d.get("ci_high")],
                "dsc_mean": d.get("mean"),
                "nsd": n.get("estimate"),
                "nsd_ci": [n.get("ci_low"), n.get("ci_high")],
                "rank_interval": [d.get("boot_rank_low"), d.get("boot_rank_high")],
                "rank_median": d.get("boot_rank_median"),
                "scheme_ranks": d.get("scheme_ranks", {}),
                "n_cases": int(len(sub_df)),
                "n_failed": int((~sub_df["ok"].astype(bool)).sum()) if len(sub_df) else 0,
                "submitted": s.created_at.isoformat(),
                "format": s.model_format,
                "sha256": s.sha256,
            }
        )
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, -(r["dsc"] or 0)))
    return rows


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
