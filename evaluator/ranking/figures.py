"""Figures of a ranking as SVG strings (matplotlib, no pyplot: safe in worker threads).

Colour-blind-safe Okabe-Ito palette, text kept as SVG text, large point clouds rasterised
inside the SVG to keep files small. Every function accepts a RankingResult or its dict.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .consensus import ConsensusResult, consensus
from .result import RankingResult

OKABE_ITO = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
SCHEME_LABELS = {
    "lmm": "LMM",
    "mean_then_rank": "mean,\nthen rank",
    "median_then_rank": "median,\nthen rank",
    "rank_then_mean": "rank,\nthen mean",
    "test_then_rank": "test,\nthen rank",
}
_RC = {
    "svg.fonttype": "none",
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.labelsize": 10,
    "font.family": "DejaVu Sans",
}


def _result(r: RankingResult | Mapping[str, Any]) -> RankingResult:
    return r if isinstance(r, RankingResult) else RankingResult.from_dict(dict(r))


def _colour(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def _height(k: int) -> float:
    return max(2.6, 0.32 * k + 1.4)


WRAP = 16  # characters per line of a method name under an axis
CHAR_IN = 0.085  # width of an average character at 10 pt DejaVu Sans, inches


def _wrapped(names: list[str]) -> list[str]:
    """Long method names over two or more lines, so tick labels stay narrow."""
    return [textwrap.fill(n, WRAP, break_long_words=True) or n for n in names]


def _x_labels(ax, names: list[str], width_in: float) -> float:
    """Method names under the x axis, never overlapping: wrapped and horizontal when that
    fits, else on one line turned by 45 degrees (90 when ticks are very close). Returns the
    extra figure height in inches the labels need."""
    wrapped = _wrapped(names)
    longest = max((max(len(x) for x in lab.split("\n")) for lab in wrapped), default=1)
    lines = max((lab.count("\n") + 1 for lab in wrapped), default=1)
    per_tick = 0.8 * width_in / max(len(names), 1)
    if longest * CHAR_IN <= 0.9 * per_tick:
        ax.set_xticks(range(len(names)), wrapped)
        return 0.18 * lines
    angle = 45 if per_tick >= 0.3 else 90
    ax.set_xticks(range(len(names)), names, rotation=angle, ha="right", rotation_mode="anchor")
    full = max((len(n) for n in names), default=1)
    return (0.71 if angle == 45 else 1.0) * full * CHAR_IN + 0.2


def _metric_label(res: RankingResult) -> str:
    arrow = "higher is better" if res.higher_is_better else "lower is better"
    return f"{res.metric} ({arrow})"


def _wide(res: RankingResult, table: pd.DataFrame) -> pd.DataFrame:
    """Case x method matrix in result order; missing as the worst value used for ranking."""
    wide = table.assign(method=table["method"].astype(str), case=table["case"].astype(str))
    wide = wide.pivot_table(index="case", columns="method", values=res.metric, aggfunc="first")
    wide = wide.reindex(columns=res.method_names)
    wide = wide.replace([np.inf, -np.inf], np.nan)
    worst = res.settings.get("worst_value")
    return wide.fillna(worst) if worst is not None else wide


def forest_plot(result: RankingResult | Mapping[str, Any]) -> str:
    """LMM estimated mean per method with its 95% CI on the metric scale, tier-coloured."""
    res = _result(result)
    k = res.n_methods
    fig = _figure(7, _height(k))
    ax = fig.add_subplot()
    ypos = np.arange(k)[::-1]
    for m, y in zip(res.methods, ypos, strict=True):
        c = _colour(m.tier - 1)
        if m.ci_low is not None and m.ci_high is not None:
            ax.plot([m.ci_low, m.ci_high], [y, y], color=c, lw=2)
        if m.estimate is not None:
            ax.plot(m.estimate, y, MARKERS[(m.tier - 1) % 8], color=c, ms=7)
    ax.set_yticks(ypos, [f"{m.rank}. {m.method}" for m in res.methods])
    ax.set_xlabel(_metric_label(res) + "; LMM estimate, 95% CI")
    ax.set_title(f"Forest plot: mixed-model estimates ({res.model.model} model)")
    tiers = sorted({m.tier for m in res.methods})
    handles = [
        matplotlib.lines.Line2D([], [], color=_colour(t - 1), marker=MARKERS[(t - 1) % 8], lw=2)
        for t in tiers
    ]
    ax.legend(handles, [f"tier {t}" for t in tiers], loc="best", fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def blob_plot(result: RankingResult | Mapping[str, Any]) -> str:
    """Bootstrap rank distribution: blob area = share of replicates at each rank."""
    res = _result(result)
    k = res.n_methods
    width = max(4.5, 0.6 * k + 2.5)
    fig = _figure(width, 1.0)
    ax = fig.add_subplot()
    b = max(res.bootstrap.n_bootstrap, 1)
    for i, m in enumerate(res.methods):
        counts = np.asarray(m.boot_rank_counts, dtype=float)
        ranks = np.flatnonzero(counts) + 1
        if ranks.size:
            ax.scatter(
                np.full(ranks.size, i),
                ranks,
                s=400 * counts[ranks - 1] / b,
                color=_colour(i),
                alpha=0.75,
                edgecolors="none",
            )
        if m.boot_rank_low is not None:
            ax.plot([i, i], [m.boot_rank_low, m.boot_rank_high], color="black", lw=1)
            ax.plot(i, m.boot_rank_median, "x", color="black", ms=6)
    ax.plot(range(k), [m.rank for m in res.methods], "_", color="#D55E00", ms=14, mew=2)
    extra = _x_labels(ax, res.method_names, width)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylim(k + 0.7, 0.3)
    ax.set_yticks(range(1, k + 1))
    ax.set_ylabel("rank (1 = best)")
    ax.set_xlabel("method (in LMM rank order)")
    ax.set_title(f"Rank stability ({res.bootstrap.n_bootstrap} subject bootstraps)")
    key = [
        matplotlib.lines.Line2D([], [], ls="", marker="o", color="#999999", ms=8),
        matplotlib.lines.Line2D([], [], ls="", marker="x", color="black", ms=6),
        matplotlib.lines.Line2D([], [], color="black", lw=1),
        matplotlib.lines.Line2D([], [], ls="", marker="_", color="#D55E00", ms=12, mew=2),
    ]
    fig.legend(
        key,
        ["share of replicates (area)", "median rank", "95% interval", "LMM rank"],
        loc="outside lower center",
        ncols=2,
        fontsize=8,
        frameon=False,
    )
    ax.grid(alpha=0.3)
    fig.set_figheight(max(3.0, 0.32 * k + 1.6) + extra + 0.5)
    return _svg(fig)


def significance_map(result: RankingResult | Mapping[str, Any], kind: str = "lmm") -> str:
    """Pairwise significance (Holm): row significantly better / worse than column.

    kind="lmm" uses the LMM contrasts; kind="wilcoxon" the one-sided Wilcoxon tests.
    """
    res = _result(result)
    k = res.n_methods
    alpha = res.settings.get("alpha", 0.05)
    if kind == "lmm":
        mat = np.asarray(res.significance, dtype=float).reshape(k, k)
        title = "LMM contrasts (Wald z, Holm)"
    elif kind == "wilcoxon":
        p = np.array([[np.nan if v is None else v for v in row] for row in res.wilcoxon_p_holm])
        p = p.reshape(k, k)
        mat = np.where(p < alpha, 1.0, 0.0)
        mat = mat - mat.T
        title = "one-sided paired Wilcoxon (Holm)"
    else:
        raise ValueError("kind must be 'lmm' or 'wilcoxon'")
    cmap = matplotlib.colors.ListedColormap(["#E69F00", "#EEEEEE", "#0072B2"])
    width = max(4.2, 0.5 * k + 3.2)
    fig = _figure(width, 1.0)
    ax = fig.add_subplot()
    ax.imshow(mat + 1, cmap=cmap, vmin=0, vmax=2)
    extra = _x_labels(ax, res.method_names, 0.5 * width)
    ax.set_yticks(range(k), _wrapped(res.method_names))
    ax.set_xlabel("compared with (column)")
    ax.set_ylabel("method (row)")
    ax.set_title(f"Significance map: {title}, alpha={alpha:g}", fontsize=10)
    patches = [
        matplotlib.patches.Patch(color="#0072B2", label="row significantly better"),
        matplotlib.patches.Patch(color="#EEEEEE", label="not significant"),
        matplotlib.patches.Patch(color="#E69F00", label="row significantly worse"),
    ]
    fig.legend(handles=patches, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    lines = max((lab.count("\n") + 1 for lab in _wrapped(res.method_names)), default=1)
    fig.set_figheight(max(3.2, (0.17 * lines + 0.15) * k + 1.8) + extra)
    return _svg(fig)


def podium_plot(result: RankingResult | Mapping[str, Any], table: pd.DataFrame) -> str:
    """Per-case podium: each case's score placed at the place the method took on that case,
    with how often each method took each place below (challengeR's podium idea)."""
    res = _result(result)
    k = res.n_methods
    wide = _wide(res, table)
    vals = wide.to_numpy(dtype=float)
    oriented = vals if res.higher_is_better else -vals
    oriented = np.where(np.isnan(oriented), -np.inf, oriented)
    places = pd.DataFrame(oriented).rank(axis=1, method="min", ascending=False).to_numpy()
    fig = _figure(max(5.0, 0.6 * k + 3), 6 + 0.2 * ((k + 2) // 3))
    top, bottom = fig.subplots(2, 1, height_ratios=[2, 1], sharex=True)
    rng = np.random.default_rng(0)
    width = 0.8 / k
    for i, name in enumerate(res.method_names):
        x = places[:, i] - 0.4 + width * (i + 0.5)
        jit = rng.uniform(-width / 3, width / 3, x.size)
        top.scatter(
            x + jit,
            vals[:, i],
            s=8,
            color=_colour(i),
            marker=MARKERS[i % 8],
            alpha=0.6,
            label=name,
            rasterized=True,
            edgecolors="none",
        )
        share = np.array([(places[:, i] == p).mean() for p in range(1, k + 1)])
        bottom.bar(
            np.arange(1, k + 1) - 0.4 + width * (i + 0.5), share, width=width, color=_colour(i)
        )
    top.set_ylabel(_metric_label(res))
    top.set_title("Podium: case scores at the place achieved on each case")
    fig.legend(
        loc="outside lower center", ncols=min(k, 3), fontsize=8, frameon=False, markerscale=2
    )
    bottom.set_xticks(range(1, k + 1))
    bottom.set_xlabel("place on a case (1 = best, ties 'min')")
    bottom.set_ylabel("share of cases")
    top.grid(alpha=0.3)
    return _svg(fig)


def dot_box_plot(result: RankingResult | Mapping[str, Any], table: pd.DataFrame) -> str:
    """Case scores per method: box plot with the individual cases as dots, LMM order."""
    res = _result(result)
    k = res.n_methods
    wide = _wide(res, table)
    width = max(4.5, 0.6 * k + 2.5)
    fig = _figure(width, 1.0)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    data = [wide[c].dropna().to_numpy(dtype=float) for c in wide.columns]
    ax.boxplot(
        data, positions=range(k), widths=0.55, showfliers=False, medianprops={"color": "black"}
    )
    for i, d in enumerate(data):
        ax.scatter(
            i + rng.uniform(-0.2, 0.2, d.size),
            d,
            s=6,
            color=_colour(i),
            alpha=0.5,
            rasterized=True,
            edgecolors="none",
        )
        if d.size:
            ax.plot(i, d.mean(), "D", color="#D55E00", ms=5)
    extra = _x_labels(ax, res.method_names, width)
    ax.set_ylabel(_metric_label(res))
    ax.set_xlabel("method (in LMM rank order); red diamond = mean")
    ax.set_title("Case scores per method\n(missing cases at the worst value)")
    ax.grid(axis="y", alpha=0.3)
    fig.set_figheight(4.2 + extra)
    return _svg(fig)


def scheme_lines(result: RankingResult | Mapping[str, Any]) -> str:
    """Rank of every method under each ranking scheme (LMM and challengeR schemes)."""
    res = _result(result)
    k = res.n_methods
    keys = ["lmm", *res.methods[0].scheme_ranks] if res.methods else ["lmm"]
    fig = _figure(max(6.0, 1.2 * len(keys) + 2), _height(k) + 0.5)
    ax = fig.add_subplot()
    for i, m in enumerate(res.methods):
        ranks = [m.rank] + [m.scheme_ranks[s] for s in keys[1:]]
        ax.plot(
            range(len(keys)),
            ranks,
            marker=MARKERS[i % 8],
            color=_colour(i),
            lw=1.5,
            label=f"{m.rank}. {m.method}",
        )
    ax.set_xticks(range(len(keys)), [SCHEME_LABELS.get(s, s) for s in keys])
    ax.set_xlim(-0.3, len(keys) - 0.3)
    ax.set_ylim(k + 0.5, 0.5)
    ax.set_yticks(range(1, k + 1))
    ax.set_ylabel("rank (1 = best)")
    ax.set_title("Ranks across ranking schemes")
    ax.grid(alpha=0.3)
    # A legend, not labels at the line ends: methods tied under a scheme end at one point.
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.set_figheight(_height(k) + 0.5 + 0.2 * ((k + 1) // 2))
    return _svg(fig)


def rank_heatmap(
    results: ConsensusResult | Mapping[str, Any],
) -> str:
    """Ranks per task (columns) and the consensus (last column), methods in consensus order.

    Accepts a ConsensusResult, its dict, or a mapping task -> RankingResult / rank table.
    """
    if isinstance(results, ConsensusResult):
        cons = results
    elif isinstance(results, Mapping) and "task_ranks" in results and "rank_key" in results:
        cons = ConsensusResult.from_dict(dict(results))
    else:
        cons = consensus(results)
    methods, tasks = cons.methods, cons.tasks
    k, nt = len(methods), len(tasks)
    mat = np.array(
        [
            [np.nan if cons.task_ranks[t][m] is None else cons.task_ranks[t][m] for t in tasks]
            + [cons.rank[m]]
            for m in methods
        ],
        dtype=float,
    ).reshape(k, nt + 1)
    width = max(4.5, 0.8 * (nt + 1) + 3.5)
    fig = _figure(width, _height(k))
    ax = fig.add_subplot()
    im = ax.imshow(mat, cmap="viridis_r", vmin=1, vmax=max(k, 2), aspect="auto")
    for (r, c), v in np.ndenumerate(mat):
        if np.isfinite(v):
            ax.text(
                c,
                r,
                f"{int(v)}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v < (k + 1) / 2 else "black",
            )
    extra = _x_labels(ax, [*tasks, "consensus"], 0.6 * width)
    ax.set_yticks(range(k), _wrapped(list(methods)))
    ax.axvline(nt - 0.5, color="white", lw=3)
    ax.set_title("Ranks per task and consensus (mean rank)")
    fig.colorbar(im, ax=ax, label="rank (1 = best)", shrink=0.8)
    lines = max((lab.count("\n") + 1 for lab in _wrapped(list(methods))), default=1)
    fig.set_figheight(max(_height(k), (0.17 * lines + 0.15) * k + 1.4) + extra)
    return _svg(fig)


ALL_FIGURES = {
    "forest": forest_plot,
    "blob": blob_plot,
    "significance": significance_map,
    "scheme_lines": scheme_lines,
}
TABLE_FIGURES = {"podium": podium_plot, "dot_box": dot_box_plot}
