"""Organizer pages: creating a challenge, the guided task form, phases with reviewed test
cases, the dashboard's buttons and the participant preview, through the real views."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from challenges.models import AuditEvent, Challenge, Phase, Task
from challenges.services import register_dataset, select_cases
from datasets.labels import STUDY_CLASSES
from evaluator.metrics import DEFAULT_NSD_TOLERANCE
from tests.platform.builders import simulate

pytestmark = pytest.mark.django_db


@pytest.fixture
def datasets(tmp_path):
    train = register_dataset(
        simulate(tmp_path / "pig", species=("pig",), subjects=2, images=1, hw=(12, 16)),
        name="pig train",
        role="train",
    )
    test = register_dataset(
        simulate(
            tmp_path / "human",
            species=("human",),
            subjects=3,
            images=2,
            states=("physiological", "malperfused"),
            hw=(12, 16),
            seed=2,
        ),
        name="human test",
        role="test",
    )
    return train, test


@pytest.fixture
def organizer():
    user = User.objects.create_user("olga", password="pw-olga-1")
    user.user_permissions.add(Permission.objects.get(codename="add_challenge"))
    return User.objects.get(pk=user.pk)  # permission cache


def login(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def make(organizer, slug="xeno") -> Challenge:
    resp = login(organizer).post(
        reverse("organize-new"),
        {"slug": slug, "title": "Xeno", "summary": "pig to human", "terms": "be fair"},
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    return Challenge.objects.get(slug=slug)


def task_post(train, test, **over) -> dict:
    data = {
        "slug": "organs",
        "title": "Organs, pig to human",
        "train_dataset": train.pk,
        "source_species": ["pig"],
        "source_states": ["physiological"],
        "target_species": ["human"],
        "target_states": ["physiological"],
        "preprocessing": "l1",
        "primary_metric": "dsc",
        "scored_classes": "reference",
        "ignore_index": 255,
        "label_preset": "study",
        "nsd_tolerances": "",
        "scored_labels": "",
    }
    data.update(over)
    return data


def test_creating_a_challenge_needs_staff_or_the_add_permission(organizer):
    plain = User.objects.create_user("pat", password="pw-pat-1")
    assert login(plain).get(reverse("organize-new")).status_code == 403
    assert (
        login(plain).post(reverse("organize-new"), {"slug": "x", "title": "X"}).status_code == 403
    )
    assert not Challenge.objects.exists()
    ch = make(organizer)
    assert ch.is_organizer(organizer) and not ch.is_public  # private while being set up
    event = AuditEvent.objects.get(action="create_challenge")
    assert event.actor == organizer and event.details["slug"] == "xeno"
    # the form reports model validation next to the field: a taken slug
    resp = login(organizer).post(reverse("organize-new"), {"slug": "xeno", "title": "Again"})
    assert resp.status_code == 200
    assert "slug" in resp.context["form"].errors
    staff = User.objects.create_user("sam", password="pw-sam-1", is_staff=True)
    assert login(staff).get(reverse("organize-new")).status_code == 200


def test_only_organizers_reach_the_dashboard(organizer, datasets):
    ch = make(organizer)
    other = User.objects.create_user("oscar", password="pw-oscar-1")
    url = reverse("organize-dashboard", args=[ch.slug])
    assert login(organizer).get(url).status_code == 200
    # private: a stranger cannot tell it exists; once public, a stranger is refused
    assert login(other).get(url).status_code == 404
    Challenge.objects.filter(pk=ch.pk).update(is_public=True)
    assert login(other).get(url).status_code == 403
    assert Client().get(url).status_code == 302  # to the login page


def test_guided_task_form_offers_the_datasets_vocabularies(organizer, datasets):
    train, test = datasets
    ch = make(organizer)
    c = login(organizer)
    url = reverse("organize-task-new", args=[ch.slug])
    step1 = c.get(url)
    assert step1.templates[0].name == "challenges/organize/task_datasets.html"
    step2 = c.get(url, {"train": train.pk, "test": test.pk})
    form = step2.context["form"]
    assert [v for v, _ in form.fields["source_species"].choices] == train.species
    assert [v for v, _ in form.fields["target_species"].choices] == test.species
    assert [v for v, _ in form.fields["target_states"].choices] == test.tissue_states
    assert "study" in dict(form.fields["label_preset"].choices)
    # blank boxes that mean "the preset's defaults", not an invalid-looking "[]"
    html = step2.content.decode()
    assert 'name="nsd_tolerances" value=' not in html and "[]" not in html


def test_task_form_refuses_invalid_settings_with_field_errors(organizer, datasets):
    train, test = datasets
    ch = make(organizer)
    c = login(organizer)
    url = reverse("organize-task-new", args=[ch.slug]) + f"?train={train.pk}&test={test.pk}"
    resp = c.post(url, task_post(train, test, nsd_tolerances="1, 2", scored_labels="liver, wing"))
    assert resp.status_code == 200
    errors = resp.context["form"].errors
    # the TaskSpec's own messages, next to the fields
    assert "one tolerance per class" in " ".join(errors["nsd_tolerances"])
    assert "'wing'" in " ".join(errors["scored_labels"])
    resp = c.post(url, task_post(train, test, nsd_tolerances="two"))
    assert "not a number" in " ".join(resp.context["form"].errors["nsd_tolerances"])
    resp = c.post(url, task_post(train, test, target_species=[]))
    assert "target_species" in resp.context["form"].errors
    resp = c.post(url, task_post(train, test, slug="organize"))
    assert "slug" in resp.context["form"].errors
    assert not Task.objects.exists()
    assert not AuditEvent.objects.filter(action="create_task").exists()


def test_task_form_saves_the_preset_with_default_tolerances(organizer, datasets):
    train, test = datasets
    ch = make(organizer)
    c = login(organizer)
    url = reverse("organize-task-new", args=[ch.slug]) + f"?train={train.pk}&test={test.pk}"
    resp = c.post(url, task_post(train, test, label_preset="study-kidney", n_bootstrap=200))
    task = Task.objects.get(challenge=ch, slug="organs")
    assert resp.status_code == 302
    assert resp["Location"] == (
        reverse("organize-phase-new", args=[ch.slug, "organs"]) + f"?dataset={test.pk}"
    )
    assert task.label_names == list(STUDY_CLASSES)
    assert task.nsd_tolerances == [DEFAULT_NSD_TOLERANCE] * len(STUDY_CLASSES)
    assert task.scored_labels == ["kidney"]
    assert task.ranking_settings == {"n_bootstrap": 200}
    assert task.train_dataset == train
    assert task.spec.scored_indices == (STUDY_CLASSES.index("kidney"),)
    assert AuditEvent.objects.filter(action="create_task", actor=organizer).count() == 1
    # editing shows the stored values and keeps them when saved unchanged
    edit = reverse("organize-task", args=[ch.slug, "organs"])
    form = c.get(edit).context["form"]
    assert form.initial["label_preset"] == "study-kidney"
    assert form.initial["scored_labels"] == "kidney"
    resp = c.post(
        edit,
        task_post(
            train,
            test,
            label_preset="study-kidney",
            nsd_tolerances=", ".join(["2"] * 12),
            scored_labels="kidney",
            n_bootstrap=200,
        ),
    )
    assert resp.status_code == 302
    task.refresh_from_db()
    assert task.nsd_tolerances == [2.0] * 12
    assert AuditEvent.objects.filter(action="update_task").count() == 1


def _task(ch, train) -> Task:
    return Task.objects.create(
        challenge=ch,
        slug="organs",
        title="Organs",
        source_species=["pig"],
        source_states=["physiological"],
        target_species=["human"],
        target_states=["physiological", "malperfused"],
        train_dataset=train,
    )


def phase_post(test, **over) -> dict:
    now = timezone.now()
    data = {
        "slug": "final",
        "title": "Final",
        "order": 0,
        "test_dataset": test.pk,
        "opens_at": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "closes_at": (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"),
        "visibility": "hidden",
        "leaderboard_rule": "best",
        "submissions_per_day": 3,
        "submissions_total": 20,
        "max_concurrent": 1,
        "wall_seconds": 300,
        "memory_mb": 2048,
        "cpu_threads": 1,
        "max_upload_mb": 50,
        "show_logs": "unknown",
        "chunk_size": 10,
        "case_species": ["human"],
        "case_states": ["physiological"],
    }
    data.update(over)
    return data


def test_phase_cases_are_listed_for_review_before_they_are_saved(organizer, datasets):
    train, test = datasets
    ch = make(organizer)
    _task(ch, train)
    c = login(organizer)
    url = reverse("organize-phase-new", args=[ch.slug, "organs"])
    assert c.get(url).templates[0].name == "challenges/organize/phase_dataset.html"
    subjects = sorted({r["subject"] for r in test.manifest})
    expected = [
        r["image_name"]
        for r in test.manifest
        if r["tissue_state"] == "physiological" and r["subject"] in subjects[:2]
    ]
    assert expected
    data = phase_post(test, case_subjects=subjects[:2])
    resp = c.post(url, {**data, "action": "review"})
    assert resp.status_code == 200 and not Phase.objects.exists()
    listed = [r["image_name"] for r in resp.context["review"]]
    assert listed == expected
    assert resp.context["form"].reviewed
    assert b'value="save"' in resp.content
    # saving a selection other than the one reviewed shows the list again
    resp = c.post(url, {**data, "action": "save", "reviewed_cases": "something-else"})
    assert resp.status_code == 200 and not Phase.objects.exists()
    resp = c.post(url, {**data, "action": "save", "reviewed_cases": ",".join(expected)})
    assert resp.status_code == 302
    phase = Phase.objects.get(slug="final")
    assert phase.case_ids == expected and phase.test_dataset == test
    assert phase.visibility == "hidden" and phase.max_concurrent == 1
    event = AuditEvent.objects.get(action="create_phase")
    assert event.details["case_ids"] == len(expected)


def test_editing_a_phase_starts_from_its_saved_cases(organizer, datasets):
    train, test = datasets
    ch = make(organizer)
    task = _task(ch, train)
    subject = sorted({r["subject"] for r in test.manifest})[1]
    cases = [r["image_name"] for r in test.manifest if r["subject"] == subject]
    phase = Phase.objects.create(task=task, slug="p", title="P", test_dataset=test, case_ids=cases)
    c = login(organizer)
    url = reverse("organize-phase", args=[ch.slug, "organs", "p"])
    form = c.get(url).context["form"]
    assert form.initial["case_subjects"] == [subject]
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(phase_post(test, slug="p", title="Renamed", case_subjects=[subject]))
    data.update(case_states=form.initial["case_states"], action="review")
    resp = c.post(url, data)
    assert [r["image_name"] for r in resp.context["review"]] == cases
    resp = c.post(url, {**data, "action": "save", "reviewed_cases": ",".join(cases)})
    assert resp.status_code == 302
    phase.refresh_from_db()
    assert phase.title == "Renamed" and phase.case_ids == cases
    assert AuditEvent.objects.filter(action="update_phase", actor=organizer).count() == 1


def test_phase_form_reports_dates_limits_and_cases_next_to_their_fields(organizer, datasets):
    train, test = datasets
    ch = make(organizer)
    _task(ch, train)
    c = login(organizer)
    url = reverse("organize-phase-new", args=[ch.slug, "organs"])
    now = timezone.now()
    data = phase_post(
        test,
        opens_at=now.strftime("%Y-%m-%dT%H:%M"),
        closes_at=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        submissions_per_day=30,
        memory_mb=10,
        case_species=[],
        case_states=["physiological"],
        case_subjects=["no-such-subject"],
    )
    resp = c.post(url, {**data, "action": "review"})
    errors = resp.context["form"].errors
    assert "close after it opens" in " ".join(errors["closes_at"])
    assert "cannot exceed" in " ".join(errors["submissions_per_day"])
    assert "at least 256" in " ".join(errors["memory_mb"])
    assert "case_subjects" in errors  # not a subject of the manifest
    assert not Phase.objects.exists()


def test_submissions_are_refused_outside_the_phase_dates(organizer, datasets):
    from submissions.services import SubmissionRefused, check_can_submit, join_challenge

    train, test = datasets
    ch = make(organizer)
    task = _task(ch, train)
    now = timezone.now()
    phase = Phase.objects.create(
        task=task,
        slug="p",
        title="P",
        test_dataset=test,
        case_ids=select_cases(test, ["human"]),
        opens_at=now + timedelta(days=1),
    )
    user = User.objects.create_user("pia", password="pw-pia-1")
    join_challenge(ch, user)
    with pytest.raises(SubmissionRefused, match="this phase opens at"):
        check_can_submit(phase, user)
    phase.opens_at, phase.closes_at = now - timedelta(days=2), now - timedelta(days=1)
    phase.save()
    with pytest.raises(SubmissionRefused, match="this phase closed at"):
        check_can_submit(phase, user)
    phase.closes_at = now + timedelta(days=1)
    phase.save()
    check_can_submit(phase, user)


def test_dashboard_buttons_publish_hide_and_rerun_through_the_services(organizer, datasets):
    train, test = datasets
    ch = make(organizer)
    task = _task(ch, train)
    phase = Phase.objects.create(
        task=task,
        slug="p",
        title="P",
        visibility="hidden",
        test_dataset=test,
        case_ids=select_cases(test, ["human"]),
    )
    c = login(organizer)
    url = reverse("organize-action", args=[ch.slug])
    dash = c.get(reverse("organize-dashboard", args=[ch.slug])).content.decode()
    assert 'value="publish"' in dash and f"id {phase.pk}" in dash
    assert c.post(url, {"action": "publish", "phase": phase.pk}).status_code == 302
    phase.refresh_from_db()
    assert phase.published
    c.post(url, {"action": "hide", "phase": phase.pk})
    phase.refresh_from_db()
    assert not phase.published
    assert c.post(url, {"action": "rerun_phase", "phase": phase.pk}).status_code == 302
    actions = list(AuditEvent.objects.filter(actor=organizer).values_list("action", flat=True))
    assert {"publish", "hide", "rerun_phase"} <= set(actions)
    # another challenge's phase is not reachable through this dashboard
    Challenge.objects.filter(pk=ch.pk).update(is_public=True)
    stranger = User.objects.create_user("sid", password="pw-sid-1")
    assert login(stranger).post(url, {"action": "publish", "phase": phase.pk}).status_code == 403
    phase.refresh_from_db()
    assert not phase.published


def test_preview_shows_the_participant_page_without_publishing_the_challenge(organizer, datasets):
    ch = make(organizer)
    ch.description = "Segment organs across species."
    ch.save()
    resp = login(organizer).get(reverse("organize-preview", args=[ch.slug]))
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "Segment organs across species." in html and "Preview" in html
    assert reverse("organize-dashboard", args=[ch.slug]) in html
    assert "olga" not in html.split("Preview", 1)[1]  # rendered for an anonymous reader
    ch.refresh_from_db()
    assert not ch.is_public
    assert Client().get(ch.get_absolute_url()).status_code == 404


def test_settings_page_edits_terms_and_visibility(organizer):
    ch = make(organizer)
    c = login(organizer)
    url = reverse("organize-settings", args=[ch.slug])
    resp = c.post(url, {"slug": "xeno", "title": "Xeno 2", "terms": "new rules", "is_public": "on"})
    assert resp.status_code == 302
    ch.refresh_from_db()
    assert ch.title == "Xeno 2" and ch.terms == "new rules" and ch.is_public
    assert AuditEvent.objects.filter(action="update_challenge", actor=organizer).exists()
    resp = c.post(url, {"slug": "bad slug!", "title": ""})
    assert {"slug", "title"} <= set(resp.context["form"].errors)


def test_api_creates_challenges_with_the_same_rules(organizer):
    from rest_framework.test import APIClient

    api = APIClient()
    body = {"slug": "api", "title": "By API", "terms": "rules", "is_public": False}
    assert api.post("/api/challenges/", body, format="json").status_code == 401
    api.force_authenticate(User.objects.create_user("pat", password="pw-pat-1"))
    assert api.post("/api/challenges/", body, format="json").status_code == 403
    api.force_authenticate(organizer)
    bad = api.post("/api/challenges/", {"slug": "no spaces", "title": ""}, format="json")
    assert bad.status_code == 400 and {"slug", "title"} <= set(bad.json())
    resp = api.post("/api/challenges/", body, format="json")
    assert resp.status_code == 201 and resp.json()["slug"] == "api"
    ch = Challenge.objects.get(slug="api")
    assert ch.is_organizer(organizer) and ch.terms == "rules" and not ch.is_public
    assert AuditEvent.objects.filter(action="create_challenge", actor=organizer).exists()


def test_admin_edits_are_audited_like_the_organizer_pages():
    staff = User.objects.create_superuser("root", password="pw-root-1", email="r@example.org")
    c = login(staff)
    resp = c.post(
        reverse("admin:challenges_challenge_add"),
        {"slug": "adm", "title": "Admin made", "is_public": "on"},
    )
    assert resp.status_code == 302, resp.content.decode()[:3000]
    ch = Challenge.objects.get(slug="adm")
    event = AuditEvent.objects.get(action="create_challenge")
    assert event.actor == staff and event.details["via"] == "admin"
    assert event.details["title"] == "Admin made"
    c.post(reverse("admin:challenges_challenge_delete", args=[ch.pk]), {"post": "yes"})
    assert not Challenge.objects.exists()
    assert AuditEvent.objects.filter(action="delete_challenge", actor=staff).exists()


def test_malformed_ids_are_answered_without_server_errors(organizer, datasets):
    train, _ = datasets
    ch = make(organizer)
    _task(ch, train)
    c = login(organizer)
    new_task = reverse("organize-task-new", args=[ch.slug])
    assert c.get(new_task, {"train": "abc", "test": "1 OR 1=1"}).status_code == 200
    new_phase = reverse("organize-phase-new", args=[ch.slug, "organs"])
    assert c.get(new_phase, {"dataset": "x" * 40}).status_code == 200
    action = reverse("organize-action", args=[ch.slug])
    assert c.post(action, {"action": "publish", "phase": "abc"}).status_code == 404
    assert c.post(action, {"action": "rerun", "submission": "-1"}).status_code == 404
    assert c.post(action, {"action": "drop-tables"}).status_code == 400
