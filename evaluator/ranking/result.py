"""Result objects of a ranking, with a lossless JSON round trip (NaN is stored as None)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ENGINE_VERSION = "xenobench-ranking 1.1.0"


def jsonable(obj: Any) -> Any:
    """Convert numpy/pandas scalars and containers to JSON-native types; NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


@dataclass
class MethodResult:
    """Every per-method number a leaderboard page shows."""

    method: str
    rank: int  # LMM rank (1 = best, ties "min")
    tier: int  # 1 = top tier; see docs/statistics.md
    estimate: float | None  # LMM mean on the metric scale (back-transformed)
    ci_low: float | None
    ci_high: float | None
    estimate_model: float | None  # on the model scale (logit for bounded metrics)
    se_model: float | None
    mean: float | None  # plain mean of case scores (missing = worst value)
    median: float | None
    sd: float | None
    n_cases: int
    n_scored: int
    n_missing: int
    scheme_ranks: dict[str, int]
    scheme_scores: dict[str, float | None]
    boot_rank_median: float | None
    boot_rank_low: int | None
    boot_rank_high: int | None
    boot_rank_counts: list[int]  # counts of ranks 1..k over the bootstrap replicates
    #: degrees of freedom of the CI (Satterthwaite by default; None in results stored before
    #: engine 1.1, which used the normal reference, and where no test is possible)
    df: float | None = None


@dataclass
class Contrast:
    """One pairwise LMM contrast (method_a ranked at or above method_b)."""

    method_a: str
    method_b: str
    estimate: float | None  # mean_a - mean_b on the model scale (log odds ratio if logit)
    se: float | None
    ci_low: float | None
    ci_high: float | None
    z: float | None  # the test statistic estimate / se (t with ``df`` degrees of freedom)
    p_raw: float | None  # two-sided t test with df (Wald z when df is None / inf)
    p_holm: float | None
    significant: bool
    better: str | None  # the method significantly better, if any
    #: degrees of freedom of test and CI (Satterthwaite by default; None in results stored
    #: before engine 1.1 (Wald z) and for a Wald z test)
    df: float | None = None


@dataclass
class ModelInfo:
    model: str
    formula: str
    optimizer: str | None
    converged: bool
    reml: bool
    transform: str  # "logit" or "identity"
    eps: float | None
    n_clipped_low: int
    n_clipped_high: int
    variance_components: dict[str, float | None]
    log_likelihood: float | None
    attempts: list[dict[str, Any]]
    fallbacks: list[str]
    test: str = "Wald z (normal reference, no small-sample df correction)"
    #: "satterthwaite", "wald", "cluster" (fallback: n_clusters - 1) or "none"; None before 1.1
    ddf: str | None = None
    #: optimiser/convergence notes of the accepted fit (runs that stopped short, boundary)
    fit_warnings: list[str] = field(default_factory=list)
    #: why the primary nested REML model was not used (fallback), None when it was
    fallback_reason: str | None = None


@dataclass
class BootstrapInfo:
    n_bootstrap: int
    seed: int
    scale: str  # "model" or "metric": the scale of the means ranked in each replicate
    resampling: str
    kendall_tau: dict[str, float | int | None]
    tau_histogram: dict[str, list]
    full_ranks: dict[str, int]  # mean-then-rank on the bootstrap scale, full data
    ranks: list[list[int]] | None = None  # (B x k) in result method order, if kept


@dataclass
class RankingResult:
    """Everything a leaderboard or report shows for one task and metric."""

    engine_version: str
    versions: dict[str, str]
    settings: dict[str, Any]
    metric: str
    higher_is_better: bool
    n_methods: int
    n_cases: int
    n_subjects: int
    n_missing: int
    methods: list[MethodResult]  # in rank order
    contrasts: list[Contrast]
    significance: list[list[int]]  # [a][b] = 1 a better, -1 a worse, 0 not significant
    p_holm_matrix: list[list[float | None]]
    wilcoxon_p_holm: list[list[float | None]]  # [a][b]: one-sided "a better than b", Holm
    model: ModelInfo
    bootstrap: BootstrapInfo
    warnings: list[str] = field(default_factory=list)

    @property
    def method_names(self) -> list[str]:
        return [m.method for m in self.methods]

    def method(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(name)

    def to_frame(self) -> pd.DataFrame:
        """One row per method (flat columns), for reports and quick inspection."""
        rows = []
        for m in self.methods:
            row = {k: v for k, v in dataclasses.asdict(m).items() if not isinstance(v, dict | list)}
            row.update({f"rank_{k}": v for k, v in m.scheme_ranks.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankingResult:
        d = dict(data)
        d["methods"] = [MethodResult(**m) for m in d["methods"]]
        d["contrasts"] = [Contrast(**c) for c in d["contrasts"]]
        d["model"] = ModelInfo(**d["model"])
        d["bootstrap"] = BootstrapInfo(**d["bootstrap"])
        return cls(**d)
