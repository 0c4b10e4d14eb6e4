"""Spectral metadata and preprocessing shared by every consumer of cubes.

The Tivita camera records 100 channels from 500 to 995 nm in 5 nm steps. Models of the study
consume L1-normalised spectra (each pixel divided by the sum of its absolute values).
"""

from __future__ import annotations

import numpy as np

N_CHANNELS = 100
WAVELENGTHS_NM: np.ndarray = np.arange(500, 1000, 5, dtype=np.float64)
WAVELENGTHS_NM.setflags(write=False)
assert WAVELENGTHS_NM.shape == (N_CHANNELS,)


def channel_of(wavelength_nm: float) -> int:
    """Index of the channel closest to ``wavelength_nm`` (500..995 nm)."""
    if not WAVELENGTHS_NM[0] - 2.5 <= wavelength_nm <= WAVELENGTHS_NM[-1] + 2.5:
        raise ValueError(f"{wavelength_nm} nm is outside the camera range 500-995 nm")
    return int(np.argmin(np.abs(WAVELENGTHS_NM - wavelength_nm)))


def l1_normalize(cube: np.ndarray, out_dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Divide every spectrum (last axis) by its L1 norm; zero or NaN spectra become 0.

    Works for (H, W, C), (N, C) or any (..., C) array. Computed in float32 (float64 input
    stays float64) and returned as ``out_dtype``; the input is never modified.
    """
    arr = np.asarray(cube)
    if arr.ndim < 1:
        raise ValueError("l1_normalize needs an array with a channel axis")
    work_dtype = np.float64 if arr.dtype == np.float64 else np.float32
    work = arr.astype(work_dtype, copy=True)
    norm = np.abs(work).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(work, norm, out=work)
    np.nan_to_num(work, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return work.astype(out_dtype, copy=False)
