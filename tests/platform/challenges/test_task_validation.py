"""A task's settings and a phase's cases are validated when an organizer saves them (model
clean, admin forms with errors per field) and before evaluation (challenges.services), so an
organizer's typo never reaches a participant's submission."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from datasets.labels import STUDY_CLASSES
from evaluator.taskspec import TaskSpec, TaskSpecError

pytestmark = pytest.mark.django_db

LABELS = list(STUDY_CLASSES)
MANIFEST = [
    {"image_name": "H1#a", "species": "human", "subject": "H1", "tissue_state": "malperfused"},
    {"image_name": "H1#b", "species": "human", "subject": "H1", "tissue_state": "malperfused"},
    {"image_name": "H2#a", "species": "human", "subject": "H2", "tissue_state": "physiological"},
    {"image_name": "P1#a", "species": "pig", "subject": "P1", "tissue_state": "malperfused"},
]


def task_fields(**changes):
    return {
        "slug": "kidney",
        "title": "Kidney",
        "source_species": ["pig", "human"],
        "source_states": ["physiological", "malperfused"],
        "target_species": ["human"],
        "target_states": ["malperfused"],
        "label_names": LABELS,
        "nsd_tolerances": [2.0] * len(LABELS),
        "scored_labels": ["kidney"],
        **changes,
    }


@pytest.fixture
def world():
    from challenges.models import Challenge, Dataset, Phase, Task

    ch = Challenge.objects.create(slug="xeno", title="Xeno")
    train = Dataset.objects.create(name="train", role="train", source_path="/x", label_names=LABELS)
    test = Dataset.objects.create(
        name="test", role="test", source_path="/y", manifest=MANIFEST, label_names=LABELS
    )
    task = Task.objects.create(challenge=ch, train_dataset=train, **task_fields())
    phase = Phase.objects.create(
        task=task, slug="final", title="Final", test_dataset=test, case_ids=["H1#a", "H1#b"]
    )
    return {"ch": ch, "task": task, "phase": phase, "train": train, "test": test}


def clean_errors(obj) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        obj.full_clean()
    return info.value.message_dict


# --- the vocabularies and constants have one home ----------------------------------------------
def test_vocabularies_and_choices_come_from_their_one_home():
    from challenges import models
    from datasets import manifest
    from datasets.spectral import PREPROCESSINGS
    from evaluator.metrics import CASE_METRICS
    from submissions.models import CaseScore

    assert models.SPECIES is manifest.SPECIES
    assert models.TISSUE_STATES is manifest.TISSUE_STATES
    choices = [c for c, _ in models.Task._meta.get_field("preprocessing").choices]
    assert tuple(choices) == PREPROCESSINGS
    stored = {f.name for f in CaseScore._meta.get_fields()}
    assert set(CASE_METRICS) <= stored  # a primary metric is always stored per case


def test_a_new_task_defaults_to_the_study_classes_not_an_empty_list():
    from challenges.models import Task

    assert Task().label_names == LABELS
    assert Task().label_names is not Task().label_names  # a fresh list each time


# --- Task.spec and Task.clean ------------------------------------------------------------------
def test_valid_task_builds_its_spec(world):
    task = world["task"]
    task.full_clean()
    spec = task.spec
    assert isinstance(spec, TaskSpec)
    assert spec.scored_indices == (LABELS.index("kidney"),)
    assert spec.nsd_tolerances == (2.0,) * len(LABELS)
    assert spec.ranking.n_bootstrap == 1000 and spec.higher_is_better


def test_invalid_task_spec_raises_task_spec_error(world):
    task = world["task"]
    task.nsd_tolerances = [2.0]
    with pytest.raises(TaskSpecError) as info:
        _ = task.spec
    assert list(info.value.errors) == ["nsd_tolerances"]


def test_clean_reports_errors_under_model_field_names(world):
    task = world["task"]
    task.label_names = LABELS[:-1] + ["kidney"]  # duplicate
    task.source_species = ["pigs"]
    task.target_states = []
    task.primary_metric = "hd95"
    task.preprocessing = "l2"
    task.ranking_settings = {"alpha": 1.2, "n_boostrap": 5}
    task.ignore_index = 3
    errors = clean_errors(task)
    assert {
        "label_names",
        "source_species",
        "target_states",
        "primary_metric",
        "preprocessing",
        "ranking_settings",
        "ignore_index",
    } <= set(errors)
    assert any("kidney" in m and "twice" in m for m in errors["label_names"])
    assert any("'pigs'" in m for m in errors["source_species"])
    assert any("n_boostrap" in m for m in errors["ranking_settings"])
    assert any("alpha" in m for m in errors["ranking_settings"])
    assert any("collides" in m for m in errors["ignore_index"])


def test_empty_tolerances_mean_the_default_and_are_valid(world):
    task = world["task"]
    task.nsd_tolerances = []
    task.full_clean()
    assert task.spec.nsd_tolerances == (1.0,) * len(LABELS)


def test_tolerance_count_and_scored_labels_are_checked_against_the_label_names(world):
    task = world["task"]
    task.label_names = ["background", "kidney"]
    errors = clean_errors(task)
    assert any("12 value(s) for 2 classes" in m for m in errors["nsd_tolerances"])
    task.nsd_tolerances = [1, 1]
    task.scored_labels = ["liver"]
    errors = clean_errors(task)
    assert any("'liver'" in m for m in errors["scored_labels"])


def test_task_training_dataset_must_be_a_training_dataset(world):
    task = world["task"]
    task.train_dataset = world["test"]
    assert "train_dataset" in clean_errors(task)


def test_task_label_names_must_match_its_phases_test_labels(world):
    task = world["task"]
    task.label_names = list(reversed(LABELS))
    errors = clean_errors(task)
    assert any("phase final" in m and "same order" in m for m in errors["label_names"])


# --- Phase.clean -------------------------------------------------------------------------------
def test_valid_phase(world):
    world["phase"].full_clean()


@pytest.mark.parametrize(
    ("cases", "words"),
    [
        ([], "at least one test case"),
        (["H1#a", "H1#a"], "twice: H1#a"),
        (["H1#a", "X9#z"], "not in the manifest of test dataset 'test': X9#z"),
        (["H1#a", "P1#a"], "species is not a target species"),
        (["H1#a", "H2#a"], "tissue state is not a target tissue state"),
        ("H1#a", "a list of image names"),
        (["H1#a", 7], "a list of image names"),
    ],
)
def test_phase_case_ids_are_checked_against_the_manifest_and_task(world, cases, words):
    phase = world["phase"]
    phase.case_ids = cases
    errors = clean_errors(phase)
    assert list(errors) == ["case_ids"], errors
    assert any(words in m for m in errors["case_ids"]), errors


def test_many_missing_cases_are_summarised(world):
    phase = world["phase"]
    phase.case_ids = [f"X{i}#a" for i in range(25)]
    (msg,) = clean_errors(phase)["case_ids"]
    assert "and 15 more" in msg


def test_phase_needs_a_hidden_test_dataset_with_the_tasks_labels(world):
    phase = world["phase"]
    phase.test_dataset = None
    assert "test_dataset" in clean_errors(phase)
    phase.test_dataset = world["train"]
    errors = clean_errors(phase)
    assert any("hidden test dataset" in m for m in errors["test_dataset"])
    test = world["test"]
    test.label_names = ["background", "kidney"]
    test.save()
    phase.test_dataset = test
    errors = clean_errors(phase)
    assert any("same order" in m for m in errors["test_dataset"])


def test_phase_window_and_limits(world):
    phase = world["phase"]
    phase.closes_at = phase.opens_at - timedelta(minutes=1)
    phase.submissions_per_day = 0
    phase.chunk_size = 0
    phase.memory_mb = 10
    phase.wall_seconds = settings.EVALUATION_TIME_LIMIT
    phase.max_upload_mb = settings.MAX_UPLOAD_MB + 1
    errors = clean_errors(phase)
    assert errors["closes_at"] == ["the phase must close after it opens"]
    assert errors["submissions_per_day"] == ["must be at least 1"]
    assert errors["chunk_size"] == ["must be at least 1"]
    assert errors["memory_mb"] == ["must be at least 256"]
    assert "EVALUATION_TIME_LIMIT" in errors["wall_seconds"][0]
    assert "MAX_UPLOAD_MB" in errors["max_upload_mb"][0]
    phase.refresh_from_db()
    phase.submissions_per_day, phase.submissions_total = 10, 5
    assert list(clean_errors(phase)) == ["submissions_per_day"]


# --- services: the checks the pipeline and future forms call -----------------------------------
def test_evaluation_spec_is_the_tasks_spec_when_all_is_valid(world):
    from challenges.services import evaluation_spec, validate_phase, validate_task

    assert evaluation_spec(world["phase"]) == world["task"].spec
    assert validate_task(world["task"]) == world["task"].spec
    assert validate_phase(world["phase"]) == world["task"].spec


def test_evaluation_spec_names_every_organizer_problem(world):
    from challenges.models import Phase
    from challenges.services import ConfigurationError, evaluation_spec, validate_phase

    task, phase = world["task"], world["phase"]
    task.nsd_tolerances = [1.0]
    task.save()
    Phase.objects.filter(pk=phase.pk).update(case_ids=["H1#a", "gone#x"])
    phase.refresh_from_db()
    with pytest.raises(ConfigurationError) as info:
        evaluation_spec(phase)
    exc = info.value
    assert set(exc.errors) == {"task.nsd_tolerances", "phase.case_ids"}
    assert "xeno/kidney/final" in str(exc) and "gone#x" in str(exc)
    with pytest.raises(ValidationError) as info2:
        validate_phase(phase)
    errors = info2.value.message_dict
    assert any("gone#x" in m for m in errors["case_ids"])
    assert any(m.startswith("task nsd_tolerances:") for m in errors[NON_FIELD_ERRORS])


def test_the_test_builders_challenge_is_valid(human_test_root):
    """The challenge every pipeline test uses passes the checks that guard evaluation."""
    from challenges.services import evaluation_spec
    from tests.platform.builders import make_challenge

    _, task, phase = make_challenge(human_test_root)
    task.full_clean()
    phase.full_clean()
    assert evaluation_spec(phase).num_classes == len(LABELS)


# --- admin: forms validate through the models, errors per field --------------------------------
@pytest.fixture
def admin_client():
    from accounts.models import User

    staff = User.objects.create_superuser("boss", "boss@example.org", "pw")
    c = Client()
    c.force_login(staff)
    return c


def form_data(ch, **changes):
    data = {
        "challenge": ch.pk,
        "slug": "organs",
        "title": "Organs",
        "description": "",
        "order": 0,
        "source_species": ["pig"],
        "source_states": ["physiological"],
        "target_species": ["human"],
        "target_states": ["physiological"],
        "label_names": json.dumps(LABELS),
        "ignore_index": 255,
        "preprocessing": "l1",
        "nsd_tolerances": "",
        "scored_labels": "",
        "primary_metric": "dsc",
        "scored_classes": "reference",
        "ranking_settings": "",
        "train_dataset": "",
    }
    data.update(changes)
    return data


def test_admin_add_task_prefills_valid_values_only(admin_client, world):
    resp = admin_client.get(reverse("admin:challenges_task_add"))
    assert resp.status_code == 200
    form = resp.context["adminform"].form
    html = resp.content.decode()
    label_box = form["label_names"].value()
    assert json.loads(label_box) == LABELS
    for name in ("nsd_tolerances", "scored_labels", "ranking_settings"):
        assert form[name].value() == "", name  # blank, with help text, instead of "[]"
    assert re.search(r'name="nsd_tolerances"[^>]*>\s*</textarea>', html)
    assert "n_bootstrap 1000, alpha 0.05, seed 0" in html
    assert 'value="human"' in html and 'value="rat"' in html  # species checkboxes


def test_admin_add_task_shows_errors_per_field(admin_client, world):
    from challenges.models import Task

    url = reverse("admin:challenges_task_add")
    resp = admin_client.post(
        url,
        form_data(
            world["ch"],
            nsd_tolerances="[1, 2]",
            scored_labels='["kidneys"]',
            ranking_settings='{"alpha": 5}',
            ignore_index=0,
            source_species=[],
            label_names="",
        ),
    )
    assert resp.status_code == 200
    errors = resp.context["adminform"].form.errors
    assert "This field is required." in errors["label_names"]
    assert errors["source_species"] == ["Choose at least one species."]
    html = resp.content.decode()
    assert "form-row errors field-label_names" in html
    assert not Task.objects.filter(slug="organs").exists()

    resp = admin_client.post(
        url,
        form_data(
            world["ch"],
            nsd_tolerances="[1, 2]",
            scored_labels='["kidneys"]',
            ranking_settings='{"alpha": 5}',
            ignore_index=0,
        ),
    )
    errors = resp.context["adminform"].form.errors
    assert set(errors) == {"nsd_tolerances", "scored_labels", "ranking_settings", "ignore_index"}
    assert "2 value(s) for 12 classes" in errors["nsd_tolerances"][0]
    assert "'kidneys'" in errors["scored_labels"][0]
    assert "alpha must lie in (0, 1)" in errors["ranking_settings"][0]
    html = resp.content.decode()
    for name in errors:
        assert f"form-row errors field-{name}" in html, name
    assert not Task.objects.filter(slug="organs").exists()


def test_admin_add_task_offers_both_scored_classes_conventions_reference_first(admin_client, world):
    html = admin_client.get(reverse("admin:challenges_task_add")).content.decode()
    assert '<option value="reference" selected>' in html and '<option value="union">' in html
    resp = admin_client.post(
        reverse("admin:challenges_task_add"), form_data(world["ch"], scored_classes="all")
    )
    assert "scored_classes" in resp.context["adminform"].form.errors


def test_task_spec_carries_the_scored_classes_convention(world):
    task = world["task"]
    assert task.scored_classes == "reference" and task.spec.scored_classes == "reference"
    task.scored_classes = "union"
    task.full_clean()
    assert task.spec.scored_classes == "union"


def test_admin_saves_a_valid_task_with_blank_optional_settings(admin_client, world):
    from challenges.models import Task

    resp = admin_client.post(reverse("admin:challenges_task_add"), form_data(world["ch"]))
    assert resp.status_code == 302, resp.context["adminform"].form.errors
    task = Task.objects.get(slug="organs")
    assert task.nsd_tolerances == [] and task.scored_labels == [] and task.ranking_settings == {}
    assert task.source_species == ["pig"]
    assert task.spec.nsd_tolerances == (1.0,) * len(LABELS)


def test_admin_task_page_links_its_phases_instead_of_inline_forms(admin_client, world):
    task = world["task"]
    resp = admin_client.get(reverse("admin:challenges_task_change", args=[task.pk]))
    html = resp.content.decode()
    assert reverse("admin:challenges_phase_change", args=[world["phase"].pk]) in html
    resp = admin_client.get(reverse("admin:challenges_challenge_change", args=[world["ch"].pk]))
    assert reverse("admin:challenges_task_change", args=[task.pk]) in resp.content.decode()


def test_admin_change_phase_checks_cases_against_the_manifest(admin_client, world):
    from django.forms.models import model_to_dict

    phase = world["phase"]
    url = reverse("admin:challenges_phase_change", args=[phase.pk])
    resp = admin_client.get(url)
    assert resp.status_code == 200
    data = {k: v for k, v in model_to_dict(phase).items() if v is not None}
    now = timezone.now()
    data.update(
        {
            "opens_at_0": now.strftime("%Y-%m-%d"),
            "opens_at_1": now.strftime("%H:%M:%S"),
            "closes_at_0": (now - timedelta(days=1)).strftime("%Y-%m-%d"),
            "closes_at_1": now.strftime("%H:%M:%S"),
            "case_ids": json.dumps(["H1#a", "nope#1"]),
        }
    )
    data.pop("opens_at"), data.pop("closes_at", None)
    resp = admin_client.post(url, data)
    assert resp.status_code == 200
    errors = resp.context["adminform"].form.errors
    assert set(errors) == {"case_ids", "closes_at"}, errors
    assert "nope#1" in errors["case_ids"][0]
    phase.refresh_from_db()
    assert phase.case_ids == ["H1#a", "H1#b"]

    data.update({"closes_at_0": "", "closes_at_1": "", "case_ids": json.dumps(["H1#b"])})
    resp = admin_client.post(url, data)
    assert resp.status_code == 302
    phase.refresh_from_db()
    assert phase.case_ids == ["H1#b"] and phase.closes_at is None


def test_model_errors_of_fields_a_form_does_not_show_go_to_the_top(world):
    from challenges.admin import ModelValidatedForm
    from challenges.models import Task

    class TitleOnly(ModelValidatedForm):
        class Meta:
            model = Task
            fields = ["title"]

    task = world["task"]
    task.primary_metric = "hd95"
    form = TitleOnly({"title": "New title"}, instance=task)
    assert not form.is_valid()
    assert any(m.startswith("primary_metric: ") for m in form.non_field_errors())


def test_another_phases_label_mismatch_blocks_saving_the_task_not_evaluating_this_phase(world):
    from challenges.models import Dataset, Phase
    from challenges.services import evaluation_spec

    other = Dataset.objects.create(
        name="other", role="test", source_path="/z", manifest=MANIFEST, label_names=["a", "b"]
    )
    Phase.objects.create(
        task=world["task"], slug="old", title="Old", test_dataset=other, case_ids=["H1#a"]
    )
    assert evaluation_spec(world["phase"]) == world["task"].spec
    assert any("phase old" in m for m in clean_errors(world["task"])["label_names"])


def test_pages_say_which_scored_classes_convention_the_task_uses(admin_client, world):
    from django.template.loader import render_to_string

    task = world["task"]
    html = admin_client.get(task.get_absolute_url()).content.decode()
    assert 'id="scored-classes"' in html and "as in htc and the xeno-learning study" in html
    task.scored_classes = "union"
    task.save()
    html = admin_client.get(task.get_absolute_url()).content.decode()
    assert "classes in the reference or the prediction" in html and "worst values" in html
    # the same sentence is the line above the leaderboard and the report's ranking
    line = render_to_string("challenges/_scored_classes.html", {"task": task})
    assert "a class only predicted counts with the worst values" in line
