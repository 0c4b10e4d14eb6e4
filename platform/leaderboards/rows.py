"""The leaderboard row: one typed definition for the page, the API, the CSV/JSON export,
the method page and the report.

Why one class: the row used to be a dict whose keys each consumer knew by heart (and each
hard-coded DSC). Snapshots store rows as JSON dicts (``RankingSnapshot.rows``); every reader
turns them into :class:`LeaderboardRow` with :meth:`LeaderboardRow.from_snapshot_dict`, which
also reads rows stored before the row carried its primary metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluator.metrics import HIGHER_IS_BETTER, METRICS

#: Metrics ranked next to the primary one (secondary columns), in this order.
REPORTED_METRICS: tuple[str, ...] = ("dsc", "nsd")
_BASE_HEAD = ("rank", "tier", "team", "method", "primary_metric")
_BASE_TAIL = (
    "rank_interval_low",
    "rank_interval_high",
    "n_cases",
    "n_failed",
    "submitted",
    "submission_id",
)


def ranked_metrics(primary_metric: str) -> tuple[str, ...]:
    """The metrics a snapshot ranks: the task's primary metric first, then the others."""
    return (primary_metric, *(m for m in REPORTED_METRICS if m != primary_metric))


def export_columns(metrics: Sequence[str] = REPORTED_METRICS) -> list[str]:
    """Flat export columns for rows ranked on ``metrics`` (primary first)."""
    per_metric = [c for m in metrics for c in (m, f"{m}_ci_low", f"{m}_ci_high")]
    return [*_BASE_HEAD, *per_metric, *_BASE_TAIL]


#: Columns of a default task (primary DSC, secondary NSD); see :func:`export_columns`.
EXPORT_COLUMNS: list[str] = export_columns()


@dataclass(frozen=True)
class MetricEstimate:
    """One metric of a row: the model-based mean (the ranking model's estimate for a typical
    image), its CI and degrees of freedom, the plain image mean, and the raw submission score
    (evaluator.aggregation's hierarchy: the number breakdowns and status pages show)."""

    metric: str
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    mean: float | None = None
    score: float | None = None  # raw (hierarchical) mean: image -> subject -> label -> submission
    df: float | None = None  # degrees of freedom of the CI (None: normal reference)

    @property
    def name(self) -> str:
        return self.metric.upper()

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER.get(self.metric, True)

    @property
    def ci(self) -> tuple[float | None, float | None]:
        return (self.ci_low, self.ci_high)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _pair(v: Any) -> tuple[Any, Any]:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return (v[0], v[1])
    return (None, None)


@dataclass(frozen=True)
class LeaderboardRow:
    """One team's entry of a ranking snapshot; ranked by ``primary_metric``."""

    submission_id: int
    team: str
    method: str
    primary_metric: str
    metrics: tuple[MetricEstimate, ...]  # primary first, then the secondary metrics
    rank: int | None = None
    tier: int | None = None
    rank_interval: tuple[int | None, int | None] = (None, None)
    rank_median: float | None = None
    tier_test: Mapping[str, Any] | None = None  # the contrast that decided the tier (see services)
    scheme_ranks: Mapping[str, int] = field(default_factory=dict)
    n_cases: int = 0
    n_failed: int = 0
    submitted_at: str = ""  # ISO 8601
    label: str = ""  # "team / method (#id)": the method's name in ranking results
    model_format: str = ""
    sha256: str = ""

    # -- access -------------------------------------------------------------------------
    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER.get(self.primary_metric, True)

    @property
    def primary(self) -> MetricEstimate:
        return self.metric(self.primary_metric) or MetricEstimate(self.primary_metric)

    @property
    def secondary(self) -> tuple[MetricEstimate, ...]:
        return tuple(m for m in self.metrics if m.metric != self.primary_metric)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.metric for m in self.metrics)

    @property
    def estimate(self) -> float | None:
        return self.primary.estimate

    def metric(self, name: str) -> MetricEstimate | None:
        return next((m for m in self.metrics if m.metric == name), None)

    def sort_value(self, key: str) -> Any:
        """The value a leaderboard column sorts by (metric columns: the estimate)."""
        if key in self.metric_names:
            return self.metric(key).estimate
        if key == "submitted":
            return self.submitted_at
        return getattr(self, key, None)

    # -- (de)serialisation --------------------------------------------------------------
    @classmethod
    def from_snapshot_dict(
        cls, d: Mapping[str, Any], *, primary_metric: str | None = None
    ) -> LeaderboardRow:
        """Read a stored row. Rows stored before ``primary_metric``/``metrics`` existed name
        their metrics only by keys (``dsc``, ``dsc_ci``, ...): the task's primary metric
        (``primary_metric``) is then used, else the first metric found."""
        names = list(d.get("metrics") or [m for m in METRICS if m in d])
        primary = d.get("primary_metric") or primary_metric or (names[0] if names else "dsc")
        if primary in names:
            names.remove(primary)
        names.insert(0, primary)
        metrics = []
        for m in names:
            low, high = _pair(d.get(f"{m}_ci"))
            metrics.append(
                MetricEstimate(
                    m,
                    d.get(m),
                    low,
                    high,
                    d.get(f"{m}_mean"),
                    d.get(f"{m}_score"),
                    d.get(f"{m}_df"),
                )
            )
        low, high = _pair(d.get("rank_interval"))
        return cls(
            submission_id=int(d["submission_id"]),
            team=str(d.get("team", "")),
            method=str(d.get("method", "")),
            primary_metric=primary,
            metrics=tuple(metrics),
            rank=_int(d.get("rank")),
            tier=_int(d.get("tier")),
            rank_interval=(_int(low), _int(high)),
            rank_median=d.get("rank_median"),
            tier_test=d.get("tier_test"),
            scheme_ranks=dict(d.get("scheme_ranks") or {}),
            n_cases=int(d.get("n_cases") or 0),
            n_failed=int(d.get("n_failed") or 0),
            submitted_at=str(d.get("submitted") or d.get("submitted_at") or ""),
            label=str(d.get("label", "")),
            model_format=str(d.get("format") or d.get("model_format") or ""),
            sha256=str(d.get("sha256", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form; keeps the per-metric keys older readers use."""
        out: dict[str, Any] = {
            "submission_id": self.submission_id,
            "method": self.method,
            "team": self.team,
            "label": self.label,
            "primary_metric": self.primary_metric,
            "metrics": list(self.metric_names),
            "rank": self.rank,
            "tier": self.tier,
        }
        for m in self.metrics:
            out[m.metric] = m.estimate
            out[f"{m.metric}_ci"] = [m.ci_low, m.ci_high]
            out[f"{m.metric}_mean"] = m.mean
            out[f"{m.metric}_score"] = m.score
            out[f"{m.metric}_df"] = m.df
        out.update(
            rank_interval=list(self.rank_interval),
            rank_median=self.rank_median,
            tier_test=dict(self.tier_test) if self.tier_test else None,
            scheme_ranks=dict(self.scheme_ranks),
            n_cases=self.n_cases,
            n_failed=self.n_failed,
            submitted=self.submitted_at,
            format=self.model_format,
            sha256=self.sha256,
        )
        return out

    def export_columns(self) -> list[str]:
        return export_columns(self.metric_names)

    def to_export(self) -> dict[str, Any]:
        """Flat values for CSV, JSON export and the API, in :meth:`export_columns` order."""
        out: dict[str, Any] = {
            "rank": self.rank,
            "tier": self.tier,
            "team": self.team,
            "method": self.method,
            "primary_metric": self.primary_metric,
        }
        for m in self.metrics:
            out[m.metric] = m.estimate
            out[f"{m.metric}_ci_low"] = m.ci_low
            out[f"{m.metric}_ci_high"] = m.ci_high
        out.update(
            rank_interval_low=self.rank_interval[0],
            rank_interval_high=self.rank_interval[1],
            n_cases=self.n_cases,
            n_failed=self.n_failed,
            submitted=self.submitted_at,
            submission_id=self.submission_id,
        )
        return out


def rows_from_snapshot(
    rows: Iterable[Mapping[str, Any]], primary_metric: str | None = None
) -> list[LeaderboardRow]:
    """Typed rows of a snapshot (or of the part of it a viewer may see)."""
    return [LeaderboardRow.from_snapshot_dict(r, primary_metric=primary_metric) for r in rows]


def columns_for(rows: Sequence[LeaderboardRow], primary_metric: str) -> list[str]:
    """Export columns of a list of rows; of the task's metrics when there are none."""
    return rows[0].export_columns() if rows else export_columns(ranked_metrics(primary_metric))
