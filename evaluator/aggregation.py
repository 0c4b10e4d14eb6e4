"""Hierarchical aggregation of per-(image, label) scores (pure pandas/NumPy).

Input is a long table with one row per (case, label) and at least the columns
``case``, ``subject``, ``label`` and the metric columns (``dsc``, ``nsd``,
``hd95``, ``masd``, ...); optional metadata such as ``tissue_state`` and
``species``. The hierarchy follows the xeno-learning study and Metrics Reloaded:

    (image, label) -> mean per (subject, label) -> mean over subjects per label
    -> mean over labels

This module is the one place where scores are averaged: the pipeline's image
score (:func:`image_score`), a submission's score (:func:`submission_score`),
the breakdowns by label, subject, tissue state and species, and the direction of
a metric (:func:`better`, :func:`sort_key`) all live here, so a leaderboard, a
status page and a report can never disagree about "the score" of a submission.

Missing or failed cases never disappear: :func:`fill_missing_cases` gives them
the worst values and counts them before anything is averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evaluator.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    STATUS_FAILED,
    STATUS_MISSING,
    worst_rows,
)

META_COLUMNS: tuple[str, ...] = ("subject", "tissue_state", "species")


class AggregationError(ValueError):
    """The score table cannot be aggregated as asked."""


def _require(df: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AggregationError(f"score table lacks columns {missing}")


def _check_metric(df: pd.DataFrame, metric: str) -> None:
    _require(df, ("case", "subject", "label", metric))
    if df.empty:
        raise AggregationError("score table is empty")
    if df[metric].isna().any():
        bad = df.loc[df[metric].isna(), "case"].unique()[:5].tolist()
        raise AggregationError(
            f"{metric} has missing values (cases {bad}...): run fill_missing_cases first"
        )


def higher_is_better(metric: str) -> bool:
    """Direction of a metric (evaluator.metrics.HIGHER_IS_BETTER); unknown metrics refused."""
    try:
        return HIGHER_IS_BETTER[metric]
    except KeyError:
        raise AggregationError(
            f"unknown metric {metric!r}; one of {sorted(HIGHER_IS_BETTER)}"
        ) from None


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def better(a: float | None, b: float | None, metric: str) -> bool:
    """True when score ``a`` is strictly better than ``b`` for ``metric``.

    A missing score (None or NaN) is never better, and any score beats a missing one;
    equal scores are not better, so callers decide ties (e.g. the earlier submission).
    """
    if _missing(a):
        return False
    if _missing(b):
        return True
    return a > b if higher_is_better(metric) else a < b


def sort_key(metric: str) -> Callable[[float | None], tuple[bool, float]]:
    """Key for ``sorted`` that puts the best score of ``metric`` first and missing ones last."""
    sign = -1.0 if higher_is_better(metric) else 1.0

    def key(value: float | None) -> tuple[bool, float]:
        return (True, 0.0) if _missing(value) else (False, sign * float(value))

    return key


def image_score(
    label_rows: Iterable[Mapping[str, Any]], metric: str, *, empty: float = math.nan
) -> float:
    """One image's score: the mean of ``metric`` over its scored (image, label) rows.

    The rows are those that :func:`evaluator.metrics.score_image` (or ``worst_rows`` for a
    failed case) returns, after any task filter of scored labels; which labels count is
    decided there (htc's convention: classes present in the reference). ``empty`` is the
    score of an image without any scored label. A missing value (None) gives NaN: it is
    never silently left out of the mean.
    """
    values = [math.nan if row.get(metric) is None else float(row[metric]) for row in label_rows]
    return float(np.mean(values)) if values else float(empty)


def image_scores(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-case "image score": mean over the labels scored in that case.

    Returns one row per case with the metadata columns present in ``df``
    (first value per case), ``n_labels`` and the mean of each metric.
    """
    _require(df, ("case", "label"))
    metrics = [m for m in (metrics or METRICS) if m in df.columns]
    meta = [c for c in META_COLUMNS if c in df.columns]
    grouped = df.groupby("case", sort=True)
    out = grouped[metrics].mean()
    out.insert(0, "n_labels", grouped["label"].nunique())
    if meta:
        out = grouped[meta].first().join(out)
    return out.reset_index()


@dataclass(frozen=True)
class HierarchicalResult:
    """Value of one metric aggregated along the subject hierarchy."""

    metric: str
    value: float
    per_label: pd.Series  # label -> mean over subjects
    per_subject_label: pd.DataFrame  # subject, label, value, n_cases
    n_cases: int
    n_subjects: int


def aggregate_hierarchical(df: pd.DataFrame, metric: str) -> HierarchicalResult:
    """Image/label rows -> per (subject, label) mean -> per label -> mean over labels."""
    _check_metric(df, metric)
    per_sl = (
        df.groupby(["subject", "label"], sort=True)
        .agg(value=(metric, "mean"), n_cases=("case", "nunique"))
        .reset_index()
    )
    per_label = per_sl.groupby("label", sort=True)["value"].mean().rename(metric)
    return HierarchicalResult(
        metric=metric,
        value=float(per_label.mean()),
        per_label=per_label,
        per_subject_label=per_sl,
        n_cases=int(df["case"].nunique()),
        n_subjects=int(df["subject"].nunique()),
    )


def submission_score(df: pd.DataFrame, metric: str) -> float:
    """A submission's score: (subject, label) mean -> per label over subjects -> over labels.

    ``df`` holds the submission's (image, label) rows; fill missing and failed cases first
    (:func:`fill_missing_cases`) or store them with worst values, as the pipeline does.
    """
    return aggregate_hierarchical(df, metric).value


def submission_scores(df: pd.DataFrame, metrics: Sequence[str]) -> dict[str, float | None]:
    """:func:`submission_score` for several metrics; None where a metric cannot be aggregated
    (column absent or with missing values, e.g. an HD95 that no row defines)."""
    out: dict[str, float | None] = {}
    for metric in metrics:
        try:
            out[metric] = submission_score(df, metric)
        except AggregationError:
            out[metric] = None
    return out


def scores_by(df: pd.DataFrame, metric: str, by: str) -> pd.DataFrame:
    """Submission score per value of ``by`` (e.g. ``submission_id``): one row each, columns
    ``by`` and ``metric``. Groups whose values cannot be aggregated get NaN."""
    _require(df, (by,))
    records = []
    for key, part in df.groupby(by, sort=True):
        try:
            value = submission_score(part, metric)
        except AggregationError:
            value = math.nan
        records.append({by: key, metric: value})
    return pd.DataFrame.from_records(records, columns=[by, metric])


def by_label(df: pd.DataFrame, metric: str) -> pd.Series:
    """Per label: mean over subjects of each subject's mean (label -> value)."""
    return aggregate_hierarchical(df, metric).per_label


def breakdown(df: pd.DataFrame, metric: str, by: str) -> pd.DataFrame:
    """Hierarchical aggregate within each value of ``by`` (e.g. tissue_state, species)."""
    _check_metric(df, metric)
    _require(df, (by,))
    records = []
    for key, part in df.groupby(by, sort=True, dropna=False):
        res = aggregate_hierarchical(part, metric)
        records.append(
            {
                by: key,
                metric: res.value,
                "n_cases": res.n_cases,
                "n_subjects": res.n_subjects,
                "n_labels": int(res.per_label.size),
            }
        )
    return pd.DataFrame.from_records(records)


def by_tissue_state(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Breakdown by tissue state (physiological, malperfused, icg, ...)."""
    return breakdown(df, metric, "tissue_state")


def by_species(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Breakdown by species (pig, rat, human)."""
    return breakdown(df, metric, "species")


def by_subject(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Breakdown by subject: each subject's mean over labels of its per-label means, the
    same hierarchy restricted to one subject."""
    return breakdown(df, metric, "subject")


@dataclass(frozen=True)
class FillReport:
    """What :func:`fill_missing_cases` did; report it next to every aggregate."""

    n_expected: int
    n_scored: int
    missing_cases: tuple[str, ...]
    failed_cases: tuple[str, ...]
    unexpected_cases: tuple[str, ...]
    n_filled_labels: int  # (case, label) pairs of scored cases given worst values

    @property
    def n_missing(self) -> int:
        return len(self.missing_cases)

    @property
    def n_failed(self) -> int:
        return len(self.failed_cases)


def fill_missing_cases(
    df: pd.DataFrame,
    expected_cases: pd.DataFrame,
    *,
    failed_cases: Iterable[str] = (),
    metrics: Sequence[str] = ("dsc", "nsd", "hd95", "masd"),
    height: int = 480,
    width: int = 640,
) -> tuple[pd.DataFrame, FillReport]:
    """Give every expected (case, label) a row; missing and failed cases get worst values.

    ``expected_cases`` has one row per (case, label) of the reference, with
    ``case``, ``label``, ``subject`` and optionally metadata (``tissue_state``,
    ``species``) and the image size (``height``, ``width``; else the arguments).
    A case counts as failed when it is in ``failed_cases`` or any of its rows
    has a missing value in ``metrics``; its rows are replaced. Rows of cases not
    expected are dropped and listed in the report. Labels of a scored case that
    the reference expects but the scores lack are filled with worst values.
    """
    _require(expected_cases, ("case", "label", "subject"))
    _require(df, ("case", "label"))
    expected_cases = expected_cases.drop_duplicates(["case", "label"])
    expected_ids = pd.unique(expected_cases["case"])
    expected_set = set(expected_ids.tolist())
    present = [m for m in metrics if m in df.columns]
    nan_cases = set(df.loc[df[present].isna().any(axis=1), "case"].tolist()) if present else set()
    failed = (set(failed_cases) | nan_cases) & expected_set
    unexpected = sorted(set(df["case"].tolist()) - expected_set)
    scored_ids = set(df["case"].tolist()) & expected_set
    missing = sorted(expected_set - scored_ids)

    kept = df[df["case"].isin(scored_ids - failed)].copy()
    meta_cols = [c for c in expected_cases.columns if c not in ("case", "label", "height", "width")]
    case_meta = expected_cases.drop_duplicates("case").set_index("case")[meta_cols]
    # Bring metadata (subject, species, ...) from the expected table to scored rows.
    for col in case_meta.columns:
        if col not in kept.columns:
            kept[col] = kept["case"].map(case_meta[col])

    have = set(zip(kept["case"], kept["label"], strict=True))
    new_rows = []
    n_filled_labels = 0
    for case, part in expected_cases.groupby("case", sort=False):
        if case in failed or case in missing:
            status = STATUS_FAILED if case in failed else STATUS_MISSING
            labels = part["label"].tolist()
        else:
            status = STATUS_MISSING
            labels = [lab for lab in part["label"].tolist() if (case, lab) not in have]
            n_filled_labels += len(labels)
        if not labels:
            continue
        h = int(part["height"].iloc[0]) if "height" in part.columns else height
        w = int(part["width"].iloc[0]) if "width" in part.columns else width
        meta = case_meta.loc[case].to_dict()
        new_rows.extend({"case": case, **meta, **row} for row in worst_rows(labels, h, w, status))
    if new_rows:
        kept = pd.concat([kept, pd.DataFrame.from_records(new_rows)], ignore_index=True)
    kept = kept.sort_values(["case", "label"], kind="stable").reset_index(drop=True)
    report = FillReport(
        n_expected=len(expected_set),
        n_scored=len(scored_ids - failed),
        missing_cases=tuple(missing),
        failed_cases=tuple(sorted(failed)),
        unexpected_cases=tuple(unexpected),
        n_filled_labels=n_filled_labels,
    )
    return kept, report


@dataclass(frozen=True)
class BootstrapCI:
    """Point estimate and percentile interval from a subject-level bootstrap."""

    metric: str
    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_subjects: int
    per_label: pd.DataFrame  # label -> estimate, low, high


def cluster_bootstrap_ci(
    df: pd.DataFrame,
    metric: str,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapCI:
    """95% CI of the hierarchical aggregate by resampling subjects with replacement.

    Subjects (not images) are the independent units. Each replicate draws as
    many subjects as there are, recomputes the per-label mean over the drawn
    subjects (with multiplicity) and averages over the labels that any drawn
    subject has. Vectorised: one (n_boot x subjects) count matrix times the
    (subjects x labels) matrix of per-subject means. Deterministic for a seed.
    """
    if n_boot < 1:
        raise AggregationError("n_boot must be >= 1")
    if not 0 < level < 1:
        raise AggregationError("level must be in (0, 1)")
    res = aggregate_hierarchical(df, metric)
    mat = res.per_subject_label.pivot(index="subject", columns="label", values="value")
    mat = mat.sort_index(axis=0).sort_index(axis=1)
    values = mat.to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    values = np.where(present, values, 0.0)
    n_subj = values.shape[0]

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_subj, size=(n_boot, n_subj))
    offsets = (np.arange(n_boot) * n_subj)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_subj)
    counts = counts.reshape(n_boot, n_subj).astype(np.float64)
    num = counts @ values
    den = counts @ present.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_label = num / den  # NaN where no drawn subject has the label
    overall = np.nanmean(per_label, axis=1)

    alpha = (1 - level) / 2
    q = [100 * alpha, 100 * (1 - alpha)]
    low, high = np.percentile(overall, q)
    label_low, label_high = np.nanpercentile(per_label, q, axis=0)
    per_label_df = pd.DataFrame(
        {"estimate": res.per_label.to_numpy(), "low": label_low, "high": label_high},
        index=mat.columns,
    )
    return BootstrapCI(
        metric=metric,
        estimate=res.value,
        low=float(low),
        high=float(high),
        level=level,
        n_boot=n_boot,
        n_subjects=n_subj,
        per_label=per_label_df,
    )
