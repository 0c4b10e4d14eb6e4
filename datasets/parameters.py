"""Tissue parameter images (StO2, NIR perfusion, TWI, OHI, THI, TLI) and RGB reconstruction.

Tissue indices follow the Tivita camera's published methods:

    Holmer A, Marotz J, Wahl P, Dau M, Kämmerer PW. "Hyperspectral imaging in perfusion and
    wound diagnostics - methods and algorithms for the determination of tissue parameters."
    Biomed Eng / Biomed Tech 2018;63(5):547-556. doi:10.1515/bmt-2017-0155

All indices work on the absorbance ``A = -log10(R)`` of the reflectance ``R`` (clipped to
:data:`MIN_REFLECTANCE`..:data:`MAX_REFLECTANCE`). ``mean A[a-b]`` is the mean over the camera
channels whose wavelength lies in ``[a, b]`` nm (channels from :data:`datasets.spectral.
WAVELENGTHS_NM`, never hard-coded); ``A''`` is the second derivative along wavelength by a
Savitzky-Golay filter (quadratic fit over :data:`SG_WINDOW` = 11 channels, about 50 nm), in
1/nm^2. Every output is float32 in ``[0, 1]`` (clipped), NaN where a pixel's spectrum is not
finite or an index is undefined (a zero denominator):

========  ===============================================================================
``sto2``  oxygen saturation. Published index ``I = (P1/r1) / (P1/r1 + P2/r2)`` with
          ``P1 = min A''[570-590]`` (oxy-haemoglobin band at 577 nm), ``P2 = min A''[740-780]``
          (deoxy-haemoglobin band at 760 nm), ``r1 = 1``, ``r2 = 0.15``; then the monotone
          calibration :data:`STO2_CALIBRATION` (index -> saturation). 0..1 (fraction, not %).
``nir``   NIR perfusion index: ``(mean A[825-925] / mean A[655-735] - 0) / 1.9``.
``thi``   tissue haemoglobin index: ``(mean A[530-590] / mean A[785-825] - 1.3) / 1.7``.
``twi``   tissue water index: ``(mean A[955-980] / mean A[880-900] - 0.4) / 1.6``.
``ohi``   organ haemoglobin index: half the THI (the THI ratio over twice its span),
          ``(ratio - 1.3) / 3.4``, so organs with 5-15 % blood do not saturate.
``tli``   tissue lipid index: depth of the lipid band at 930 nm in the second derivative,
          ``-min A''[915-945] / 4e-4 nm^-2``.
========  ===============================================================================

What is published and what is chosen here:

* Spectral ranges of StO2, NIR, THI and TWI, the second-derivative method of StO2 and the ratio
  form of NIR, THI and TWI are from Holmer et al. 2018. The paper's full text (and so its
  scaling constants) could not be consulted here; ``r1, r2`` and the NIR/THI/TWI offsets and
  spans are those of the open re-implementation of the Tivita algorithms in the ``hsi``
  package (K. Papke, ``hsi.analysis.HSOpenTivita``). Check them against the paper before
  comparing absolute values with the camera's software.
* The vendor's calibration of StO2 is not published. :data:`STO2_CALIBRATION` maps the index
  to saturation; it was fitted on diffusion-model spectra (:mod:`datasets.optics`: blood volume
  2-12 %, water 30-75 %, reduced scattering 12-40 cm^-1 at 500 nm with power 0.8-1.9) and is
  tested on them (tests/datasets/test_parameters.py): within 6 percentage points for blood
  volumes of 4-9 %, monotone in the true saturation. Outside that range it is less accurate
  (largest errors 14 points at 2 % and 10 at 15 % blood, 25-35 below 1 %: too little or too
  much haemoglobin signal for the second derivative), as the camera's index is.
* OHI and TLI are not in the 2018 paper. They are introduced in Kulcke A, Holmer A, Wahl P,
  et al. "Extended perfusion parameter estimation from hyperspectral imaging data for bedside
  diagnostic in medicine." Molecules 2019;24(22):4164; that paper's formulas have not been
  checked against the ones below. OHI keeps the vendor's relation between the two
  haemoglobin indices: the camera software that htc calls (``htc.tivita.DataPath.compute_thi``)
  computes THI as ``clip(2 * OHI)``, so OHI here is the THI ratio over twice the THI span
  (3.4); the vendor's own OHI formula is not public. TLI is our own definition: the second
  derivative at the 930 nm
  lipid band, scaled so that fat-rich tissue reaches about 1 (chosen constant 4e-4 nm^-2:
  diffusion-model tissue with 90 % fat gives 0.7-1, fat-free tissue 0.07-0.13).
* Smoothing: the paper differentiates smoothed spectra; its window could not be checked here.
  The 5-point derivative of the open re-implementation is dominated by 1 % camera noise in
  the weak 760 nm band (simulated cubes: StO2 biased by -0.2); the 11-channel window chosen
  here brings the bias to about -0.03 (bench and tests on simulated cubes).

Precomputed images are preferred where a dataset has them: htc-layout datasets carry the
camera software's images, which the importer copies to
``<dataset>/parameter_images/<image_name>.blosc`` (htc's dict format: name -> array, keys
StO2, NIR, TWI, OHI, TLI, THI). :func:`tissue_parameters` reads those and computes only what
is missing.

RGB (:func:`rgb_image`): CIE 1931 2° colour-matching functions from the analytic multi-lobe
Gaussian fit of Wyman, Sloan & Shirley, "Simple Analytic Approximations to the CIE XYZ Color
Matching Functions", JCGT 2(2):1-11, 2013, sampled at the camera's wavelengths (<= 780 nm),
weighted by the CIE standard illuminant D65 (CIE 15:2004 table, 10 nm, interpolated), XYZ ->
linear sRGB (IEC 61966-2-1 matrix), white balance, sRGB transfer curve, uint8. The camera
starts at 500 nm, so most of the blue lobe of z-bar (peak 445 nm) lies outside it: the
reflectance at 380-500 nm is taken as that of the first channel (nearest-value extension), so
blue follows the 500 nm reflectance. White balance: the linear RGB channels are divided by
those of a perfect white reflector (a von Kries-type diagonal correction in sRGB; it only
absorbs the small errors of the analytic fit and the truncation at 780 nm), so any flat
reflectance ``r`` gives ``R = G = B`` (``r`` before the transfer curve) and reflectance 1 is
white. Hues are plausible, not colorimetric (no light below 500 nm is measured).

Pure NumPy (no Django, no scipy): the sandboxed harness imports it for the ``tpi``
preprocessings. Work is done in blocks of pixels, so a 480 x 640 x 100 cube takes well under a
second (bench/bench_parameters.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from datasets import spectral

PARAMETER_NAMES: tuple[str, ...] = ("sto2", "nir", "twi", "ohi", "thi", "tli")
#: htc's names of the precomputed images (``intermediates/preprocessing/parameter_images``).
HTC_NAMES: dict[str, str] = {
    "StO2": "sto2",
    "NIR": "nir",
    "TWI": "twi",
    "OHI": "ohi",
    "THI": "thi",
    "TLI": "tli",
}
#: Folder of precomputed parameter images inside a dataset folder.
PARAMETER_IMAGES_DIR = "parameter_images"

MIN_REFLECTANCE = 1e-4  # A <= 4: darker pixels carry no spectral information
MAX_REFLECTANCE = 10.0  # specular highlights above 1 stay finite

# Spectral ranges (nm, inclusive) of Holmer et al. 2018, and the chosen TLI band.
STO2_OXY_NM = (570.0, 590.0)
STO2_DEOXY_NM = (740.0, 780.0)
STO2_R1 = 1.0
STO2_R2 = 0.15
NIR_NUM_NM, NIR_DEN_NM, NIR_SCALE = (825.0, 925.0), (655.0, 735.0), (0.0, 1.9)
THI_NUM_NM, THI_DEN_NM, THI_SCALE = (530.0, 590.0), (785.0, 825.0), (1.3, 1.7)
TWI_NUM_NM, TWI_DEN_NM, TWI_SCALE = (955.0, 980.0), (880.0, 900.0), (0.4, 1.6)
OHI_SCALE = (THI_SCALE[0], 2 * THI_SCALE[1])  # vendor: THI = clip(2 * OHI)
TLI_NM, TLI_SCALE = (915.0, 945.0), 4e-4
#: StO2 calibration: published index (first row, increasing) -> saturation (second row).
STO2_CALIBRATION = np.array(
    [
        [0.2737, 0.2977, 0.3222, 0.3473, 0.3731, 0.3997, 0.427, 0.4553, 0.4845, 0.5143, 0.5453,
         0.5775, 0.611, 0.6459, 0.6823, 0.7204, 0.7605, 0.8019, 0.8447, 0.8869, 0.9329],
        np.linspace(0.0, 1.0, 21),
    ]
)  # fmt: skip
STO2_CALIBRATION.setflags(write=False)

_BLOCK_PIXELS = 8192
#: Savitzky-Golay window (channels) of the second derivative: 11 channels, about 50 nm.
SG_WINDOW = 11


def savgol_second_derivative_weights(window: int) -> np.ndarray:
    """Weights of the Savitzky-Golay second derivative (quadratic or cubic least-squares fit:
    the same weights) over ``window`` equally spaced samples, per sample spacing squared."""
    m = window // 2
    k = np.arange(-m, m + 1, dtype=np.float64)
    vander = np.stack([np.ones_like(k), k, k * k], axis=1)
    return 2.0 * np.linalg.pinv(vander)[2]


_SG2 = savgol_second_derivative_weights(SG_WINDOW)


class _Plan:
    """Channel index ranges for the current wavelengths (computed once per wavelength grid)."""

    def __init__(self, wavelengths: np.ndarray) -> None:
        wl = np.asarray(wavelengths, dtype=np.float64)
        self.n = wl.size
        self.step = float(np.mean(np.diff(wl)))

        def span(lo_hi: tuple[float, float], margin: int = 0) -> slice:
            idx = np.flatnonzero((wl >= lo_hi[0]) & (wl <= lo_hi[1]))
            if idx.size == 0:
                raise ValueError(f"no camera channel in {lo_hi[0]}-{lo_hi[1]} nm")
            lo, hi = int(idx[0]), int(idx[-1]) + 1
            if lo - margin < 0 or hi + margin > self.n:
                raise ValueError(f"{lo_hi} nm is too close to the camera's spectral limits")
            return slice(lo, hi)

        margin = SG_WINDOW // 2
        self.oxy = span(STO2_OXY_NM, margin)
        self.deoxy = span(STO2_DEOXY_NM, margin)
        self.tli = span(TLI_NM, margin)
        self.nir = (span(NIR_NUM_NM), span(NIR_DEN_NM))
        self.thi = (span(THI_NUM_NM), span(THI_DEN_NM))
        self.twi = (span(TWI_NUM_NM), span(TWI_DEN_NM))


@lru_cache(maxsize=4)
def _plan_for(wavelengths: tuple[float, ...]) -> _Plan:
    return _Plan(np.array(wavelengths))


def _plan(n_channels: int) -> _Plan:
    wl = spectral.WAVELENGTHS_NM
    if n_channels != wl.size:
        raise ValueError(
            f"tissue parameters need the camera's {wl.size} channels, got {n_channels}"
        )
    return _plan_for(tuple(float(v) for v in wl))


def absorbance(reflectance: np.ndarray) -> np.ndarray:
    """``-log10(R)`` in float32 with ``R`` clipped to MIN_REFLECTANCE..MAX_REFLECTANCE (NaN
    stays NaN)."""
    r = np.asarray(reflectance, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        out = np.clip(r, MIN_REFLECTANCE, MAX_REFLECTANCE)
    np.log10(out, out=out)
    np.negative(out, out=out)
    return out


def second_derivative(a: np.ndarray, sl: slice, step_nm: float) -> np.ndarray:
    """Savitzky-Golay (:data:`SG_WINDOW` points) second derivative of ``a`` (..., C) along the
    last axis at the channels ``sl`` (needs ``SG_WINDOW // 2`` channels of margin on each
    side), in 1/nm^2."""
    return np.moveaxis(_d2(np.moveaxis(np.asarray(a), -1, 0), sl, step_nm), 0, -1)


def _d2(at: np.ndarray, sl: slice, step_nm: float) -> np.ndarray:
    """Second derivative of channel-major ``at`` (C, ...) at the channels ``sl``: (len, ...).
    Channel-major rows keep every operation on contiguous pixel vectors (about 5x faster than
    reducing short channel slices of pixel-major rows)."""
    lo, hi, m = sl.start, sl.stop, len(_SG2) // 2
    w = (_SG2 / (step_nm * step_nm)).astype(at.dtype)
    out = w[0] * at[lo - m : hi - m]
    for k in range(1, len(w)):
        out += w[k] * at[lo - m + k : hi - m + k]
    return out


def _ratio(at: np.ndarray, num: slice, den: slice) -> np.ndarray:
    """mean over channels ``num`` / mean over ``den`` of channel-major ``at``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return at[num].mean(axis=0) / at[den].mean(axis=0)


def _scaled(x: np.ndarray, offset: float, span: float) -> np.ndarray:
    return (x - offset) / span


def sto2_index(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """The published StO2 index ``(P1/r1) / (P1/r1 + P2/r2)`` from the minima of the second
    derivative in the oxy (P1) and deoxy (P2) ranges; undefined (NaN) where both vanish."""
    a, b = p1 / STO2_R1, p2 / STO2_R2
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / (a + b)


def calibrate_sto2(index: np.ndarray) -> np.ndarray:
    """Saturation (0..1) from the published index through :data:`STO2_CALIBRATION`
    (piecewise linear, clamped at both ends, NaN stays NaN)."""
    out = np.interp(index, STO2_CALIBRATION[0], STO2_CALIBRATION[1])
    return np.where(np.isnan(index), np.nan, out)


def _block(at: np.ndarray, plan: _Plan) -> np.ndarray:
    """Parameter rows (N, 6) in PARAMETER_NAMES order from channel-major absorbance (C, N)."""
    p1 = _d2(at, plan.oxy, plan.step).min(axis=0)
    p2 = _d2(at, plan.deoxy, plan.step).min(axis=0)
    lipid = -_d2(at, plan.tli, plan.step).min(axis=0)
    thi_ratio = _ratio(at, *plan.thi)
    cols = {
        "sto2": calibrate_sto2(sto2_index(p1, p2)),
        "nir": _scaled(_ratio(at, *plan.nir), *NIR_SCALE),
        "twi": _scaled(_ratio(at, *plan.twi), *TWI_SCALE),
        "ohi": _scaled(thi_ratio, *OHI_SCALE),
        "thi": _scaled(thi_ratio, *THI_SCALE),
        "tli": lipid / TLI_SCALE,
    }
    out = np.stack([cols[k] for k in PARAMETER_NAMES], axis=1).astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        np.clip(out, 0.0, 1.0, out=out)
    out[~np.isfinite(out)] = np.nan
    return out


def parameter_stack(cube: np.ndarray) -> np.ndarray:
    """Parameter images stacked on the last axis: ``(..., C)`` reflectance -> ``(..., 6)``
    float32 in :data:`PARAMETER_NAMES` order (see the module docstring for formulas/ranges).

    Pixels with a non-finite channel give NaN in every parameter. Computed in blocks of pixels
    (the input, possibly a read-only memory map or float16, is read once and never modified).
    """
    arr = np.asarray(cube)
    if arr.ndim < 1:
        raise ValueError("parameter images need an array with a channel axis")
    lead, c = arr.shape[:-1], arr.shape[-1]
    plan = _plan(c)
    n = math.prod(lead)
    out = np.empty((n, len(PARAMETER_NAMES)), dtype=np.float32)
    pixels = arr.reshape(n, c)
    for p0 in range(0, n, _BLOCK_PIXELS):
        p1 = min(n, p0 + _BLOCK_PIXELS)
        block = np.asarray(pixels[p0:p1], dtype=np.float32)
        bad = ~np.isfinite(block).all(axis=1)
        values = _block(np.ascontiguousarray(absorbance(block).T), plan)
        values[bad] = np.nan
        out[p0:p1] = values
    return out.reshape(*lead, len(PARAMETER_NAMES))


def parameter_images(cube: np.ndarray) -> dict[str, np.ndarray]:
    """Tissue parameter images of a reflectance cube (H, W, C) or spectra (N, C).

    Returns ``{"sto2", "nir", "twi", "ohi", "thi", "tli"} -> float32 (H, W)`` (or ``(N,)``),
    each in ``[0, 1]`` with NaN where undefined. Formulas, constants and the reference
    (Holmer et al. 2018) are in the module docstring.
    """
    stack = parameter_stack(cube)
    return {name: np.ascontiguousarray(stack[..., i]) for i, name in enumerate(PARAMETER_NAMES)}


# --- precomputed images (htc datasets) ------------------------------------------------------
def parameter_images_path(dataset_folder: str | Path, image_name: str) -> Path:
    """``<dataset>/parameter_images/<image_name>.blosc`` (where the htc importer copies them)."""
    return Path(dataset_folder) / PARAMETER_IMAGES_DIR / f"{image_name}.blosc"


def _normalise_key(key: str) -> str | None:
    if key in HTC_NAMES:
        return HTC_NAMES[key]
    low = key.lower()
    return low if low in PARAMETER_NAMES else None


def load_parameter_images(
    dataset_folder: str | Path, image_name: str
) -> dict[str, np.ndarray] | None:
    """The precomputed parameter images of one image, or None when the dataset has none.

    Reads ``<dataset>/parameter_images/<image_name>.blosc`` with the safe htc reader (header
    parsed as data, never unpickled); htc's names (StO2, NIR, ...) become this module's keys,
    unknown keys and non-2-D arrays are dropped, values are returned as float32. A file that
    exists but cannot be read raises :class:`datasets.htc_blosc.HtcBloscError`.
    """
    path = parameter_images_path(dataset_folder, image_name)
    if not path.is_file():
        return None
    from datasets.htc_blosc import read_htc_blosc_dict

    raw = read_htc_blosc_dict(path)
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        name = _normalise_key(str(key))
        if name is None or np.ndim(value) != 2:
            continue
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def tissue_parameters(
    dataset_folder: str | Path | None, image_name: str, cube: np.ndarray
) -> dict[str, np.ndarray]:
    """Parameter images of one image: the dataset's precomputed ones where present (and of the
    cube's height and width), computed from ``cube`` for the rest. Always all six keys."""
    pre: Mapping[str, np.ndarray] = {}
    if dataset_folder is not None:
        pre = load_parameter_images(dataset_folder, image_name) or {}
    shape = tuple(np.shape(cube)[:-1])
    pre = {k: v for k, v in pre.items() if v.shape == shape}
    if len(pre) == len(PARAMETER_NAMES):
        return {k: pre[k] for k in PARAMETER_NAMES}
    computed = parameter_images(cube)
    return {k: pre.get(k, computed[k]) for k in PARAMETER_NAMES}


# --- RGB ------------------------------------------------------------------------------------
def _lobe(wl: np.ndarray, mu: float, s1: float, s2: float) -> np.ndarray:
    t = (wl - mu) / np.where(wl < mu, s1, s2)
    return np.exp(-0.5 * t * t)


def cie1931_cmf(wavelengths_nm: np.ndarray) -> np.ndarray:
    """CIE 1931 2° colour-matching functions (N, 3) from the multi-lobe piecewise Gaussian fit
    of Wyman, Sloan & Shirley (JCGT 2013, section 2.1)."""
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    x = (
        1.056 * _lobe(wl, 599.8, 37.9, 31.0)
        + 0.362 * _lobe(wl, 442.0, 16.0, 26.7)
        - 0.065 * _lobe(wl, 501.1, 20.4, 26.2)
    )
    y = 0.821 * _lobe(wl, 568.8, 46.9, 40.5) + 0.286 * _lobe(wl, 530.9, 16.3, 31.1)
    z = 1.217 * _lobe(wl, 437.0, 11.8, 36.0) + 0.681 * _lobe(wl, 459.0, 26.0, 13.8)
    return np.stack([x, y, z], axis=-1)


# CIE standard illuminant D65, relative spectral power, 380..780 nm every 10 nm (CIE 15:2004).
_D65_NM = np.arange(380.0, 781.0, 10.0)
_D65 = np.array(
    [49.9755, 54.6482, 82.7549, 91.486, 93.4318, 86.6823, 104.865, 117.008, 117.812, 114.861,
     115.923, 108.811, 109.354, 107.802, 104.790, 107.689, 104.405, 104.046, 100.000, 96.334,
     95.788, 88.686, 90.006, 89.599, 87.699, 83.289, 83.699, 80.027, 80.215, 82.278, 78.284,
     69.721, 71.609, 74.349, 61.604, 69.885, 75.087, 63.592, 46.418, 66.805, 63.382]
)  # fmt: skip
#: Visible range below the camera's first channel: its reflectance is taken as that channel's.
BLUE_EXTENSION_NM = (380.0, 500.0)
# XYZ -> linear sRGB (IEC 61966-2-1, D65 white).
_XYZ_TO_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
)
RGB_MAX_NM = 780.0


@lru_cache(maxsize=4)
def _rgb_weights(wavelengths: tuple[float, ...]) -> tuple[int, np.ndarray]:
    """(number of visible channels, (n, 3) float32 weights: reflectance -> white-balanced
    linear sRGB)."""
    wl = np.array(wavelengths)
    n = int(np.count_nonzero(wl <= RGB_MAX_NM))
    vis = wl[:n]
    step = np.gradient(vis) if n > 1 else np.ones(1)
    d65 = np.interp(vis, _D65_NM, _D65)
    xyz = cie1931_cmf(vis) * (d65 * step)[:, None]  # (n, 3): reflectance -> XYZ
    # Below the first channel (blue): nearest-value extension, 1 nm steps.
    ext = np.arange(BLUE_EXTENSION_NM[0], min(BLUE_EXTENSION_NM[1], vis[0]), 1.0)
    xyz[0] += (cie1931_cmf(ext) * np.interp(ext, _D65_NM, _D65)[:, None]).sum(axis=0)
    rgb = xyz @ _XYZ_TO_SRGB.T  # (n, 3): reflectance -> linear sRGB
    white = rgb.sum(axis=0)  # a perfect white reflector
    return n, (rgb / white).astype(np.float32)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 transfer curve on values clipped to 0..1."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def rgb_image(cube: np.ndarray, exposure: float = 1.0) -> np.ndarray:
    """uint8 RGB (..., 3) of a reflectance cube (H, W, C) or spectra (N, C).

    D65-lit CIE 1931 colour from the channels up to 780 nm, white-balanced so a flat
    reflectance gives grey and reflectance 1 white (module docstring); ``exposure`` multiplies
    the linear values before the sRGB curve (tissue is dark: 2-3 brightens previews).
    Non-finite pixels are black.
    """
    arr = np.asarray(cube)
    if arr.ndim < 1 or arr.shape[-1] != spectral.WAVELENGTHS_NM.size:
        raise ValueError(f"rgb_image needs the camera's {spectral.WAVELENGTHS_NM.size} channels")
    n, weights = _rgb_weights(tuple(float(v) for v in spectral.WAVELENGTHS_NM))
    lead = arr.shape[:-1]
    pixels = arr.reshape(-1, arr.shape[-1])
    out = np.empty((pixels.shape[0], 3), dtype=np.uint8)
    for p0 in range(0, pixels.shape[0], 65536):
        p1 = min(pixels.shape[0], p0 + 65536)
        vis = np.asarray(pixels[p0:p1, :n], dtype=np.float32)
        lin = (vis @ weights) * np.float32(exposure)
        lin[~np.isfinite(lin)] = 0.0
        out[p0:p1] = np.rint(srgb_encode(lin) * 255.0).astype(np.uint8)
    return out.reshape(*lead, 3)
