"""Pages and reports say which model made the ranking (and why a fallback), show raw means
beside the model-based means, decide tiers from numbers on the page, warn about few
subjects, and give organizers a test-set plan."""

from __future__ import annotations

import html as htmllib
import re

import pytest
from django.core.cache import cache

from accounts.models import User
from challenges.models import Phase
from leaderboards.leaderboard import MODEL_NAMES, clear_local_cache, describe_model
from leaderboards.models import RankingSnapshot
from leaderboards.services import submission_scores

from .synthetic import add_scored_submissions, ranked_phase, rebuild

pytestmark = pytest.mark.django_db


def text_of(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    return htmllib.unescape(re.sub(r"\s+", " ", resp.content.decode()))


def caption(page: str) -> str:
    return page.split('id="leaderboard"', 1)[1].split("<caption>", 1)[1].split("</caption>")[0]


def test_caption_names_the_model_used_and_the_tier_rule(client):
    ch, phase, subs, snap = ranked_phase(n=4)
    res = snap.result["dsc"]
    desc = describe_model(res)
    cap = caption(text_of(client.get(phase.get_absolute_url())))
    assert f"Model: {desc['name']}" in cap
    assert desc["test"] in cap
    assert "model-based mean" in cap and "raw mean" in cap
    assert "a method opens a new tier when the Holm-adjusted p of its comparison" in cap
    if res["model"]["model"] == "full":
        assert "could not be fitted" not in cap and not desc["fallback"]


def test_a_fallback_is_named_with_its_reason_on_the_page_and_in_the_report(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    result = dict(snap.result)
    model = dict(result["dsc"]["model"])
    model.update(
        model="paired_means",
        variance_components={},
        fallbacks=["full/bfgs: not converged", "no_case/cg: covariance not positive definite"],
        fallback_reason="no_case/cg: covariance not positive definite",
        ddf="cluster",
    )
    for m in result["dsc"]["methods"]:
        m["df"] = 3.0  # subjects - 1
    result["dsc"] = {**result["dsc"], "model": model}
    RankingSnapshot.objects.filter(pk=snap.pk).update(result=result)  # a stored fallback ranking
    cache.clear()
    clear_local_cache()
    cap = caption(text_of(client.get(phase.get_absolute_url())))
    assert MODEL_NAMES["paired_means"] in cap
    assert "used because the full mixed model could not be fitted" in cap
    assert "no_case/cg: covariance not positive definite" in cap
    assert "linear mixed model (random effects" not in cap
    assert "(subjects − 1) degrees of freedom on a cluster-robust covariance" in cap
    report = text_of(client.get(phase.get_absolute_url() + "report/"))
    assert "Why not the full mixed model: no_case/cg: covariance not positive definite" in report
    assert 'id="planning"' not in report  # no variance components, no plan


def test_raw_mean_column_is_the_hierarchical_submission_score(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    page = client.get(phase.get_absolute_url()).content.decode()
    head = page.split('id="leaderboard"', 1)[1].split("</thead>", 1)[0]
    headers = [
        re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)
    ]
    raw_col = headers.index("Raw mean")
    assert headers.index("Holm p vs tier leader") == raw_col + 1
    assert headers[4].startswith("DSC [95% CI]") and "model-based mean" in headers[4]
    body = page.split('id="leaderboard"', 1)[1].split("<tbody>", 1)[1].split("</tbody>")[0]
    scores = submission_scores(subs, "dsc")
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = [
            re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        ]
        sid = int(re.search(r"/methods/(\d+)/", tr).group(1))
        assert cells[raw_col] == f"{scores[sid]:.3f}"
    # the method page shows both means with a one-line explanation
    method = text_of(client.get(f"/methods/{subs[0].pk}/"))
    assert "DSC raw mean" in method and f"{scores[subs[0].pk]:.3f}" in method
    assert "The model-based mean is the ranking model's estimate for a typical image" in method


def test_tier_column_shows_the_comparison_that_decided_each_tier():
    ch, phase, subs, snap = ranked_phase(n=5)
    rows = sorted(snap.rows, key=lambda r: r["rank"])
    alpha = snap.settings["alpha"]
    assert rows[0]["tier_test"] is None
    for r in rows[1:]:
        t = r["tier_test"]
        assert t["p_holm"] is not None
        # a new tier exactly when the shown Holm p is below alpha
        assert t["new_tier"] == (t["p_holm"] < alpha)


def test_small_sample_warning_below_six_subjects(client):
    ch, phase, subs, snap = ranked_phase(n=3)  # four subjects
    page = text_of(client.get(phase.get_absolute_url()))
    assert "Few test subjects:" in page and "rests on 4 test subjects (fewer than 6)" in page
    report = text_of(client.get(phase.get_absolute_url() + "report/"))
    assert "rests on 4 test subjects" in report
    six = Phase.objects.create(
        task=phase.task, slug="six", title="Six subjects", visibility="public"
    )
    add_scored_submissions(six, n_methods=3, n_subjects=6, user_prefix="six")
    rebuild(six)
    assert "Few test subjects" not in text_of(client.get(six.get_absolute_url()))


def test_report_shows_model_contrasts_with_df_and_plan(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    res = snap.result["dsc"]
    report = text_of(client.get(phase.get_absolute_url() + "report/"))
    assert f"Model: {describe_model(res)['name']}" in report
    assert "Pairwise comparisons" in report and ">df</th>" in report
    n_contrasts = len(res["contrasts"])
    assert report.count('class="df"') == n_contrasts == 3
    dfs = [c.get("df") for c in res["contrasts"]]
    for d in dfs:
        if d is not None:
            assert f'<td class="df">{d:.1f}</td>' in report
    assert "Raw mean" in report and "Holm p vs tier leader" in report
    assert 'id="planning"' in report and "Test subjects needed by images per subject" in report
    assert "The current test set (4 subjects) has a power of" in report


def test_task_page_plans_test_sets_for_organizers_only(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    url = phase.task.get_absolute_url()
    assert "Test-set planning" not in text_of(client.get(url))
    org = User.objects.create_user("organizer", "org@example.org", "pw")
    ch.organizers.add(org)
    client.force_login(org)
    page = text_of(client.get(url))
    assert 'id="test-set-planning"' in page and 'name="margin"' in page and 'value="0.05"' in page
    assert "differs by <strong>0.05</strong>" in page and "Only 4 test subjects" in page
    needed = int(re.search(r'class="plan-needed">(\d+) test subject', page).group(1))
    wider = text_of(client.get(url + "?margin=0.2"))
    assert "differs by <strong>0.2</strong>" in wider
    assert int(re.search(r'class="plan-needed">(\d+) test subject', wider).group(1)) < needed
    bad = text_of(client.get(url + "?margin=abc"))
    assert "the margin must be a number" in bad and "differs by <strong>0.05</strong>" in bad
