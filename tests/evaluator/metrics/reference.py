"""Slow, obviously-correct reference scorer used only by the tests.

Independent of evaluator.metrics: one class at a time on the full image,
borders via binary erosion, distances via a full-image Euclidean distance
transform, percentiles via np.percentile.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

CROSS = ndi.generate_binary_structure(2, 1)


def reference_border(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask or outside the image."""
    return mask & ~ndi.binary_erosion(mask, structure=CROSS, border_value=0)


def loop_border(mask: np.ndarray) -> np.ndarray:
    """The same definition written as plain loops (for small masks)."""
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                yy, xx = y + dy, x + dx
                if not (0 <= yy < h and 0 <= xx < w) or not mask[yy, xx]:
                    out[y, x] = True
    return out


def directed_distances(src_border: np.ndarray, dst_border: np.ndarray) -> np.ndarray:
    """Distance from every src border pixel to the nearest dst border pixel (EDT)."""
    edt = ndi.distance_transform_edt(~dst_border)
    return edt[src_border]


def reference_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    num_classes: int,
    ignore_index: int = 255,
    tolerance: float | list[float] = 1.0,
) -> dict[int, dict[str, float]]:
    """Label -> metric dict, with the worst-value policy for one-sided classes."""
    tol = [tolerance] * num_classes if np.isscalar(tolerance) else list(tolerance)
    valid = ref != ignore_index
    diag = math.hypot(*ref.shape)
    out: dict[int, dict[str, float]] = {}
    for c in range(num_classes):
        p = (pred == c) & valid
        r = (ref == c) & valid
        if not p.any() and not r.any():
            continue
        tp = int((p & r).sum())
        fp = int((p & ~r).sum())
        fn = int((~p & r).sum())
        row: dict[str, float] = {"tp": tp, "fp": fp, "fn": fn}
        if p.any() and r.any():
            bp, br = reference_border(p), reference_border(r)
            dp, dr = directed_distances(bp, br), directed_distances(br, bp)
            both = np.concatenate([dp, dr])
            row.update(
                dsc=2 * tp / (2 * tp + fp + fn),
                iou=tp / (tp + fp + fn),
                nsd=float(np.mean(both <= tol[c])),
                hd95=max(np.percentile(dp, 95), np.percentile(dr, 95)),
                hd=float(both.max()),
                masd=(dp.mean() + dr.mean()) / 2,
                assd=float(both.mean()),
            )
        else:
            row.update(dsc=0.0, iou=0.0, nsd=0.0, hd95=diag, hd=diag, masd=diag, assd=diag)
        out[c] = row
    return out


def blob_pair(
    rng: np.random.Generator,
    shape: tuple[int, int] = (60, 80),
    num_classes: int = 5,
    noise: float = 0.4,
    ignore_frac: float = 0.05,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth blobs: reference, and a perturbed prediction."""
    h, w = shape
    fields = ndi.gaussian_filter(rng.standard_normal((num_classes, h, w)), sigma=(0, 4, 4))
    ref = fields.argmax(axis=0).astype(np.uint8)
    pert = ndi.gaussian_filter(rng.standard_normal((num_classes, h, w)), sigma=(0, 2, 2))
    pred = (fields + noise * pert * fields.std() / pert.std()).argmax(axis=0).astype(np.uint8)
    ref[rng.random((h, w)) < ignore_frac] = ignore_index
    return pred, ref
