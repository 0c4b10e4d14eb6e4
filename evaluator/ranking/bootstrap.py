"""Cluster bootstrap over subjects (aggregate-then-rank inside) and Kendall's tau.

Cases are nested in subjects, so subjects - not cases - are resampled. Each replicate draws
n_subjects subjects with replacement, averages every method over the drawn cases (weighted by
how often each subject was drawn) and ranks the means. Fully vectorised: one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schemes import rank_desc


def kendall_tau_b(ranks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every row of ``ranks`` with ``reference``; equals scipy.stats.kendalltau."""
    ranks = np.atleast_2d(np.asarray(ranks, dtype=float))
    reference = np.asarray(reference, dtype=float)
    k = reference.shape[0]
    if k < 2:
        return np.full(ranks.shape[0], np.nan)
    i, j = np.triu_indices(k, 1)
    dx = np.sign(ranks[:, i] - ranks[:, j])
    dy = np.sign(reference[i] - reference[j])
    s = (dx * dy).sum(axis=1)
    n0 = len(i)
    n1 = (dx == 0).sum(axis=1)
    n2 = int((dy == 0).sum())
    denom = np.sqrt((n0 - n1).astype(float) * (n0 - n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(denom > 0, s / denom, np.nan)
    return np.clip(tau, -1.0, 1.0)


@dataclass
class BootstrapRanks:
    ranks: np.ndarray  # (B, k) ints
    full_ranks: np.ndarray  # (k,)
    tau: np.ndarray  # (B,)


def subject_bootstrap(
    x: np.ndarray, case_subject: np.ndarray, n_bootstrap: int, seed: int
) -> BootstrapRanks:
    """Rank distribution of mean-then-rank under resampling of subjects.

    x: (k, n) oriented scores (higher is better); case_subject: subject index per case.
    """
    k, _ = x.shape
    labels, inv = np.unique(case_subject, return_inverse=True)
    ns = len(labels)
    sums = np.zeros((ns, k))
    np.add.at(sums, inv, x.T)
    n_cases = np.bincount(inv, minlength=ns).astype(float)
    full = rank_desc(x.mean(axis=1))
    if n_bootstrap <= 0:
        return BootstrapRanks(np.zeros((0, k), int), full, np.zeros(0))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(ns, np.full(ns, 1.0 / ns), size=n_bootstrap).astype(float)
    means = (counts @ sums) / (counts @ n_cases)[:, None]
    ranks = rank_desc(means, axis=1)
    return BootstrapRanks(ranks, full, kendall_tau_b(ranks, full))


def rank_summary(ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per method: counts of each rank 1..k, median rank, 95% interval (inverted CDF)."""
    b = ranks.shape[0]
    counts = np.stack([np.bincount(ranks[:, m] - 1, minlength=k)[:k] for m in range(k)])
    if b == 0:
        nan = np.full(k, np.nan)
        return {"counts": counts, "median": nan, "low": nan, "high": nan}
    return {
        "counts": counts,
        "median": np.median(ranks, axis=0),
        "low": np.quantile(ranks, 0.025, axis=0, method="inverted_cdf"),
        "high": np.quantile(ranks, 0.975, axis=0, method="inverted_cdf"),
    }


def tau_summary(tau: np.ndarray) -> dict[str, float | int | None]:
    """Distribution summary of Kendall's tau to the full ranking."""
    t = tau[np.isfinite(tau)]
    out: dict[str, float | int | None] = {"n": int(tau.size), "n_undefined": int(tau.size - t.size)}
    if t.size == 0:
        out.update(mean=None, sd=None, median=None, q025=None, q975=None, min=None, max=None)
        return out
    out.update(
        mean=float(t.mean()),
        sd=float(t.std(ddof=1)) if t.size > 1 else 0.0,
        median=float(np.median(t)),
        q025=float(np.quantile(t, 0.025)),
        q975=float(np.quantile(t, 0.975)),
        min=float(t.min()),
        max=float(t.max()),
    )
    return out
