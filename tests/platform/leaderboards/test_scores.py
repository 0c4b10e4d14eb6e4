"""Status pages, the API, method pages and breakdowns show the submission score of the one
aggregation path (evaluator.aggregation), not a flat average over images."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from leaderboards.services import breakdowns, score_fields
from submissions.models import CaseScore, Status

from .test_rules import SKEWED, phase_with, submit, user

pytestmark = pytest.mark.django_db


def scored(phase, who):
    """SKEWED label scores (submission score 0.5, flat image mean 0.7) with matching cases."""
    sub = submit(phase, who, SKEWED, nsd=0.4)
    for ls in sub.label_scores.all():
        CaseScore.objects.create(
            submission=sub, case_id=ls.case_id, subject=ls.subject, species="pig",
            tissue_state="physiological", dsc=ls.dsc, nsd=ls.nsd,
        )  # fmt: skip
    return sub


def test_status_page_and_api_show_the_submission_score(client):
    phase = phase_with("best")
    owner = user("owner")
    sub = scored(phase, owner)
    assert sub.status == Status.SUCCEEDED
    fields = score_fields(sub)
    assert fields["primary_metric"] == "dsc" and fields["higher_is_better"] is True
    assert fields["score"] == pytest.approx(0.5) and fields["mean_dsc"] == pytest.approx(0.5)
    assert fields["mean_nsd"] == pytest.approx(0.4)

    client.force_login(owner)
    status = client.get(f"/submissions/{sub.pk}/status").json()
    assert status["score"] == pytest.approx(0.5) and status["primary_metric"] == "dsc"
    assert status["mean_dsc"] == pytest.approx(0.5)  # not the flat image mean 0.7
    page = client.get(f"/submissions/{sub.pk}/").content.decode()
    assert 'id="score"' in page and "<strong>0.500</strong> DSC" in page

    api = APIClient()
    api.force_authenticate(owner)
    data = api.get(f"/api/submissions/{sub.pk}/").json()
    assert data["score"] == pytest.approx(0.5) and data["mean_nsd"] == pytest.approx(0.4)


def test_scores_hidden_where_the_phase_hides_them(client):
    phase = phase_with("best")
    phase.visibility = "hidden"
    phase.save()
    owner = user("owner")
    sub = scored(phase, owner)
    client.force_login(owner)
    status = client.get(f"/submissions/{sub.pk}/status").json()
    assert "score" not in status and "mean_dsc" not in status


def test_breakdowns_follow_the_hierarchy():
    phase = phase_with("best")
    sub = scored(phase, user("owner"))
    b = breakdowns([sub])
    sid = str(sub.pk)
    assert b["by_label"]["dsc"][sid] == {"liver": 0.5}
    assert b["by_state"]["dsc"][sid] == {"": 0.5}
    assert b["by_species"]["dsc"][sid] == {"unknown": 0.5}  # label rows carry no species here
    assert b["by_species"]["nsd"][sid] == {"unknown": 0.4}
