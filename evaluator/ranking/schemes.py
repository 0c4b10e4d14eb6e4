"""challengeR ranking schemes on the case-level metric values (ties: "min").

All functions take oriented scores x (k methods x n cases, higher is better; multiply by -1
first for lower-is-better metrics) that are complete (missing already set to worst value).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from .wilcoxon import pairwise_greater

SCHEMES = ("mean_then_rank", "median_then_rank", "rank_then_mean", "test_then_rank")
_DECIMALS = 10  # round before ranking so float noise never breaks a true tie


def rank_desc(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rank higher-is-better scores, 1 = best, ties "min"; NaN ranks last."""
    s = np.round(np.asarray(scores, dtype=float), _DECIMALS)
    s = np.where(np.isnan(s), -np.inf, s)
    return rankdata(-s, axis=axis, method="min").astype(int)


def rank_asc(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rank lower-is-better scores (e.g. mean ranks), 1 = best, ties "min"."""
    return rank_desc(-np.asarray(scores, dtype=float), axis=axis)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjust the finite entries of p (any shape); NaN stays NaN.

    Equals statsmodels' ``multipletests(p, method="holm")[1]`` (tested), written out in numpy
    because that function runs a full garbage collection per call (0.2 s measured)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        v = p[ok]
        m = v.size
        order = np.argsort(v, kind="mergesort")
        adj = np.maximum.accumulate((m - np.arange(m)) * v[order])
        res = np.empty(m)
        res[order] = np.minimum(adj, 1.0)
        out[ok] = res
    return out


def run_schemes(x: np.ndarray, alpha: float = 0.05) -> dict:
    """Scores and ranks for every scheme plus the Wilcoxon p-value matrices."""
    k = x.shape[0]
    mean = x.mean(axis=1)
    median = np.median(x, axis=1)
    case_ranks = rank_desc(x, axis=0)
    mean_rank = case_ranks.mean(axis=1)
    p_raw = pairwise_greater(x)
    off = ~np.eye(k, dtype=bool)
    p_adj = np.full((k, k), np.nan)
    p_adj[off] = holm(p_raw[off])
    wins = np.nan_to_num(p_adj, nan=1.0) < alpha
    wins[~off] = False
    share = wins.sum(axis=1) / max(k - 1, 1)
    return {
        "scores": {
            "mean_then_rank": mean,
            "median_then_rank": median,
            "rank_then_mean": mean_rank,
            "test_then_rank": share,
        },
        "ranks": {
            "mean_then_rank": rank_desc(mean),
            "median_then_rank": rank_desc(median),
            "rank_then_mean": rank_asc(mean_rank),
            "test_then_rank": rank_desc(share),
        },
        "wilcoxon_p_raw": p_raw,
        "wilcoxon_p_holm": p_adj,
    }
