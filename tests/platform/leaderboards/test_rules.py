"""Which submission represents a team on the leaderboard: the best, latest and chosen rules.

"Best" is the submission score of the task's primary metric (evaluator.aggregation: the
(subject, label) mean, then over subjects, then over labels) in the metric's direction."""

from __future__ import annotations

import pytest

from accounts.models import User
from challenges.models import Challenge, Membership, Phase, Task, Team
from leaderboards.services import eligible_submissions, select_entries, submission_scores
from submissions.models import LabelScore, Status, Submission

pytestmark = pytest.mark.django_db

LABELS = ["background", "liver", "kidney"]


def phase_with(rule: str, *, primary: str = "dsc") -> Phase:
    ch = Challenge.objects.create(slug=f"rules-{rule}-{primary}", title="Rules", summary="s")
    task = Task.objects.create(
        challenge=ch, slug="t", title="T", label_names=LABELS, primary_metric=primary
    )
    return Phase.objects.create(task=task, slug="p", title="P", leaderboard_rule=rule)


def user(name: str) -> User:
    return User.objects.create_user(name, password="pw")


def team_of(phase: Phase, name: str, *members: User) -> Team:
    team = Team.objects.create(challenge=phase.challenge, name=name)
    for u in members:
        Membership.objects.create(team=team, user=u, challenge=phase.challenge)
    return team


def submit(
    phase: Phase,
    who: User,
    scores: list[tuple[str, str, float]],
    *,
    team: Team | None = None,
    status: str = Status.SUCCEEDED,
    chosen: bool = False,
    disqualified: bool = False,
    nsd: float | None = None,
    hd95: float | None = None,
) -> Submission:
    """A submission with one LabelScore per (subject, label, dsc); each row its own image."""
    sub = Submission.objects.create(
        phase=phase, user=who, team=team, method_name=f"m{Submission.objects.count()}",
        model_path="", original_name="m.onnx", sha256="0" * 64, model_format="onnx",
        status=status, chosen=chosen, disqualified=disqualified,
    )  # fmt: skip
    LabelScore.objects.bulk_create(
        LabelScore(
            submission=sub,
            case_id=f"{subject}#{i}",
            subject=subject,
            label=LABELS.index(label),
            label_name=label,
            dsc=dsc,
            nsd=dsc if nsd is None else nsd,
            hd95=hd95,
        )  # fmt: skip
        for i, (subject, label, dsc) in enumerate(scores)
    )
    return sub


# Subject S1 has three images, S2 one: the flat image mean favours SKEWED (0.7 > 0.6), the
# hierarchy (mean over subjects first) favours EVEN (0.6 > 0.5).
SKEWED = [("S1", "liver", 0.9), ("S1", "liver", 0.9), ("S1", "liver", 0.9), ("S2", "liver", 0.1)]
EVEN = [("S1", "liver", 0.6), ("S2", "liver", 0.6)]


def test_best_is_the_submission_score_not_the_flat_image_mean():
    phase = phase_with("best")
    u = user("solo")
    skewed = submit(phase, u, SKEWED)
    even = submit(phase, u, EVEN)
    scores = submission_scores([skewed, even], "dsc")
    assert scores == pytest.approx({skewed.pk: 0.5, even.pk: 0.6})
    assert eligible_submissions(phase) == [even]


def test_best_ties_go_to_the_earlier_submission():
    phase = phase_with("best")
    u = user("solo")
    first = submit(phase, u, EVEN)
    submit(phase, u, EVEN)
    assert eligible_submissions(phase) == [first]


def test_best_follows_the_task_primary_metric():
    phase = phase_with("best", primary="nsd")
    u = user("solo")
    submit(phase, u, EVEN, nsd=0.2)  # better DSC, worse NSD
    better_nsd = submit(phase, u, [("S1", "liver", 0.3), ("S2", "liver", 0.3)], nsd=0.8)
    assert eligible_submissions(phase) == [better_nsd]


def test_best_honours_a_lower_is_better_metric():
    phase = phase_with("best")
    u = user("solo")
    near = submit(phase, u, EVEN, hd95=2.0)
    far = submit(phase, u, EVEN, hd95=9.0)
    subs = [near, far]
    scores = submission_scores(subs, "hd95")
    assert scores == pytest.approx({near.pk: 2.0, far.pk: 9.0})
    assert select_entries(subs, "best", scores=scores, metric="hd95") == [near]
    # the same numbers read as a higher-is-better metric pick the other one
    assert select_entries(subs, "best", scores=scores, metric="dsc") == [far]
    assert select_entries(subs[::-1], "best", scores=scores, metric="hd95") == [near]


@pytest.mark.parametrize("rule", ["best", "latest", "chosen"])
def test_failed_cancelled_and_disqualified_submissions_never_represent_a_team(rule):
    phase = phase_with(rule)
    u = user("solo")
    kept = submit(phase, u, EVEN)
    for status in (Status.FAILED, Status.CANCELLED, Status.TIMED_OUT, Status.RUNNING):
        submit(phase, u, [("S1", "liver", 1.0)], status=status, chosen=True)
    submit(phase, u, [("S1", "liver", 1.0)], disqualified=True, chosen=True)
    assert eligible_submissions(phase) == [kept]


def test_latest_takes_each_owner_last_succeeded_submission():
    phase = phase_with("latest")
    a, b, c = user("a"), user("b"), user("solo")
    team = team_of(phase, "Team AB", a, b)
    submit(phase, a, EVEN, team=team)
    team_last = submit(phase, b, SKEWED, team=team)  # a team mate's later one
    solo_first = submit(phase, c, EVEN)
    submit(phase, c, EVEN, status=Status.FAILED)
    assert eligible_submissions(phase) == [team_last, solo_first]


def test_chosen_takes_the_chosen_one_else_the_latest():
    phase = phase_with("chosen")
    a, b = user("a"), user("b")
    chosen = submit(phase, a, SKEWED, chosen=True)
    submit(phase, a, EVEN)  # later and better, but not chosen
    submit(phase, b, EVEN)
    b_last = submit(phase, b, SKEWED)  # no chosen one: the latest represents b
    assert eligible_submissions(phase) == [chosen, b_last]


def test_rules_group_by_team_and_keep_solo_participants_apart():
    phase = phase_with("best")
    a, b, c = user("a"), user("b"), user("c")
    team = team_of(phase, "Team AB", a, b)
    submit(phase, a, SKEWED, team=team)
    team_best = submit(phase, b, EVEN, team=team)
    solo = submit(phase, c, SKEWED)
    assert eligible_submissions(phase) == [team_best, solo]


def test_unknown_rule_is_refused():
    phase = phase_with("best")
    sub = submit(phase, user("solo"), EVEN)
    with pytest.raises(ValueError, match="unknown leaderboard rule"):
        select_entries([sub], "median")
