"""Property-based tests (hypothesis) on small label maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evaluator.metrics import border_mask, score_image
from tests.evaluator.metrics.reference import loop_border, reference_scores

K = 3
IGNORE = 255
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def label_pair(draw, with_ignore: bool = True):
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12))
    pred = draw(arrays(np.uint8, (h, w), elements=st.integers(0, K - 1)))
    ref_values = st.sampled_from([0, 1, 2, IGNORE]) if with_ignore else st.integers(0, K - 1)
    ref = draw(arrays(np.uint8, (h, w), elements=ref_values))
    return pred, ref


def rows_by_label(pred, ref, **kw):
    return {r["label"]: r for r in score_image(pred, ref, num_classes=K, **kw).rows}


@SETTINGS
@given(label_pair(), st.sampled_from([0.0, 1.0, 1.5, 3.0]))
def test_matches_reference(pair, tol):
    pred, ref = pair
    got = rows_by_label(pred, ref, nsd_tolerance=tol, scored_classes="union")
    want = reference_scores(pred, ref, K, IGNORE, tol)
    assert sorted(got) == sorted(want)
    for label, exp in want.items():
        for key, value in exp.items():
            assert got[label][key] == pytest.approx(value, abs=1e-12), (label, key)
    # htc's convention (the default): the same rows, restricted to the reference's classes
    in_ref = set(np.unique(ref[ref != IGNORE]).tolist())
    by_ref = rows_by_label(pred, ref, nsd_tolerance=tol)
    assert set(by_ref) == in_ref
    assert all(by_ref[label] == got[label] for label in in_ref)


@SETTINGS
@given(label_pair(with_ignore=False))
def test_symmetric_in_pred_and_ref(pair):
    pred, ref = pair
    # only the union convention is symmetric: "reference" scores the second map's classes
    a = score_image(pred, ref, num_classes=K, scored_classes="union")
    b = score_image(ref, pred, num_classes=K, scored_classes="union")
    np.testing.assert_array_equal(a.confusion, b.confusion.T)
    rows_a = {r["label"]: r for r in a.rows}
    rows_b = {r["label"]: r for r in b.rows}
    assert sorted(rows_a) == sorted(rows_b)
    for label, ra in rows_a.items():
        for key in ("dsc", "iou", "nsd", "hd95", "hd", "masd", "assd"):
            assert ra[key] == pytest.approx(rows_b[label][key], abs=1e-12)


@SETTINGS
@given(label_pair(), st.data())
def test_prediction_in_ignored_pixels_does_not_matter(pair, data):
    _, ref = pair
    pred = np.where(ref == IGNORE, 0, ref).astype(np.uint8)
    noise = data.draw(arrays(np.uint8, ref.shape, elements=st.integers(0, K - 1)))
    pred2 = np.where(ref == IGNORE, noise, pred).astype(np.uint8)
    for row in score_image(pred2, ref, num_classes=K).rows:
        assert row["dsc"] == row["nsd"] == 1.0
        assert row["hd95"] == row["masd"] == 0.0


@SETTINGS
@given(label_pair())
def test_ranges_and_counts(pair):
    pred, ref = pair
    s = score_image(pred, ref, num_classes=K)
    diag = float(np.hypot(*ref.shape))
    assert s.confusion.sum() == int((ref != IGNORE).sum())
    for r in s.rows:
        assert 0 <= r["iou"] <= r["dsc"] <= 1
        assert 0 <= r["nsd"] <= 1
        assert 0 <= r["masd"] <= r["hd"] <= diag
        assert 0 <= r["assd"] <= r["hd"]
        assert r["hd95"] <= r["hd"]
        assert r["tp"] + r["fn"] == r["ref_pixels"]
        assert r["tp"] + r["fp"] == r["pred_pixels"]


@SETTINGS
@given(
    arrays(np.int16, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.integers(0, 3))
)
def test_border_mask_matches_loops(labels):
    got = border_mask(labels, outside=3)
    for c in range(3):
        mask = labels == c
        np.testing.assert_array_equal(got & mask, loop_border(mask))
    assert not (got & (labels == 3)).any()
