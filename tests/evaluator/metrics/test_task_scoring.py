"""Scoring with a TaskSpec gives exactly what score_image gives with the task's settings spelled
out, limited to the scored labels (the rule the platform applied by hand before)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.metrics import (
    STATUS_FAILED,
    failed_case_rows,
    score_image,
    score_task_image,
    scored_rows,
    worst_rows,
)
from evaluator.taskspec import TaskSpec
from tests.evaluator.metrics.reference import blob_pair

NAMES = ["background", "stomach", "kidney", "liver", "spleen"]


def spec(**changes) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "label_names": NAMES,
            "source_species": ["pig"],
            "source_states": ["physiological"],
            "target_species": ["human"],
            "target_states": ["malperfused"],
            **changes,
        }
    )


def pair(seed: int):
    rng = np.random.default_rng(seed)
    pred, ref = blob_pair(rng, shape=(40, 50), num_classes=len(NAMES), noise=0.3)
    ref = ref.copy()
    ref[:3, :] = 255  # some ignored pixels
    return pred, ref


@pytest.mark.parametrize("seed", range(3))
def test_all_classes_scored_equals_score_image(seed):
    pred, ref = pair(seed)
    s = spec(nsd_tolerances=[0, 1, 2, 3, 4])
    got = score_task_image(pred, ref, s, case_id="c")
    want = score_image(pred, ref, num_classes=5, ignore_index=255, nsd_tolerance=[0, 1, 2, 3, 4])
    assert got.rows == want.rows
    assert got.labels == want.labels
    np.testing.assert_array_equal(got.confusion, want.confusion)
    assert (got.height, got.width, got.case_id) == (40, 50, "c")


@pytest.mark.parametrize("convention", ["reference", "union"])
def test_the_tasks_scored_classes_convention_is_applied(convention):
    ref = np.zeros((20, 30), np.uint8)
    pred = ref.copy()
    pred[5:9, 5:9] = 3  # liver only predicted
    got = score_task_image(pred, ref, spec(scored_classes=convention))
    want = score_image(pred, ref, num_classes=5, scored_classes=convention)
    assert got.rows == want.rows
    assert got.labels == ((0,) if convention == "reference" else (0, 3))


def test_default_tolerance_is_score_images_default():
    pred, ref = pair(7)
    got = score_task_image(pred, ref, spec())
    assert got.rows == score_image(pred, ref, num_classes=5).rows


@pytest.mark.parametrize("seed", range(3))
def test_scored_labels_keep_only_their_rows(seed):
    pred, ref = pair(seed)
    s = spec(scored_labels=["spleen", "kidney"])
    got = score_task_image(pred, ref, s)
    full = score_image(pred, ref, num_classes=5).rows
    # the rule the platform applied before: keep rows whose label name is scored
    want = [r for r in full if NAMES[r["label"]] in {"kidney", "spleen"}]
    assert got.rows == want and want
    assert got.labels == tuple(r["label"] for r in want)
    assert got.confusion.shape == (5, 5)  # the confusion matrix keeps every class


def test_failed_case_rows_are_the_worst_rows_of_the_scored_reference_classes():
    ref = np.full((6, 8), 255, np.uint8)
    ref[1:3, 1:3] = 0
    ref[3:5, 4:7] = 2
    got = failed_case_rows(ref, spec())
    assert got == worst_rows([0, 2], 6, 8, status=STATUS_FAILED)
    assert failed_case_rows(ref, spec(scored_labels=["kidney"])) == worst_rows(
        [2], 6, 8, status=STATUS_FAILED
    )
    assert failed_case_rows(ref, spec(scored_labels=["liver"])) == []


def test_scored_rows_filters_by_index():
    rows = [{"label": i} for i in range(5)]
    assert scored_rows(rows, spec()) == rows
    assert scored_rows(rows, spec(scored_labels=["stomach", "liver"])) == [rows[1], rows[3]]
