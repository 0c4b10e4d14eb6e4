"""score_image against the slow reference, analytic cases, edge cases and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluator.metrics import ScoringError, score_image, worst_rows
from tests.evaluator.metrics.reference import blob_pair, reference_scores

METRIC_KEYS = ("dsc", "iou", "nsd", "hd95", "hd", "masd", "assd", "tp", "fp", "fn")


def assert_matches_reference(pred, ref, k, ignore=255, tol=1.0):
    got = {
        row["label"]: row
        for row in score_image(
            pred, ref, num_classes=k, ignore_index=ignore, nsd_tolerance=tol
        ).rows
    }
    want = reference_scores(pred, ref, k, ignore, tol)
    assert sorted(got) == sorted(want)
    for label, exp in want.items():
        for key in METRIC_KEYS:
            assert got[label][key] == pytest.approx(exp[key], abs=1e-12), (label, key)


@pytest.mark.parametrize("seed", range(6))
def test_random_blobs_match_reference(seed):
    rng = np.random.default_rng(seed)
    pred, ref = blob_pair(rng, shape=(60, 80), num_classes=6, noise=0.2 + 0.15 * seed)
    assert_matches_reference(pred, ref, 6, tol=[0, 1, 1.5, 2, 3, 5])


def test_many_small_blobs_and_far_islands_match_reference():
    rng = np.random.default_rng(42)
    # Salt-and-pepper prediction: thousands of single-pixel islands far from their class.
    ref = np.zeros((70, 90), np.uint8)
    ref[10:30, 10:40] = 1
    ref[40:65, 50:85] = 2
    ref[5:8, 70:88] = 3
    pred = ref.copy()
    flip = rng.random(ref.shape) < 0.08
    pred[flip] = rng.integers(0, 4, flip.sum())
    assert_matches_reference(pred, ref, 4, tol=2.0)


def test_uniform_noise_matches_reference():
    rng = np.random.default_rng(7)
    pred = rng.integers(0, 4, (40, 50)).astype(np.int32)
    ref = rng.integers(0, 4, (40, 50)).astype(np.int64)
    ref[rng.random(ref.shape) < 0.2] = 255
    assert_matches_reference(pred, ref, 4)


def test_shifted_square_analytic():
    ref = np.zeros((40, 40), np.uint8)
    pred = np.zeros((40, 40), np.uint8)
    ref[10:20, 10:20] = 1
    pred[10:20, 13:23] = 1
    rows = {r["label"]: r for r in score_image(pred, ref, num_classes=2, nsd_tolerance=[0, 1]).rows}
    one = rows[1]
    assert (one["tp"], one["fp"], one["fn"]) == (70, 30, 30)
    assert one["dsc"] == pytest.approx(0.7)
    assert one["iou"] == pytest.approx(70 / 130)
    assert one["hd"] == 3.0
    assert one["hd95"] == 3.0
    # Border of a 10x10 square: 36 pixels. Shifted by 3 columns: the top and
    # bottom rows overlap on 7 of 10 pixels; per side distances are symmetric.
    assert one["pred_border"] == one["ref_border"] == 36
    assert 0 < one["masd"] < 3
    assert one["masd"] == pytest.approx(one["assd"])


def test_perfect_prediction():
    rng = np.random.default_rng(3)
    _, ref = blob_pair(rng, num_classes=4)
    pred = np.where(ref == 255, 0, ref)
    for row in score_image(pred, ref, num_classes=4).rows:
        assert row["dsc"] == row["iou"] == row["nsd"] == 1.0
        assert row["hd95"] == row["hd"] == row["masd"] == row["assd"] == 0.0
        assert row["status"] == "ok"


def test_single_pixels_and_corners():
    ref = np.zeros((9, 12), np.uint8)
    pred = np.zeros((9, 12), np.uint8)
    ref[0, 0] = 1
    pred[8, 11] = 1
    ref[4, 5] = 2
    pred[4, 5] = 2
    rows = {r["label"]: r for r in score_image(pred, ref, num_classes=3).rows}
    assert rows[1]["dsc"] == 0.0
    assert rows[1]["hd"] == pytest.approx(math.hypot(8, 11))
    assert rows[1]["ref_border"] == rows[1]["pred_border"] == 1
    assert rows[2]["dsc"] == 1.0 and rows[2]["hd"] == 0.0
    assert_matches_reference(pred, ref, 3)


def test_full_image_class_borders_are_the_image_edge():
    ref = np.zeros((6, 7), np.uint8)
    rows = score_image(ref.copy(), ref, num_classes=2).rows
    assert len(rows) == 1
    assert rows[0]["ref_border"] == 2 * 6 + 2 * 7 - 4


def test_one_sided_classes_get_worst_values():
    ref = np.zeros((30, 40), np.uint8)
    pred = np.zeros((30, 40), np.uint8)
    ref[5:10, 5:10] = 1  # missed entirely
    pred[20:25, 20:25] = 2  # false class
    rows = {
        r["label"]: r for r in score_image(pred, ref, num_classes=4, scored_classes="union").rows
    }
    assert sorted(rows) == [0, 1, 2]  # class 3 absent from both: not scored
    diag = math.hypot(30, 40)
    for label, status in ((1, "pred_empty"), (2, "ref_empty")):
        r = rows[label]
        assert r["status"] == status
        assert (r["dsc"], r["iou"], r["nsd"]) == (0.0, 0.0, 0.0)
        assert r["hd95"] == r["hd"] == r["masd"] == r["assd"] == diag == 50.0
    assert rows[1]["fn"] == 25 and rows[2]["fp"] == 25


def test_reference_convention_drops_prediction_only_classes():
    """htc's convention (the default): an image is scored on its reference's classes, so a
    class only predicted adds no row (and no 0 to the image mean); a missed class still gets
    the worst values. The confusion matrix is the same under both conventions."""
    ref = np.zeros((30, 40), np.uint8)
    pred = np.zeros((30, 40), np.uint8)
    ref[5:10, 5:10] = 1  # missed entirely
    pred[20:25, 20:25] = 2  # false class
    default = score_image(pred, ref, num_classes=4)
    union = score_image(pred, ref, num_classes=4, scored_classes="union")
    assert [r["label"] for r in default.rows] == [0, 1]
    assert default.rows[1]["status"] == "pred_empty" and default.rows[1]["dsc"] == 0.0
    assert default.rows == union.rows[:2]
    np.testing.assert_array_equal(default.confusion, union.confusion)
    assert default.confusion[0, 2] == 25
    # image means: reference (0.9897 + 0) / 2 against union (0.9897 + 0 + 0) / 3
    dsc0 = 2 * (1200 - 50) / (2 * (1200 - 50) + 25 + 25)
    assert np.mean([r["dsc"] for r in default.rows]) == pytest.approx(dsc0 / 2)
    assert np.mean([r["dsc"] for r in union.rows]) == pytest.approx(dsc0 / 3)
    with pytest.raises(ScoringError, match="scored_classes"):
        score_image(pred, ref, num_classes=4, scored_classes="prediction")


def test_ignore_only_image_has_no_rows():
    ref = np.full((20, 20), 255, np.uint8)
    pred = np.ones((20, 20), np.uint8)
    scores = score_image(pred, ref, num_classes=3, case_id="c1")
    assert scores.rows == []
    assert scores.confusion.shape == (3, 3)
    assert scores.confusion.sum() == 0


def test_class_only_in_ignored_area_is_not_scored():
    ref = np.zeros((20, 20), np.uint8)
    ref[:, 10:] = 255
    pred = np.zeros((20, 20), np.uint8)
    pred[:, 12:] = 1  # only where the reference is ignored
    rows = score_image(pred, ref, num_classes=2).rows
    assert [r["label"] for r in rows] == [0]
    assert rows[0]["dsc"] == 1.0 and rows[0]["hd"] == 0.0


def test_confusion_matrix_counts_valid_pixels():
    rng = np.random.default_rng(11)
    pred = rng.integers(0, 5, (30, 31)).astype(np.uint16)
    ref = rng.integers(0, 5, (30, 31)).astype(np.int16)
    ref[rng.random(ref.shape) < 0.3] = -1
    conf = score_image(pred, ref, num_classes=5, ignore_index=-1).confusion
    want = np.zeros((5, 5), np.int64)
    for r, p in zip(ref.ravel(), pred.ravel(), strict=True):
        if r != -1:
            want[r, p] += 1
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, want)


def test_records_add_case_and_metadata():
    ref = np.zeros((5, 5), np.uint8)
    s = score_image(ref, ref, num_classes=1, case_id="P1#t")
    rec = s.records(subject="P1", species="pig")
    assert rec[0]["case"] == "P1#t" and rec[0]["subject"] == "P1" and rec[0]["label"] == 0
    assert s.labels == (0,)


def test_worst_rows():
    rows = worst_rows(3, 480, 640)
    assert [r["label"] for r in rows] == [0, 1, 2]
    assert all(r["dsc"] == 0 and r["nsd"] == 0 and r["hd95"] == 800.0 for r in rows)
    rows = worst_rows([4, 7], 3, 4, status="failed")
    assert [r["label"] for r in rows] == [4, 7]
    assert rows[0]["masd"] == 5.0 and rows[0]["status"] == "failed"


@pytest.mark.parametrize(
    ("pred", "ref", "kwargs", "fragment"),
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), {}, "shape mismatch"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), {}, "integer"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8), {}, "integer"),
        (np.zeros((4, 4, 1), np.uint8), np.zeros((4, 4, 1), np.uint8), {}, "2D"),
        (np.full((4, 4), 3, np.uint8), np.zeros((4, 4), np.uint8), {}, "prediction has labels"),
        (
            np.full((4, 4), 255, np.uint8),
            np.full((4, 4), 255, np.uint8),
            {},
            "prediction has labels",
        ),
        (np.full((4, 4), -1, np.int8), np.zeros((4, 4), np.uint8), {}, "prediction has labels"),
        (np.zeros((4, 4), np.uint8), np.full((4, 4), 7, np.uint8), {}, "reference has labels"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), {"ignore_index": 1}, "collides"),
        (
            np.zeros((4, 4), np.uint8),
            np.zeros((4, 4), np.uint8),
            {"nsd_tolerance": [1, 2]},
            "one value per class",
        ),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), {"nsd_tolerance": -1}, ">= 0"),
        (np.zeros((0, 4), np.uint8), np.zeros((0, 4), np.uint8), {}, "empty"),
    ],
)
def test_validation_names_the_case(pred, ref, kwargs, fragment):
    with pytest.raises(ScoringError, match=fragment) as err:
        score_image(pred, ref, num_classes=3, case_id="R002#2020_01_01", **kwargs)
    assert "R002#2020_01_01" in str(err.value)


def test_many_classes_in_small_dtypes():
    ref = np.zeros((8, 8), np.uint16)
    ref[2:5, 2:5] = 299
    ref[0, :] = 1000
    pred = np.where(ref == 1000, 3, ref).astype(np.uint16)
    scores = score_image(pred, ref, num_classes=300, ignore_index=1000)
    assert [r["label"] for r in scores.rows] == [0, 299]
    assert all(r["dsc"] == 1.0 for r in scores.rows)
    assert scores.confusion.shape == (300, 300)
