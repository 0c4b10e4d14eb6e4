"""One typed leaderboard row: the page, the API, the CSV and the JSON export (and the report)
carry the same columns and values for the same snapshot, old stored rows included."""

from __future__ import annotations

import csv
import html as htmllib
import io
import re

import pytest

from leaderboards.models import RankingSnapshot
from leaderboards.rows import (
    EXPORT_COLUMNS,
    LeaderboardRow,
    MetricEstimate,
    export_columns,
    ranked_metrics,
)
from tests.platform.leaderboards.synthetic import ranked_phase

pytestmark = pytest.mark.django_db


def page_rows(page: str) -> list[list[str]]:
    table = page.split('id="leaderboard"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.S)
        rows.append([htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def exports(client, phase, version: int | None = None):
    q = f"?version={version}" if version else ""
    url = phase.get_absolute_url()
    text = client.get(url + "leaderboard.csv" + q).content.decode()
    reader = csv.DictReader(io.StringIO(text))
    return reader.fieldnames, list(reader), client.get(url + "leaderboard.json" + q).json()


def test_page_api_csv_and_json_carry_the_same_row(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    header, csv_rows, data = exports(client, phase)
    api = client.get(f"/api/phases/{phase.pk}/leaderboard/").json()
    assert header == EXPORT_COLUMNS == export_columns(ranked_metrics("dsc"))
    assert data["primary_metric"] == api["primary_metric"] == "dsc"
    assert [list(r) for r in data["rows"]] == [EXPORT_COLUMNS] * 3
    assert api["rows"] == data["rows"]  # the API and the JSON export are one serialisation
    for c, j in zip(csv_rows, data["rows"], strict=True):
        assert c == {k: "" if v is None else str(v) for k, v in j.items()}
    typed = [LeaderboardRow.from_snapshot_dict(r) for r in snap.rows]
    assert [t.to_export() for t in typed] == data["rows"]

    shown = page_rows(client.get(phase.get_absolute_url()).content.decode())
    assert len(shown) == 3
    for cells, j in zip(shown, data["rows"], strict=True):
        rank, tier, team, method, dsc, nsd, raw, tier_p, interval, n_cases, n_failed, submitted = (
            cells
        )
        assert (rank, tier, team, method) == (
            str(j["rank"]),
            str(j["tier"]),
            j["team"],
            j["method"],
        )
        assert dsc == f"{fmt(j['dsc'])} [{fmt(j['dsc_ci_low'])}, {fmt(j['dsc_ci_high'])}]"
        assert nsd == f"{fmt(j['nsd'])} [{fmt(j['nsd_ci_low'])}, {fmt(j['nsd_ci_high'])}]"
        assert interval == f"{j['rank_interval_low']}–{j['rank_interval_high']}"
        stored = next(r for r in snap.rows if r["submission_id"] == j["submission_id"])
        assert raw == fmt(stored["dsc_score"])
        assert tier_p.startswith("leader" if j["rank"] == 1 else fmt(stored["tier_test"]["p_holm"]))
        assert (n_cases, n_failed) == (str(j["n_cases"]), str(j["n_failed"]))
        assert submitted == j["submitted"][:10]

    report = client.get(phase.get_absolute_url() + "report/").content.decode()
    for j in data["rows"]:
        assert f"{j['team']} / {j['method']}" in report
        assert f"{fmt(j['dsc'])} [{fmt(j['dsc_ci_low'])}, {fmt(j['dsc_ci_high'])}]" in report


def test_rows_ranked_by_the_primary_metric_with_the_secondary_alongside():
    ch, phase, subs, snap = ranked_phase(n=3)
    rows = [LeaderboardRow.from_snapshot_dict(r) for r in snap.rows]
    assert [r.rank for r in rows] == sorted(r.rank for r in rows)
    assert all(r.primary_metric == "dsc" and r.metric_names == ("dsc", "nsd") for r in rows)
    result = snap.result["dsc"]["methods"]
    by_label = {m["method"]: m for m in result}
    for r in rows:
        m = by_label[r.label]
        assert (r.rank, r.tier, r.estimate) == (m["rank"], m["tier"], m["estimate"])
        assert r.rank_interval == (m["boot_rank_low"], m["boot_rank_high"])
        assert r.metric("nsd").estimate is not None


def test_snapshots_stored_before_the_typed_row_still_render(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    header, csv_new, json_new = exports(client, phase, snap.version)
    page_new = page_rows(client.get(phase.get_absolute_url()).content.decode())
    legacy_keys = {"primary_metric", "metrics"}
    old = RankingSnapshot.objects.create(
        phase=phase, version=snap.version + 1, settings=snap.settings,
        submission_ids=snap.submission_ids, result=snap.result, breakdowns=snap.breakdowns,
        rows=[{k: v for k, v in r.items() if k not in legacy_keys} for r in snap.rows],
    )  # fmt: skip
    old_header, csv_old, json_old = exports(client, phase, old.version)
    assert (old_header, csv_old) == (header, csv_new)
    assert json_old["rows"] == json_new["rows"]
    assert page_rows(client.get(phase.get_absolute_url()).content.decode()) == page_new
    method = client.get(f"/methods/{subs[0].pk}/").content.decode()
    assert "DSC (model-based mean, 95% CI), ranked by" in method


def test_row_round_trip_and_tolerant_reading():
    row = LeaderboardRow(
        submission_id=7, team="T", method="M", primary_metric="nsd",
        metrics=(MetricEstimate("nsd", 0.8, 0.7, 0.9, 0.79), MetricEstimate("dsc", 0.6, 0.5, 0.7)),
        rank=1, tier=1, rank_interval=(1, 2), n_cases=4, n_failed=1,
        submitted_at="2026-01-02T03:04:05+00:00",
    )  # fmt: skip
    stored = row.to_dict()
    assert LeaderboardRow.from_snapshot_dict(stored) == row
    assert stored["nsd"] == 0.8 and stored["dsc_ci"] == [0.5, 0.7]  # older readers' keys
    flat = row.to_export()
    assert list(flat) == export_columns(("nsd", "dsc")) == row.export_columns()
    assert flat["primary_metric"] == "nsd" and flat["nsd_ci_high"] == 0.9
    # An old stored row: no primary_metric, no metrics list, missing optional keys.
    old = {"submission_id": 3, "team": "T", "method": "M", "rank": 2, "dsc": 0.5,
           "dsc_ci": [0.4, 0.6], "nsd": 0.7, "submitted": "2025-01-01"}  # fmt: skip
    typed = LeaderboardRow.from_snapshot_dict(old, primary_metric="nsd")
    assert typed.primary_metric == "nsd" and typed.metric_names == ("nsd", "dsc")
    assert typed.primary.estimate == 0.7 and typed.primary.ci == (None, None)
    assert typed.metric("dsc").ci == (0.4, 0.6) and typed.rank_interval == (None, None)
    assert LeaderboardRow.from_snapshot_dict(old).primary_metric == "dsc"
    assert typed.sort_value("submitted") == "2025-01-01" and typed.sort_value("dsc") == 0.5


def test_a_lower_is_better_primary_metric_ranks_ascending(client):
    """Rank, tier and order follow the primary metric's direction (here HD95, lower is
    better), the other metrics shown alongside; pages and exports name the metric."""
    import numpy as np

    from leaderboards.services import build_snapshot
    from submissions.models import CaseScore

    from .test_rules import phase_with, submit, user

    phase = phase_with("best", primary="hd95")
    phase.task.ranking_settings = {"n_bootstrap": 20}
    phase.task.save()
    rng = np.random.default_rng(0)
    subs = []
    for i, base in enumerate([30.0, 5.0, 15.0]):  # the second method is closest
        scores = [(f"S{s}", "liver", 0.8) for s in range(5) for _ in range(2)]
        sub = submit(phase, user(f"u{i}"), scores, hd95=0.0)
        for ls in sub.label_scores.all():
            ls.hd95 = base + rng.normal(0, 1.0)
            ls.save()
            CaseScore.objects.create(
                submission=sub, case_id=ls.case_id, subject=ls.subject, dsc=ls.dsc, nsd=ls.nsd
            )
        subs.append(sub)
    snap = build_snapshot(phase)
    settings = snap.result["hd95"]["settings"]
    assert settings["higher_is_better"] is False and settings["bounded"] is False
    rows = [LeaderboardRow.from_snapshot_dict(r) for r in snap.rows]
    assert [r.submission_id for r in rows] == [subs[1].pk, subs[2].pk, subs[0].pk]
    assert [r.rank for r in rows] == [1, 2, 3]
    assert rows[0].metric_names == ("hd95", "dsc", "nsd")
    assert rows[0].estimate < rows[1].estimate < rows[2].estimate
    header, csv_rows, data = exports(client, phase)
    assert header == export_columns(("hd95", "dsc", "nsd"))
    assert data["primary_metric"] == "hd95" and data["rows"][0]["submission_id"] == subs[1].pk
    page = client.get(phase.get_absolute_url()).content.decode()
    assert "ranked by HD95 (lower is better)" in page and "HD95 [95% CI]" in page
    method = client.get(f"/methods/{subs[1].pk}/").content.decode()
    assert "HD95 (model-based mean, 95% CI), ranked by" in method
    report = client.get(phase.get_absolute_url() + "report/").content.decode()
    assert "Primary metric HD95 (rank and tier follow it; lower is better)" in report
    # which classes an image is scored on: the task's convention, on the ranking and report
    assert data["scored_classes"] == phase.task.scored_classes == "reference"
    for html in (page, report):
        assert 'class="scored-classes"' in html and "as in htc and the xeno-learning study" in html
