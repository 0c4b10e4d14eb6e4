"""Spectral metadata and THE input preprocessing shared by every consumer of cubes.

The Tivita camera records 100 channels from 500 to 1000 nm. Their wavelengths are htc's
``np.linspace(500, 1000, 100)`` (steps of 500/99 = 5.05 nm, both ends included), so channel
indices and wavelengths mean the same as in the study's code. Models of the study consume
L1-normalised spectra (each pixel divided by the sum of its absolute values).

:func:`preprocess` is the only implementation of the task's ``preprocessing`` setting: the
starter kit trains on its output, the sandboxed harness feeds it to every model format, and
organizers export cases with it, so a model never sees other inputs at evaluation than in
training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

N_CHANNELS = 100
WAVELENGTHS_NM: np.ndarray = np.linspace(500, 1000, N_CHANNELS, dtype=np.float64)
#: Channel spacing in nm (500 / 99).
CHANNEL_STEP_NM = float(WAVELENGTHS_NM[1] - WAVELENGTHS_NM[0])
WAVELENGTHS_NM.setflags(write=False)
assert WAVELENGTHS_NM.shape == (N_CHANNELS,)


@dataclass(frozen=True)
class Preprocessing:
    """One choice of a task's ``preprocessing``: how cubes become model inputs.

    ``spectra`` is ``"l1"`` (L1-normalised spectra), ``"none"`` (reflectance, NaN/inf -> 0) or
    None (no spectral channels); ``parameters`` appends the tissue parameter images of
    :mod:`datasets.parameters` (sto2, nir, twi, ohi, thi, tli, in that order; NaN -> 0).
    """

    name: str
    label: str
    spectra: str | None = "l1"
    parameters: bool = False

    def channels(self, n_channels: int = N_CHANNELS) -> int:
        """Input channels a model receives for cubes of ``n_channels`` channels."""
        spectral_part = n_channels if self.spectra is not None else 0
        return spectral_part + (N_PARAMETER_CHANNELS if self.parameters else 0)


#: Tissue parameter channels appended by the "tpi" methods (datasets.parameters.PARAMETER_NAMES).
N_PARAMETER_CHANNELS = 6
#: The preprocessing registry: every consumer (TaskSpec validation, the harness, the starter
#: kit, exports) reads the choices from here, so a new method is added in one place.
PREPROCESSING_REGISTRY: dict[str, Preprocessing] = {
    m.name: m
    for m in (
        Preprocessing("l1", "L1 per pixel", "l1"),
        Preprocessing("none", "none", "none"),
        Preprocessing("l1+tpi", "L1 per pixel + 6 tissue parameter images", "l1", True),
        Preprocessing("tpi", "6 tissue parameter images only", None, True),
    )
}
PREPROCESSINGS = tuple(PREPROCESSING_REGISTRY)


def preprocessed_channels(method: str, n_channels: int = N_CHANNELS) -> int:
    """Channels a model receives after ``preprocess(cube, method)`` of a ``n_channels`` cube."""
    if method not in PREPROCESSING_REGISTRY:
        raise ValueError(f"unknown preprocessing {method!r}; choose one of {PREPROCESSINGS}")
    return PREPROCESSING_REGISTRY[method].channels(n_channels)


# Pixels per block (scaled for C != 100): the three 1.6 MB float32 buffers stay in cache and
# a memory-mapped cube is read exactly once. Results do not depend on it (see preprocess).
_BLOCK_PIXELS = 4096


def channel_of(wavelength_nm: float) -> int:
    """Index of the channel closest to ``wavelength_nm`` (500..1000 nm, half a step of slack).

    Ties (exactly between two channels) go to the lower channel.
    """
    half = CHANNEL_STEP_NM / 2
    if not WAVELENGTHS_NM[0] - half <= wavelength_nm <= WAVELENGTHS_NM[-1] + half:
        raise ValueError(f"{wavelength_nm} nm is outside the camera range 500-1000 nm")
    return int(np.argmin(np.abs(WAVELENGTHS_NM - wavelength_nm)))


def preprocess(
    cube: np.ndarray,
    method: str = "l1",
    *,
    channels_first: bool = False,
    out_dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Apply a task's input preprocessing to spectra on the last axis.

    ``method="l1"`` follows imsy-htc: divide every spectrum by its L1 norm
    (``x / sum(|x|)``), then turn NaN and +-inf into 0. So a pixel with any NaN or inf
    channel, and a pixel whose norm is 0 (or overflows), becomes all zeros; every other pixel
    has L1 norm 1 (negative values keep their sign). ``method="none"`` only turns NaN/inf
    into 0. ``"l1+tpi"`` appends the six tissue parameter images of :mod:`datasets.parameters`
    (computed from the reflectance ``cube``; NaN -> 0) to the L1 spectra, ``"tpi"`` gives only
    those six channels (:func:`preprocessed_channels` tells the count; see
    :data:`PREPROCESSING_REGISTRY`).

    ``cube`` is ``(..., C)``: (H, W, C), (N, C), ... Output is ``(..., C)``, or ``(C, ...)``
    with ``channels_first`` (the harness's (H, W, C) -> (C, H, W)). It is computed in
    float32 (float64 input in float64) and returned as ``out_dtype``; the input, possibly a
    read-only memory map, is never modified. The work is done in blocks of pixels with
    reused buffers (about 3x faster than whole-array numpy on 480 x 640 x 100 cubes, one
    pass over a memory map) and is bit-identical to the whole-array computation
    ``w = x.astype(f32); nan_to_num(w / abs(w).sum(-1, keepdims=True))``, because each
    pixel's norm is the same contiguous reduction either way.
    """
    if method not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {method!r}; choose one of {PREPROCESSINGS}")
    if PREPROCESSING_REGISTRY[method].parameters:
        return _with_parameters(
            cube, PREPROCESSING_REGISTRY[method], channels_first=channels_first, out_dtype=out_dtype
        )
    arr = np.asarray(cube)
    if arr.ndim < 1:
        raise ValueError("preprocess needs an array with a channel axis")
    work_dtype = np.float64 if arr.dtype == np.float64 else np.float32
    lead, c = arr.shape[:-1], arr.shape[-1]
    n = math.prod(lead)
    out_shape = (c, *lead) if channels_first else arr.shape
    out = np.empty(out_shape, dtype=out_dtype)
    if n == 0 or c == 0:
        return out
    pixels = arr.reshape(n, c)  # a view for C-ordered input (and memory maps)
    dst = out.reshape(c, n) if channels_first else out.reshape(n, c)
    rows = min(n, max(1, _BLOCK_PIXELS * N_CHANNELS // max(c, 1)))
    buf = np.empty((rows, c), work_dtype)
    absval = np.empty((rows, c), work_dtype) if method == "l1" else None
    norm = np.empty((rows, 1), work_dtype) if method == "l1" else None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for p0 in range(0, n, rows):
            p1 = min(n, p0 + rows)
            b = buf[: p1 - p0]
            b[...] = pixels[p0:p1]
            if absval is not None and norm is not None:
                nm = norm[: p1 - p0]
                np.abs(b, out=absval[: p1 - p0])
                np.sum(absval[: p1 - p0], axis=-1, keepdims=True, out=nm)
                np.divide(b, nm, out=b)
            np.nan_to_num(b, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            if channels_first:
                dst[:, p0:p1] = b.T
            else:
                dst[p0:p1] = b
    return out


def _with_parameters(
    cube: np.ndarray,
    method: Preprocessing,
    *,
    channels_first: bool,
    out_dtype: np.dtype | type,
) -> np.ndarray:
    """Spectra (if the method keeps them) followed by the six tissue parameter channels,
    computed from the reflectance cube; NaN parameters (undefined pixels) become 0."""
    from datasets.parameters import parameter_stack  # parameters imports this module

    arr = np.asarray(cube)
    params = parameter_stack(arr)
    np.nan_to_num(params, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if channels_first:
        params = np.moveaxis(params, -1, 0)
    if method.spectra is None:
        return np.ascontiguousarray(params, dtype=out_dtype)
    # Written into one preallocated output: no concatenated or transposed temporaries.
    c, lead, k = arr.shape[-1], arr.shape[:-1], N_PARAMETER_CHANNELS
    spectra = preprocess(arr, method.spectra, channels_first=channels_first, out_dtype=out_dtype)
    if channels_first:
        out = np.empty((c + k, *lead), dtype=out_dtype)
        out[:c], out[c:] = spectra, params
    else:
        out = np.empty((*lead, c + k), dtype=out_dtype)
        out[..., :c], out[..., c:] = spectra, params
    return out


def l1_normalize(
    cube: np.ndarray, out_dtype: np.dtype | type = np.float32, *, channels_first: bool = False
) -> np.ndarray:
    """``preprocess(cube, "l1", ...)``: per-pixel L1 normalisation, non-finite pixels -> 0."""
    return preprocess(cube, "l1", channels_first=channels_first, out_dtype=out_dtype)
