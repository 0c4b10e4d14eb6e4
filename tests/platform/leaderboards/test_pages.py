"""Leaderboard pages, method pages, reports and exports: content, visibility and caching.

Scores are synthetic (tests/platform/leaderboards/synthetic.py) but ranked by the real statistics engine."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from challenges.models import Phase, Task
from leaderboards.leaderboard import clear_local_cache
from submissions.services import join_challenge

from ..builders import LABELS
from .synthetic import add_scored_submissions, ranked_phase, rebuild

pytestmark = pytest.mark.django_db


def body(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    return resp.content.decode()


def lb_rows(html: str) -> list[str]:
    table = html.split('id="leaderboard"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<a href="/methods/\d+/">([^<]+)</a>', table)


def test_leaderboard_page_columns_breakdowns_changes_and_permalinks(client):
    ch, phase, subs, snap = ranked_phase(species=("human", "pig"))
    html = body(client.get(phase.get_absolute_url()))
    for text in ("DSC [95% CI]", "NSD [95% CI]", "Rank interval", "Tier", "Failed", "Submitted"):
        assert text in html
    assert lb_rows(html)[0] == "method A"  # the synthetic best method
    assert 'class="ci">[' in html
    assert 'role="tablist"' in html and "Per organ · DSC" in html
    assert "Per tissue state · DSC" in html and "Per species · DSC" in html
    assert "leaderboard.csv?version=1" in html and "leaderboard.json?version=1" in html
    assert "What changed in version 1" in html
    # A new submission: version 2 says what changed; version 1 stays reachable.
    add_scored_submissions(phase, n_methods=1, user_prefix="late", seed=3)
    rebuild(phase)
    html = body(client.get(phase.get_absolute_url()))
    assert "What changed in version 2" in html and "new entry" in html
    assert f"{phase.get_absolute_url()}v1/" in html
    old = body(client.get(f"{phase.get_absolute_url()}v1/"))
    assert "You are viewing version 1" in old and len(lb_rows(old)) == 5
    assert client.get(f"{phase.get_absolute_url()}v9/").status_code == 404


def test_filter_sort_and_empty_states(client):
    ch, phase, subs, snap = ranked_phase(n=4)
    url = phase.get_absolute_url()
    assert lb_rows(body(client.get(url + "?q=method+b"))) == ["method B"]
    assert "No method matches" in body(client.get(url + "?q=nothing-like-this"))
    asc = lb_rows(body(client.get(url + "?sort=dsc")))
    desc = lb_rows(body(client.get(url + "?sort=-dsc")))
    assert asc == list(reversed(desc)) and desc[0] == "method A"
    assert lb_rows(body(client.get(url + "?sort=bogus"))) == desc  # falls back to rank
    empty_task = Task.objects.create(challenge=ch, slug="empty", title="Empty", label_names=LABELS)
    empty = Phase.objects.create(task=empty_task, slug="p", title="P")
    assert "No ranked submissions yet" in body(client.get(empty.get_absolute_url()))
    assert "No ranking yet" in body(client.get(empty.get_absolute_url() + "report/"))


def test_fragment_is_cached_per_snapshot(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    clear_local_cache()
    url = phase.get_absolute_url()
    with CaptureQueriesContext(connection) as first:
        body(client.get(url))
    with CaptureQueriesContext(connection) as second:
        html = body(client.get(url))
    assert len(second) < len(first)
    assert not any("rows" in q["sql"] and "leaderboards_rankingsnapshot" in q["sql"] for q in second.captured_queries)  # fmt: skip
    add_scored_submissions(phase, n_methods=1, user_prefix="new", seed=5)
    rebuild(phase)
    assert len(lb_rows(body(client.get(url)))) == 4 and len(lb_rows(html)) == 3


def test_team_only_phase_shows_each_team_its_own_rows(client):
    ch, phase, subs, snap = ranked_phase(visibility="team", n=3)
    url = phase.get_absolute_url()
    anon = body(client.get(url))
    assert 'id="leaderboard"' not in anon and "logging in" in anon
    owner = subs[1].user
    client.force_login(owner)
    html = body(client.get(url))
    assert lb_rows(html) == [subs[1].method_name]
    assert "What changed" not in html  # would name the other teams
    rows = list(csv.DictReader(io.StringIO(client.get(url + "leaderboard.csv").content.decode())))
    assert [int(r["submission_id"]) for r in rows] == [subs[1].pk]
    assert "private" in client.get(url + "leaderboard.csv")["Cache-Control"]
    assert client.get(url + "report/").status_code == 404
    client.logout()
    assert client.get(url + "leaderboard.csv").status_code == 404
    assert client.get(url + "leaderboard.json").status_code == 404


def test_hidden_phase_exports_only_after_publishing(client):
    ch, phase, subs, snap = ranked_phase(visibility="hidden", n=3)
    url = phase.get_absolute_url()
    client.force_login(subs[0].user)
    join_challenge(ch, subs[0].user)
    assert "hidden until the organizers publish" in body(client.get(url))
    assert client.get(url + "leaderboard.csv").status_code == 404
    assert client.get(f"/methods/{subs[0].pk}/").status_code == 404  # not a probe of the test set
    phase.published = True
    phase.save()
    rows = list(csv.DictReader(io.StringIO(client.get(url + "leaderboard.csv").content.decode())))
    assert len(rows) == 3 and rows[0]["rank"] == "1"
    data = client.get(url + "leaderboard.json").json()
    assert data["version"] == 1 and len(data["rows"]) == 3


def test_method_page_shows_each_part_only_as_far_as_visibility_allows(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    sub = subs[2]  # the synthetic last method has one failed case
    html = body(client.get(f"/methods/{sub.pk}/"))
    for text in (
        "Per organ",
        "Over subjects",
        "Confusion matrix",
        "Failed cases",
        sub.sha256,
        "onnx",
    ):
        assert text in html
    assert 'id="subject-distribution"' in html and "<circle" in html
    assert "Synthetic method 2." in html  # the team's description
    assert "1 image failed" in html and "human-s00" not in html  # no subject or case ids
    owner = User.objects.get(pk=sub.user_id)
    client.force_login(owner)
    assert "human-s00" not in body(client.get(f"/methods/{sub.pk}/"))  # case results not shown
    phase.show_case_results = True
    phase.save()
    html = body(client.get(f"/methods/{sub.pk}/"))
    assert "human-s00" in html and 'id="failed-cases"' in html and "time limit" in html
    client.logout()
    sub.disqualified = True
    sub.save()
    assert client.get(f"/methods/{sub.pk}/").status_code == 404


def test_phase_report_and_self_contained_download(client, monkeypatch):
    ch, phase, subs, snap = ranked_phase(n=4, figures=True)
    url = phase.get_absolute_url() + "report/"
    html = body(client.get(url))
    for name in ("forest", "blobs", "significance", "podium", "dots", "schemes"):
        assert f'id="fig-{name}"' in html
    assert "in plain words" in html and "Holm" in html and "Kendall" in html
    assert "?download=pdf" in html and "?download=html" in html
    resp = client.get(url + "?download=html")
    assert resp.status_code == 200 and "attachment" in resp["Content-Disposition"]
    doc = resp.content.decode()
    assert "<svg" in doc and "--accent" in doc  # figures and the stylesheet inline
    assert not re.search(r"<(link|script)[^>]+(href|src)=", doc)  # nothing to fetch
    monkeypatch.setenv("CHROMIUM_PATH", "/nonexistent/chromium")
    print_pdfs_at_once(monkeypatch)
    resp = client.get(url + "?download=pdf")
    assert resp.status_code == 503 and b"needs Chromium" in resp.content


def test_challenge_report_consensus_across_tasks(client):
    ch, p1, subs1, _ = ranked_phase(slug="multi", task_slug="kidney", n=3)
    ranked_phase(challenge=ch, task_slug="liver", n=3)
    html = body(client.get(f"/c/{ch.slug}/report/"))
    assert 'id="consensus"' in html and "Task kidney" in html and "Task liver" in html
    assert 'id="fig-heatmap"' in html and "<svg" in html
    assert "team00" in html
    doc = client.get(f"/c/{ch.slug}/report/?download=html").content.decode()
    assert "Consensus across tasks" in doc
    assert "Challenge report" in body(client.get(ch.get_absolute_url()))


def print_pdfs_at_once(monkeypatch) -> None:
    """Workers print report PDFs (leaderboards.tasks); here the queued task runs at once."""
    from leaderboards.tasks import render_report_pdf

    eager = lambda args, **kw: render_report_pdf.apply(args=args)  # noqa: E731
    monkeypatch.setattr(render_report_pdf, "apply_async", eager)


@pytest.mark.integration
def test_pdf_download_with_chromium(client, monkeypatch):
    from leaderboards.pdf import chromium_path

    if chromium_path() is None:
        pytest.skip("PDF export needs /usr/bin/chromium, which is not installed")
    print_pdfs_at_once(monkeypatch)
    ch, phase, subs, snap = ranked_phase(n=3, figures=True)
    resp = client.get(phase.get_absolute_url() + "report/?download=pdf")
    assert resp.status_code == 200, resp.content[:300]
    pdf = b"".join(resp.streaming_content)  # served as a file
    assert pdf.startswith(b"%PDF") and resp["Content-Type"] == "application/pdf"
