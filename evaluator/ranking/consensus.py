"""Consensus ranking across tasks: mean rank per method, ranked again (ties "min").

Stability: leave-one-task-out consensus ranks with Kendall's tau to the full consensus, and,
when every task result kept its bootstrap replicate ranks (keep_bootstrap_ranks=True), the
distribution of the consensus rank over replicates (replicate b of every task combined).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import kendall_tau_b, rank_summary, tau_summary
from .errors import RankingError
from .result import ENGINE_VERSION, RankingResult, jsonable
from .schemes import SCHEMES, rank_asc

RANK_KEYS = ("lmm", *SCHEMES)


@dataclass
class ConsensusResult:
    engine_version: str
    rank_key: str
    tasks: list[str]
    methods: list[str]  # consensus order
    rank: dict[str, int]
    mean_rank: dict[str, float]
    task_ranks: dict[str, dict[str, int | None]]  # task -> method -> rank (None: absent)
    leave_one_out_ranks: dict[str, dict[str, int]]  # dropped task -> method -> rank
    leave_one_out_tau: dict[str, float | None]
    task_agreement_tau: list[list[float | None]]  # Kendall tau between task rankings
    bootstrap: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsensusResult:
        return cls(**data)


def _task_table(item: Any, rank_key: str) -> tuple[dict[str, int], list[list[int]] | None]:
    """Ranks of one task from a RankingResult, its dict, a DataFrame or a mapping."""
    if isinstance(item, Mapping) and "methods" in item and "engine_version" in item:
        item = RankingResult.from_dict(dict(item))
    if isinstance(item, RankingResult):
        if rank_key == "lmm":
            ranks = {m.method: m.rank for m in item.methods}
        else:
            ranks = {m.method: m.scheme_ranks[rank_key] for m in item.methods}
        boot = item.bootstrap.ranks if rank_key == "lmm" or rank_key == "mean_then_rank" else None
        return ranks, boot
    if isinstance(item, pd.DataFrame):
        if not {"method", "rank"} <= set(item.columns):
            raise RankingError("a per-task rank table needs columns 'method' and 'rank'")
        return dict(zip(item["method"].astype(str), item["rank"].astype(int), strict=True)), None
    if isinstance(item, pd.Series):
        return {str(k): int(v) for k, v in item.items()}, None
    if isinstance(item, Mapping):
        return {str(k): int(v) for k, v in item.items()}, None
    raise RankingError(f"cannot read task ranks from {type(item).__name__}")


def _consensus(rank_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = rank_matrix.mean(axis=0)
    return mean, rank_asc(mean)


def consensus(results: Mapping[str, Any], *, rank_key: str = "lmm") -> ConsensusResult:
    """Mean rank across tasks. results: task -> RankingResult (or its dict) or rank table.

    A method absent from a task gets that task's worst rank + 1 (challengeR's convention).
    """
    if rank_key not in RANK_KEYS:
        raise RankingError(f"rank_key must be one of {RANK_KEYS}")
    if not results:
        raise RankingError("consensus needs at least one task")
    tasks = [str(t) for t in results]
    tables, boots = [], []
    for t in results:
        r, b = _task_table(results[t], rank_key)
        if not r:
            raise RankingError(f"task {t!r} ranks no method")
        tables.append(r)
        boots.append(b)
    methods = sorted(set().union(*tables))
    k, nt = len(methods), len(tasks)
    warnings: list[str] = []
    rm = np.zeros((nt, k))
    task_ranks: dict[str, dict[str, int | None]] = {}
    for ti, (task, table) in enumerate(zip(tasks, tables, strict=True)):
        worst = max(table.values()) + 1
        absent = [m for m in methods if m not in table]
        if absent:
            warnings.append(f"task {task!r}: {len(absent)} method(s) absent, ranked {worst}")
        rm[ti] = [table.get(m, worst) for m in methods]
        task_ranks[task] = {m: table.get(m) for m in methods}
    mean, rank = _consensus(rm)
    order = np.lexsort((np.arange(k), mean))

    loo_ranks, loo_tau = {}, {}
    for ti, task in enumerate(tasks):
        if nt < 2:
            break
        _, r = _consensus(np.delete(rm, ti, axis=0))
        loo_ranks[task] = {methods[m]: int(r[m]) for m in order}
        loo_tau[task] = float(kendall_tau_b(r[None, :], rank)[0])
    agree = np.full((nt, nt), np.nan)
    for a in range(nt):
        agree[a] = kendall_tau_b(rm, rm[a])
    if nt == 1:
        warnings.append("consensus over a single task equals that task's ranking")

    boot = None
    if all(b is not None for b in boots) and len({len(b) for b in boots}) == 1 and boots[0]:
        if all(set(tab) == set(methods) for tab in tables):
            stacks = []
            for b, res in zip(boots, results.values(), strict=True):
                res_obj = res if isinstance(res, RankingResult) else RankingResult.from_dict(res)
                cols = [res_obj.method_names.index(m) for m in methods]
                stacks.append(np.asarray(b, dtype=float)[:, cols])
            rep = np.stack(stacks).mean(axis=0)  # (B, k) mean rank per replicate
            rep_ranks = rank_asc(rep, axis=1)
            rs = rank_summary(rep_ranks, k)
            tau = kendall_tau_b(rep_ranks, rank)
            boot = {
                "n_bootstrap": int(rep.shape[0]),
                "median": {methods[m]: float(rs["median"][m]) for m in order},
                "low": {methods[m]: int(rs["low"][m]) for m in order},
                "high": {methods[m]: int(rs["high"][m]) for m in order},
                "counts": {methods[m]: [int(c) for c in rs["counts"][m]] for m in order},
                "kendall_tau": tau_summary(tau),
                "note": "replicate b of every task combined; tasks resampled independently",
            }
        else:
            warnings.append("bootstrap consensus skipped: tasks rank different method sets")
    out = ConsensusResult(
        engine_version=ENGINE_VERSION,
        rank_key=rank_key,
        tasks=tasks,
        methods=[methods[m] for m in order],
        rank={methods[m]: int(rank[m]) for m in order},
        mean_rank={methods[m]: float(mean[m]) for m in order},
        task_ranks=task_ranks,
        leave_one_out_ranks=loo_ranks,
        leave_one_out_tau=loo_tau,
        task_agreement_tau=agree.tolist(),
        bootstrap=boot,
        warnings=warnings,
    )
    return ConsensusResult.from_dict(out.to_dict())
