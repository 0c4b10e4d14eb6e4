"""TaskSpec: every validation rule, the defaults, the metric direction and the one home of the
ranking defaults."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest

from datasets.manifest import SPECIES, TISSUE_STATES
from datasets.spectral import N_CHANNELS, PREPROCESSINGS
from evaluator.metrics import CASE_METRICS, DEFAULT_NSD_TOLERANCE, HIGHER_IS_BETTER
from evaluator.ranking import RankingError, rank_methods
from evaluator.ranking.settings import (
    DEFAULT_ALPHA,
    DEFAULT_N_BOOTSTRAP,
    DEFAULT_SEED,
    RankingSettings,
    RankingSettingsError,
)
from evaluator.taskspec import MAX_CLASSES, MAX_LABEL_NAME, TaskSpec, TaskSpecError

NAMES = ["background", "kidney", "liver"]


def settings(**changes):
    base = {
        "label_names": NAMES,
        "source_species": ["pig"],
        "source_states": ["physiological", "malperfused"],
        "target_species": ["human"],
        "target_states": ["malperfused"],
    }
    return {**base, **changes}


def errors_of(**changes) -> dict[str, list[str]]:
    with pytest.raises(TaskSpecError) as info:
        TaskSpec.from_dict(settings(**changes))
    return info.value.errors


def only_error(field: str, **changes) -> str:
    """The single problem reported, which must be on `field` alone."""
    errors = errors_of(**changes)
    assert list(errors) == [field], errors
    assert len(errors[field]) == 1, errors
    return errors[field][0]


# --- defaults and derived values ---------------------------------------------------------------
def test_defaults():
    spec = TaskSpec.from_dict(settings())
    assert spec.label_names == tuple(NAMES)
    assert spec.ignore_index == 255
    assert spec.preprocessing == "l1"
    assert spec.primary_metric == "dsc"
    assert spec.n_channels == N_CHANNELS == 100
    assert spec.scored_labels == ()
    assert spec.scored_classes == "reference"  # htc's and the study's convention
    assert spec.nsd_tolerances == (DEFAULT_NSD_TOLERANCE,) * 3
    assert spec.ranking == RankingSettings(
        n_bootstrap=DEFAULT_N_BOOTSTRAP, alpha=DEFAULT_ALPHA, seed=DEFAULT_SEED
    )
    assert spec.num_classes == 3
    assert spec.scored_indices == (0, 1, 2)


def test_none_counts_as_missing():
    spec = TaskSpec.from_dict(settings(nsd_tolerances=None, scored_labels=None, ranking=None))
    assert spec.nsd_tolerances == (DEFAULT_NSD_TOLERANCE,) * 3
    assert spec.scored_labels == ()
    assert spec.ranking == RankingSettings()


def test_lists_become_tuples_and_the_spec_is_frozen_and_hashable():
    spec = TaskSpec.from_dict(settings(nsd_tolerances=[1, 2, 3.5], scored_labels=["kidney"]))
    assert spec.nsd_tolerances == (1.0, 2.0, 3.5)
    assert all(isinstance(t, float) for t in spec.nsd_tolerances)
    assert isinstance(spec.source_states, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.primary_metric = "nsd"
    assert {spec: 1}[TaskSpec.from_dict(spec.to_dict())] == 1


def test_round_trip_through_json_dict():
    spec = TaskSpec.from_dict(
        settings(
            nsd_tolerances=[2, 2, 3],
            scored_labels=["kidney"],
            primary_metric="nsd",
            preprocessing="none",
            ranking={"n_bootstrap": 10, "alpha": 0.1, "seed": 3},
            ignore_index=200,
        )
    )
    data = spec.to_dict()
    assert data["ranking"] == {"n_bootstrap": 10, "alpha": 0.1, "seed": 3}
    assert data["label_names"] == NAMES
    assert TaskSpec.from_dict(data) == spec


def test_scored_indices_follow_label_order_not_the_listed_order():
    spec = TaskSpec.from_dict(settings(scored_labels=["liver", "background"]))
    assert spec.scored_indices == (0, 2)


@pytest.mark.parametrize("metric", CASE_METRICS)
def test_direction_of_the_primary_metric(metric):
    spec = TaskSpec.from_dict(settings(primary_metric=metric))
    assert spec.higher_is_better is HIGHER_IS_BETTER[metric]


def test_every_known_preprocessing_is_accepted():
    for method in PREPROCESSINGS:
        assert TaskSpec.from_dict(settings(preprocessing=method)).preprocessing == method


def test_direct_construction_validates_too():
    with pytest.raises(TaskSpecError) as info:
        TaskSpec(label_names=("a", "a"), source_species=("pig",))
    assert {"label_names", "source_states", "target_species", "target_states"} <= set(
        info.value.errors
    )


# --- label names -------------------------------------------------------------------------------
def test_label_names_required_and_non_empty():
    assert "at least one class" in only_error("label_names", label_names=[])
    data = settings()
    del data["label_names"]
    with pytest.raises(TaskSpecError) as info:
        TaskSpec.from_dict(data)
    assert list(info.value.errors) == ["label_names"]


def test_duplicate_label_names():
    msg = only_error("label_names", label_names=["a", "b", "a"])
    assert "twice" in msg and "a" in msg


@pytest.mark.parametrize("bad", [["a", ""], ["a", "  "], ["a", 3], ["a", None]])
def test_label_names_must_be_non_empty_text(bad):
    assert "non-empty text" in only_error("label_names", label_names=bad)


def test_label_names_must_be_a_list_not_a_string():
    assert "must be a list" in only_error("label_names", label_names="background,kidney")


def test_label_name_length_and_class_count_limits():
    assert str(MAX_LABEL_NAME) in only_error("label_names", label_names=["a", "x" * 51])
    many = [f"c{i}" for i in range(MAX_CLASSES + 1)]
    errors = errors_of(label_names=many)
    assert any(f"at most {MAX_CLASSES} classes" in m for m in errors["label_names"])


# --- ignore index ------------------------------------------------------------------------------
def test_ignore_index_colliding_with_a_class():
    msg = only_error("ignore_index", ignore_index=1)
    assert "collides" in msg and "'kidney'" in msg
    assert TaskSpec.from_dict(settings(ignore_index=3)).ignore_index == 3


@pytest.mark.parametrize("bad", [-1, 256, True, 2.0, "255"])
def test_ignore_index_must_be_a_uint8_integer(bad):
    assert "0..255" in only_error("ignore_index", ignore_index=bad)


# --- preprocessing, primary metric -------------------------------------------------------------
def test_unknown_preprocessing():
    msg = only_error("preprocessing", preprocessing="L1")
    assert "'L1'" in msg and "l1" in msg


@pytest.mark.parametrize("metric", ["iou", "hd95", "DSC", ""])
def test_primary_metric_must_be_stored_per_case(metric):
    msg = only_error("primary_metric", primary_metric=metric)
    assert "stores per case" in msg and "dsc, nsd" in msg


@pytest.mark.parametrize("value", ["reference", "union"])
def test_scored_classes_conventions_round_trip(value):
    spec = TaskSpec.from_dict(settings(scored_classes=value))
    assert spec.scored_classes == value
    assert TaskSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("bad", ["Reference", "prediction", "", 1])
def test_unknown_scored_classes(bad):
    msg = only_error("scored_classes", scored_classes=bad)
    assert "reference, union" in msg


# --- NSD tolerances ----------------------------------------------------------------------------
def test_tolerance_count_must_match_the_classes():
    msg = only_error("nsd_tolerances", nsd_tolerances=[1, 2])
    assert "2 value(s) for 3 classes" in msg


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "2", True, None])
def test_tolerances_must_be_finite_non_negative_numbers(bad):
    msg = only_error("nsd_tolerances", nsd_tolerances=[1, bad, 1])
    assert ">= 0" in msg


def test_tolerance_zero_is_allowed_and_a_scalar_is_not():
    assert TaskSpec.from_dict(settings(nsd_tolerances=[0, 0, 0])).nsd_tolerances == (0.0,) * 3
    assert "list of numbers" in only_error("nsd_tolerances", nsd_tolerances=2.0)


# --- scored labels -----------------------------------------------------------------------------
def test_scored_labels_must_be_label_names():
    msg = only_error("scored_labels", scored_labels=["kidney", "kidneys"])
    assert "'kidneys'" in msg and "not among the label names" in msg


def test_scored_labels_duplicates_and_type():
    assert "twice" in only_error("scored_labels", scored_labels=["kidney", "kidney"])
    assert "list of class names" in only_error("scored_labels", scored_labels="kidney")


# --- species and tissue states -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "vocabulary"),
    [
        ("source_species", SPECIES),
        ("target_species", SPECIES),
        ("source_states", TISSUE_STATES),
        ("target_states", TISSUE_STATES),
    ],
)
def test_species_and_states_come_from_the_dataset_vocabulary(field, vocabulary):
    msg = only_error(field, **{field: [vocabulary[0], "Pig-ish"]})
    assert "'Pig-ish'" in msg and all(v in msg for v in vocabulary)
    assert "at least one" in only_error(field, **{field: []})
    assert "twice" in only_error(field, **{field: [vocabulary[0], vocabulary[0]]})
    assert "must be a list" in only_error(field, **{field: vocabulary[0]})
    assert getattr(TaskSpec.from_dict(settings(**{field: list(vocabulary)})), field) == tuple(
        vocabulary
    )


def test_unknown_name_reported_once():
    assert len(errors_of(source_species=["cat", "cat"])["source_species"]) == 2  # unknown + twice


# --- ranking -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ranking", "words"),
    [
        ({"alpha": 0}, "alpha must lie in (0, 1)"),
        ({"alpha": 1}, "alpha must lie in (0, 1)"),
        ({"alpha": 1.5}, "alpha must lie in (0, 1)"),
        ({"alpha": math.nan}, "alpha must lie in (0, 1)"),
        ({"alpha": "0.05"}, "alpha must lie in (0, 1)"),
        ({"n_bootstrap": -1}, "n_bootstrap must be a whole number >= 0"),
        ({"n_bootstrap": 2.5}, "n_bootstrap must be a whole number >= 0"),
        ({"n_bootstrap": True}, "n_bootstrap must be a whole number >= 0"),
        ({"seed": -3}, "seed must be a whole number >= 0"),
        ({"n_boostrap": 10}, "unknown ranking setting 'n_boostrap'"),
        (["n_bootstrap", 10], "must be an object"),
    ],
)
def test_invalid_ranking_settings(ranking, words):
    assert words in only_error("ranking", ranking=ranking)


def test_ranking_partial_settings_keep_the_other_defaults():
    spec = TaskSpec.from_dict(settings(ranking={"n_bootstrap": 0, "alpha": 0.01}))
    assert spec.ranking == RankingSettings(n_bootstrap=0, alpha=0.01, seed=DEFAULT_SEED)
    assert TaskSpec.from_dict(settings(ranking={"n_bootstrap": 200.0})).ranking.n_bootstrap == 200


def test_ranking_settings_validate_on_construction():
    with pytest.raises(RankingSettingsError) as info:
        RankingSettings(n_bootstrap=-1, alpha=2.0)
    assert len(info.value.problems) == 2
    assert isinstance(info.value, RankingError)  # the ranking engine's error family


def test_the_ranking_engine_takes_its_defaults_from_the_settings():
    params = inspect.signature(rank_methods).parameters
    assert params["n_bootstrap"].default == RankingSettings().n_bootstrap == DEFAULT_N_BOOTSTRAP
    assert params["alpha"].default == RankingSettings().alpha == DEFAULT_ALPHA
    assert params["seed"].default == RankingSettings().seed == DEFAULT_SEED


# --- the error itself --------------------------------------------------------------------------
def test_every_problem_is_reported_at_once_by_field():
    with pytest.raises(TaskSpecError) as info:
        TaskSpec.from_dict(
            settings(
                label_names=["a", "b"],
                ignore_index=0,
                nsd_tolerances=[1],
                scored_labels=["c"],
                primary_metric="hd95",
                preprocessing="zscore",
                ranking={"alpha": 2},
                source_species=["dog"],
                target_states=[],
                n_channels=0,
                colour="blue",
            )
        )
    exc = info.value
    assert isinstance(exc, ValueError)
    assert set(exc.errors) == {
        "ignore_index",
        "nsd_tolerances",
        "scored_labels",
        "primary_metric",
        "preprocessing",
        "ranking",
        "source_species",
        "target_states",
        "n_channels",
        "colour",
    }
    assert exc.errors["colour"] == ["unknown task setting 'colour'"]
    assert "primary_metric:" in str(exc) and "ranking:" in str(exc)
