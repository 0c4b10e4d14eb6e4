"""The leaderboard fragment of a phase page, rendered once per snapshot and viewer class.

Why a fragment cache: snapshots are immutable, so the rendered table for (snapshot id,
visibility class, filter, sort) never goes stale; a new ranking gets a new id. A small
per-process LRU answers most requests without touching the cache backend; the shared cache
(file cache or Redis) spares the other web workers the first render.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Any

from django.core.cache import cache
from django.template.loader import render_to_string

from .models import RankingSnapshot

SORT_KEYS = {"rank", "tier", "dsc", "nsd", "team", "method", "submitted", "n_failed", "n_cases"}
LOCAL_MAX = 512
# Off only to measure what the cache saves (bench/bench_leaderboard.py).
ENABLED = os.environ.get("XENOBENCH_FRAGMENT_CACHE", "1") != "0"
_local: OrderedDict[str, str] = OrderedDict()


def _local_get(key: str) -> str | None:
    html = _local.get(key)
    if html is not None:
        _local.move_to_end(key)
    return html


def _local_put(key: str, html: str) -> None:
    _local[key] = html
    _local.move_to_end(key)
    while len(_local) > LOCAL_MAX:
        _local.popitem(last=False)


def clear_local_cache() -> None:
    _local.clear()


def filter_and_sort(rows: list[dict], q: str, sort: str) -> list[dict]:
    if q:
        rows = [r for r in rows if q in r["team"].lower() or q in r["method"].lower()]
    key = sort.lstrip("-")
    if key in SORT_KEYS:
        rows = sorted(
            rows,
            key=lambda r: (r.get(key) is None, r.get(key) or 0),
            reverse=sort.startswith("-"),
        )
    return rows


def _table(tid: str, title: str, cols: list[str], data: dict, rows: list[dict]) -> dict | None:
    body = []
    for r in rows:
        vals = data.get(str(r["submission_id"]))
        if vals is None:
            continue
        body.append({"row": r, "values": [vals.get(c) for c in cols]})
    if not body or not cols:
        return None
    return {"id": tid, "title": title, "columns": cols, "rows": body}


def breakdown_tables(breakdowns: dict, rows: list[dict], label_names: list[str]) -> list[dict]:
    """Per organ, per tissue state and (when there are several) per species, DSC and NSD,
    for the given rows only (visibility is applied by the caller)."""
    out = []
    for metric in ("dsc", "nsd"):
        m = metric.upper()
        by_label = breakdowns.get("by_label", {}).get(metric, {})
        present = {k for v in by_label.values() for k, x in v.items() if x is not None}
        organs = [n for n in label_names if n in present] + sorted(present - set(label_names))
        out.append(_table(f"organ-{metric}", f"Per organ · {m}", organs, by_label, rows))
    for metric in ("dsc", "nsd"):
        by_state = breakdowns.get("by_state", {}).get(metric, {})
        states = sorted({k for v in by_state.values() for k in v})
        out.append(
            _table(
                f"state-{metric}", f"Per tissue state · {metric.upper()}", states, by_state, rows
            )
        )
    for metric in ("dsc", "nsd"):
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
    return f"lbfrag:v2:{snap.pk}:{hashlib.sha1(raw.encode()).hexdigest()}"


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
    html = _local_get(key)
    if html is not None:
        return html
    html = cache.get(key)
    if html is None:
        html = _render(phase, snap, rows_for(snap), full=full, q=q, sort=sort, permalink=permalink)
        cache.set(key, html, timeout=24 * 3600)
    _local_put(key, html)
    return html


def _render(phase, snap, visible: list[dict], *, full, q, sort, permalink) -> str:
    rows = filter_and_sort(visible, q, sort)
    latest = phase.snapshots.order_by("-version").values_list("version", flat=True).first()
    ctx: dict[str, Any] = {
        "phase": phase,
        "task": phase.task,
        "challenge": phase.challenge,
        "snapshot": snap,
        "rows": rows,
        "n_visible": len(visible),
        "full": full,
        "q": q,
        "sort": sort,
        "permalink": permalink,
        "latest_version": latest,
        "breakdowns": breakdown_tables(snap.breakdowns, rows, phase.task.label_names),
        "sort_links": _sort_links(sort),
        "versions": list(phase.snapshots.order_by("-version").values("version", "created_at")[:20])
        if full
        else [],
    }
    return render_to_string("leaderboards/_leaderboard.html", ctx)


def _sort_links(current: str) -> dict[str, str]:
    """?sort= targets for the header links (used without JavaScript): toggles direction."""
    out = {}
    for k in SORT_KEYS:
        out[k] = f"-{k}" if current == k else k
    return out
