"""Pixel-counting boundary definition shared by all distance metrics.

A pixel belongs to the border of its label when at least one of its four edge
neighbours (up, down, left, right) carries a different label or lies outside the
image. This equals ``mask ^ binary_erosion(mask)`` with SciPy's default cross
structure and ``border_value=0``, i.e. exactly what MONAI's ``get_mask_edges``
computes (without sub-voxel spacing). Pixels labelled ``outside`` (ignored
reference pixels) are never border pixels themselves, and behave like pixels
outside the image for their neighbours.
"""

from __future__ import annotations

import numpy as np


def border_mask(labels: np.ndarray, outside: int) -> np.ndarray:
    """Boolean (H, W) mask of the border pixels of every label at once."""
    h, w = labels.shape
    border = np.zeros((h, w), dtype=bool)
    border[0, :] = True
    border[-1, :] = True
    border[:, 0] = True
    border[:, -1] = True
    diff = labels[1:, :] != labels[:-1, :]
    border[1:, :] |= diff
    border[:-1, :] |= diff
    diff = labels[:, 1:] != labels[:, :-1]
    border[:, 1:] |= diff
    border[:, :-1] |= diff
    border &= labels != outside
    return border


def border_points(labels: np.ndarray, outside: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (raster order) and labels of all border pixels."""
    idx = np.flatnonzero(border_mask(labels, outside))
    return idx, labels.ravel()[idx]
