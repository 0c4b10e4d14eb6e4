"""nearest_border_distances: brute force, and equality of the ring and KD-tree paths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from evaluator.metrics.boundary import border_points
from evaluator.metrics.distances import nearest_border_distances
from tests.evaluator.metrics.reference import blob_pair


def brute_force(q_idx, q_lab, t_idx, t_lab, w, scored):
    out = np.full(q_idx.size, np.nan)
    for c in np.flatnonzero(scored):
        qm, tm = q_lab == c, t_lab == c
        if qm.any() and tm.any():
            q = np.column_stack(np.divmod(q_idx[qm], w))
            t = np.column_stack(np.divmod(t_idx[tm], w))
            out[qm] = cdist(q, t).min(axis=1)
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ring_radius2", [0, 1, 2, 8, 50])
def test_matches_brute_force_for_any_ring(seed, ring_radius2):
    rng = np.random.default_rng(seed)
    pred, ref = blob_pair(rng, shape=(40, 55), num_classes=5, noise=0.8, ignore_frac=0.0)
    p_idx, p_lab = border_points(pred.astype(np.int16), 99)
    r_idx, r_lab = border_points(ref.astype(np.int16), 99)
    scored = np.zeros(6, bool)
    scored[:5] = np.isin(np.arange(5), p_lab) & np.isin(np.arange(5), r_lab)
    got = nearest_border_distances(
        p_idx, p_lab, r_idx, r_lab, pred.shape, scored, ring_radius2=ring_radius2
    )
    want = brute_force(p_idx, p_lab, r_idx, r_lab, pred.shape[1], scored)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    # Bit-identical: both stages round sqrt(dy^2 + dx^2) once.
    np.testing.assert_array_equal(got[ok], np.sqrt(np.round(want[ok] ** 2)))


def test_unscored_labels_are_nan():
    labels = np.array([[0, 0, 1], [0, 1, 1]], np.int16)
    idx, lab = border_points(labels, 9)
    scored = np.array([True, False, False])
    d = nearest_border_distances(idx, lab, idx, lab, labels.shape, scored)
    assert np.all(d[lab == 0] == 0) and np.all(np.isnan(d[lab == 1]))
