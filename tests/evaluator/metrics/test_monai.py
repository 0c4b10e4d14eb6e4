"""Cross-check against MONAI when it is installed (requirements-bench.txt); skipped otherwise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from evaluator.metrics import score_image
from tests.evaluator.metrics.reference import blob_pair

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics", exc_type=ImportError)


def one_hot(labels: np.ndarray, valid: np.ndarray, k: int):
    oh = np.stack([(labels == c) & valid for c in range(k)])[None].astype(np.float32)
    return torch.from_numpy(oh)


def test_same_values_as_monai():
    k = 5
    rng = np.random.default_rng(5)
    pred, ref = blob_pair(rng, shape=(64, 80), num_classes=k, noise=0.5)
    valid = ref != 255
    p, r = one_hot(pred, valid, k), one_hot(ref, valid, k)
    tol = [0.0, 1.0, 2.0, 3.0, 1.5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = monai_metrics.compute_hausdorff_distance(
            p, r, include_background=True, percentile=95
        )[0]
        hd = monai_metrics.compute_hausdorff_distance(p, r, include_background=True)[0]
        nsd = monai_metrics.compute_surface_dice(p, r, tol, include_background=True)[0]
        assd = monai_metrics.compute_average_surface_distance(
            p, r, include_background=True, symmetric=True
        )[0]
        asd_pr = monai_metrics.compute_average_surface_distance(p, r, include_background=True)[0]
        asd_rp = monai_metrics.compute_average_surface_distance(r, p, include_background=True)[0]
        dice = monai_metrics.compute_dice(p, r, include_background=True)[0]
    rows = score_image(pred, ref, num_classes=k, nsd_tolerance=tol).rows
    assert len(rows) == k
    for row in rows:
        c = row["label"]
        assert row["dsc"] == pytest.approx(float(dice[c]), abs=1e-6)
        assert row["nsd"] == pytest.approx(float(nsd[c]), abs=1e-6)
        # MONAI returns float32; we keep float64.
        assert row["hd95"] == pytest.approx(float(hd95[c]), abs=1e-4)
        assert row["hd"] == pytest.approx(float(hd[c]), abs=1e-4)
        assert row["assd"] == pytest.approx(float(assd[c]), abs=1e-4)
        assert row["masd"] == pytest.approx((float(asd_pr[c]) + float(asd_rp[c])) / 2, abs=1e-4)
