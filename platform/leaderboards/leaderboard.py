"""The leaderboard fragment of a phase page, rendered once per snapshot and viewer class.

Why a fragment cache: snapshots are immutable, so the rendered table for (snapshot id,
visibility class, filter, sort) never goes stale; a new ranking gets a new id. A small
per-process LRU answers most requests without touching the cache backend; the shared cache
(file cache or Redis) spares the other web workers the first render.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from django.core.cache import cache
from django.template.loader import render_to_string

from evaluator.metrics import HIGHER_IS_BETTER

from .models import RankingSnapshot
from .rows import REPORTED_METRICS, LeaderboardRow, ranked_metrics, rows_from_snapshot
from .services import task_metric

BASE_SORT_KEYS = {"rank", "tier", "team", "method", "submitted", "n_failed", "n_cases"}
#: Columns a leaderboard sorts by: the base columns and any metric column.
SORT_KEYS = BASE_SORT_KEYS | set(HIGHER_IS_BETTER)
LOCAL_MAX = 512
# Off only to measure what the cache saves (bench/bench_leaderboard.py).
ENABLED = os.environ.get("XENOBENCH_FRAGMENT_CACHE", "1") != "0"


class _Fragment:
    """Key of the per-process fragment cache. It carries how to build the HTML on a miss,
    which takes no part in equality, so functools.lru_cache keys on the string alone."""

    __slots__ = ("build", "key")

    def __init__(self, key: str, build: Callable[[], str] | None) -> None:
        self.key, self.build = key, build

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Fragment) and other.key == self.key


@functools.lru_cache(maxsize=LOCAL_MAX)
def _local_fragment(req: _Fragment) -> str:
    html = req.build()
    req.build = None  # the cached key must not keep the page's objects alive
    return html


#: Plain names of the engine's models (evaluator.ranking.lmm.MODELS).
MODEL_NAMES: dict[str, str] = {
    "full": "linear mixed model (random effects for subject, image within subject and "
    "subject \u00d7 method)",
    "no_sm": "simplified mixed model without the subject \u00d7 method term (random effects "
    "for subject and image within subject)",
    "no_case": "simplified mixed model with a subject random effect only",
    "case_only": "mixed model with an image random effect (one subject only)",
    "paired_means": "fallback without a mixed model: plain method means with a cluster-robust "
    "(sandwich) covariance over subjects",
    "identical": "no model: every method has the same score on every image",
    "none": "no model: a single image leaves no uncertainty to estimate",
}
#: The tests of a ranking in plain words, by ModelInfo.ddf.
TEST_WORDS: dict[str, str] = {
    "satterthwaite": "t tests and intervals with Satterthwaite degrees of freedom",
    "wald": "Wald z tests and intervals (normal reference, no small-sample correction)",
    "cluster": "t tests and intervals with (subjects \u2212 1) degrees of freedom on a "
    "cluster-robust covariance",
    "none": "no tests",
}
#: Below this many test subjects a phase carries a visible small-sample warning.
MIN_SUBJECTS = 6


def describe_model(result: dict | None, alpha: float | None = None) -> dict[str, Any]:
    """What the pages say about the model a ranking actually used, from a stored result
    (``RankingResult.to_dict()``): its plain name, the test, whether and why it fell back
    from the full mixed model, and the small-sample warning."""
    result = result or {}
    model = result.get("model") or {}
    name = model.get("model")
    methods = result.get("methods") or []
    dfs = [m.get("df") for m in methods if m.get("df") is not None]
    ddf = model.get("ddf") or ("satterthwaite" if dfs else None)  # None: stored before df
    if name in ("identical", "none") or not name:
        ddf = "none"
    test = TEST_WORDS.get(ddf) or model.get("test") or TEST_WORDS["wald"]
    reason = model.get("fallback_reason")
    if not reason and name not in (None, "full", "identical", "none"):
        fallbacks = model.get("fallbacks") or []
        reason = fallbacks[-1] if fallbacks else None
        if name == "case_only" and not reason:
            reason = "the phase has a single test subject"
    n_subjects = result.get("n_subjects")
    return {
        "key": name,
        "name": MODEL_NAMES.get(name, name or "no ranking model"),
        "fallback": name not in (None, "full", "identical", "none"),
        "reason": reason,
        "test": test,
        "ddf": ddf or "wald",
        "df_min": min(dfs) if dfs else None,
        "df_max": max(dfs) if dfs else None,
        "warnings": list(model.get("fit_warnings") or []),
        "n_subjects": n_subjects,
        "small_sample": n_subjects is not None and 0 < n_subjects < MIN_SUBJECTS,
        "alpha": alpha if alpha is not None else (result.get("settings") or {}).get("alpha"),
    }


def clear_local_cache() -> None:
    _local_fragment.cache_clear()


def filter_and_sort(rows: list[LeaderboardRow], q: str, sort: str) -> list[LeaderboardRow]:
    """Rows whose team or method contains ``q``, ordered by a column (``-col``: descending).
    Columns sort by value; the default order (rank) already honours the metric's direction."""
    if q:
        rows = [r for r in rows if q in r.team.lower() or q in r.method.lower()]
    key = sort.lstrip("-")
    if key in SORT_KEYS:
        rows = sorted(
            rows,
            key=lambda r: (r.sort_value(key) is None, r.sort_value(key) or 0),
            reverse=sort.startswith("-"),
        )
    return rows


def _table(
    tid: str, title: str, cols: list[str], data: dict, rows: Sequence[LeaderboardRow]
) -> dict | None:
    body = []
    for r in rows:
        vals = data.get(str(r.submission_id))
        if vals is None:
            continue
        body.append({"row": r, "values": [vals.get(c) for c in cols]})
    if not body or not cols:
        return None
    return {"id": tid, "title": title, "columns": cols, "rows": body}


def _metrics_of(breakdowns: dict, primary: str | None) -> list[str]:
    present = set()
    for part in ("by_label", "by_state", "by_species"):
        present |= set(breakdowns.get(part, {}))
    order = [primary, *REPORTED_METRICS] if primary else list(REPORTED_METRICS)
    ordered = [m for m in dict.fromkeys(order) if m in present]
    return ordered + sorted(present - set(ordered))


def breakdown_tables(
    breakdowns: dict,
    rows: Sequence[LeaderboardRow],
    label_names: list[str],
    primary: str | None = None,
) -> list[dict]:
    """Per organ, per tissue state and (when there are several) per species, for each
    stored metric (the primary one first), for the given rows only (visibility is applied
    by the caller)."""
    metrics = _metrics_of(breakdowns, primary)
    out = []
    for metric in metrics:
        m = metric.upper()
        by_label = breakdowns.get("by_label", {}).get(metric, {})
        present = {k for v in by_label.values() for k, x in v.items() if x is not None}
        organs = [n for n in label_names if n in present] + sorted(present - set(label_names))
        out.append(_table(f"organ-{metric}", f"Per organ · {m}", organs, by_label, rows))
    for metric in metrics:
        by_state = breakdowns.get("by_state", {}).get(metric, {})
        states = sorted({k for v in by_state.values() for k in v})
        out.append(
            _table(
                f"state-{metric}", f"Per tissue state · {metric.upper()}", states, by_state, rows
            )
        )
    for metric in metrics:
        by_species = breakdowns.get("by_species", {}).get(metric, {})
        species = sorted({k for v in by_species.values() for k in v})
        if len(species) > 1:
            out.append(
                _table(
                    f"species-{metric}",
                    f"Per species · {metric.upper()}",
                    species,
                    by_species,
                    rows,
                )
            )
    return [t for t in out if t]


def fragment_key(snap: RankingSnapshot, vis: str, q: str, sort: str, permalink: bool) -> str:
    # created_at too: primary keys can be reused (e.g. after a rolled-back test transaction).
    raw = f"{snap.phase_id}|{snap.version}|{snap.created_at.isoformat()}|{vis}|{q}|{sort}|{int(permalink)}"
    return f"lbfrag:v4:{snap.pk}:{hashlib.sha1(raw.encode()).hexdigest()}"


def render_fragment(
    *,
    phase,
    snap: RankingSnapshot | None,
    rows_for,
    vis: str,
    full: bool,
    q: str,
    sort: str,
    permalink: bool = False,
) -> str:
    """HTML of the leaderboard section. rows_for(snap) returns the rows the viewer may see;
    it only runs on a cache miss."""
    if snap is None:
        return render_to_string(
            "leaderboards/_leaderboard.html", {"phase": phase, "snapshot": None, "full": full}
        )
    if not ENABLED:
        return _render(phase, snap, rows_for(snap), full=full, q=q, sort=sort, permalink=permalink)
    key = fragment_key(snap, vis, q, sort, permalink)

    def shared() -> str:
        html = cache.get(key)
        if html is None:
            html = _render(
                phase, snap, rows_for(snap), full=full, q=q, sort=sort, permalink=permalink
            )
            cache.set(key, html, timeout=24 * 3600)
        return html

    return _local_fragment(_Fragment(key, shared))


def metric_columns(phase, rows: Sequence[LeaderboardRow]) -> list[str]:
    """The metric columns of a table: its rows' metrics, else the task's."""
    if rows:
        return list(rows[0].metric_names)
    return list(ranked_metrics(task_metric(phase.task)[0]))


def _render(phase, snap, visible: list[dict], *, full, q, sort, permalink) -> str:
    primary = task_metric(phase.task)[0]
    typed = rows_from_snapshot(visible, primary)
    rows = filter_and_sort(typed, q, sort)
    columns = metric_columns(phase, typed)
    primary = typed[0].primary_metric if typed else primary
    links = _sort_links(sort, columns)
    tables = breakdown_tables(snap.breakdowns, rows, phase.task.label_names, primary)
    latest = phase.snapshots.order_by("-version").values_list("version", flat=True).first()
    model = describe_model((snap.result or {}).get(primary))
    ctx: dict[str, Any] = {
        "phase": phase,
        "task": phase.task,
        "challenge": phase.challenge,
        "snapshot": snap,
        "rows": rows,
        "n_visible": len(visible),
        "primary": primary,
        "higher_is_better": HIGHER_IS_BETTER.get(primary, True),
        "model": model,
        "metric_headers": [{"name": m, "label": m.upper(), "sort": links[m]} for m in columns],
        "full": full,
        "q": q,
        "sort": sort,
        "permalink": permalink,
        "latest_version": latest,
        "breakdowns": tables,
        "species_breakdown": any(t["id"].startswith("species-") for t in tables),
        "sort_links": links,
        "versions": list(phase.snapshots.order_by("-version").values("version", "created_at")[:20])
        if full
        else [],
    }
    return render_to_string("leaderboards/_leaderboard.html", ctx)


def _sort_links(current: str, metrics: Sequence[str] = REPORTED_METRICS) -> dict[str, str]:
    """?sort= targets for the header links (used without JavaScript): toggles direction."""
    return {k: f"-{k}" if current == k else k for k in (*BASE_SORT_KEYS, *metrics)}
