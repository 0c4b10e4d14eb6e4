"""Which leaderboard rows a viewer may read, for pages, exports and the API alike.

All rows where results are public (and for organizers); a team's own rows on team-only
phases; nothing on hidden phases before they are published (rules in challenges.permissions).
"""

from __future__ import annotations

from challenges.models import Phase
from challenges.permissions import can_view_leaderboard, is_organizer, owns
from submissions.models import Submission

from .leaderboard import SORT_KEYS, render_fragment
from .models import RankingSnapshot


def sees_all_rows(user, phase: Phase) -> bool:
    return phase.results_public() or is_organizer(user, phase.challenge)


def own_ids(user, phase: Phase, snap: RankingSnapshot) -> set[int]:
    """Ids of the viewer's (or the viewer's team's) ranked submissions on a team-only phase."""
    if phase.visibility != "team" or not user.is_authenticated:
        return set()
    subs = Submission.objects.filter(pk__in=snap.submission_ids).select_related("team")
    return {s.pk for s in subs if owns(user, s)}


def visible_rows(user, phase: Phase, snap: RankingSnapshot | None) -> list[dict]:
    if snap is None:
        return []
    if sees_all_rows(user, phase):
        return snap.rows
    mine = own_ids(user, phase, snap)
    return [r for r in snap.rows if r["submission_id"] in mine]


def can_see_some_rows(user, phase: Phase) -> bool:
    return can_view_leaderboard(user, phase) or (
        phase.visibility == "team" and user.is_authenticated
    )


def leaderboard_context(
    user,
    phase: Phase,
    snap: RankingSnapshot | None,
    *,
    q: str = "",
    sort: str = "rank",
    permalink: bool = False,
) -> dict:
    """Context for the leaderboard section: the rendered (cached) fragment plus its inputs.

    The visibility class decides which cached fragment a viewer gets: everyone who may see
    all rows shares one; on team-only phases the class is the set of own submissions."""
    q = q.strip().lower()[:100]
    if sort.lstrip("-") not in SORT_KEYS:
        sort = "rank"
    full = sees_all_rows(user, phase)
    if full:
        vis, rows_for = "all", (lambda s: s.rows)
    else:
        mine = own_ids(user, phase, snap) if snap is not None else set()
        vis = "team:" + ",".join(map(str, sorted(mine)))
        rows_for = lambda s: [r for r in s.rows if r["submission_id"] in mine]  # noqa: E731
    html = render_fragment(
        phase=phase, snap=snap, rows_for=rows_for, vis=vis, full=full, q=q, sort=sort,
        permalink=permalink,
    )  # fmt: skip
    return {"snapshot": snap, "q": q, "sort": sort, "leaderboard_html": html, "full": full}
