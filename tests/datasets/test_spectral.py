from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import datasets.spectral as spectral
from datasets.spectral import (
    N_CHANNELS,
    PREPROCESSING_REGISTRY,
    PREPROCESSINGS,
    WAVELENGTHS_NM,
    channel_of,
    l1_normalize,
    preprocess,
)


def whole_array(x: np.ndarray, method: str) -> np.ndarray:
    """The rule written as one whole-array numpy expression (htc: divide, then nan_to_num)."""
    work = np.array(x, dtype=np.float64 if x.dtype == np.float64 else np.float32, order="C")
    with np.errstate(all="ignore"):
        if method == "l1":
            work = work / np.abs(work).sum(-1, keepdims=True)
    return np.nan_to_num(work, nan=0.0, posinf=0.0, neginf=0.0)


def hostile(shape: tuple[int, ...], dtype=np.float32, seed: int = 0) -> np.ndarray:
    """Signed spectra with NaN, +-inf, all-zero and overflowing pixels."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    flat = x.reshape(-1, shape[-1])
    flat[0, 0] = np.nan
    flat[1] = 0
    flat[2, -1] = np.inf
    flat[3, 0] = -np.inf
    flat[4] = min(np.finfo(dtype).max, np.finfo(np.float32).max)  # float32 norm overflows
    flat[5, 1:] = 0
    flat[5, 0] = -2  # a single negative channel normalises to -1
    return x


# Methods without tissue parameter channels (those work on any channel count).
SPECTRAL_ONLY = tuple(m for m in PREPROCESSINGS if not PREPROCESSING_REGISTRY[m].parameters)


def test_wavelengths() -> None:
    assert WAVELENGTHS_NM.shape == (N_CHANNELS,) == (100,)
    # htc's wavelengths: np.linspace(500, 1000, 100), both ends included, steps of 500/99 nm
    assert WAVELENGTHS_NM[0] == 500 and WAVELENGTHS_NM[-1] == 1000
    assert np.allclose(np.diff(WAVELENGTHS_NM), 500 / 99, rtol=0, atol=1e-12)
    assert WAVELENGTHS_NM[60] == pytest.approx(500 + 60 * 500 / 99)  # 803.03 nm, not 800
    assert not WAVELENGTHS_NM.flags.writeable
    assert channel_of(800) == 59 and channel_of(1000) == 99 and channel_of(500) == 0
    assert channel_of(1002) == 99 and channel_of(498) == 0  # within half a step
    for i in (0, 17, 59, 99):
        assert channel_of(float(WAVELENGTHS_NM[i])) == i
    for outside in (450, 497.0, 1003.0):
        with pytest.raises(ValueError):
            channel_of(outside)


def test_l1_normalize_cube_and_pixels() -> None:
    rng = np.random.default_rng(0)
    cube = rng.random((4, 5, 100)).astype(np.float32)
    out = l1_normalize(cube)
    assert out.dtype == np.float32 and out.shape == cube.shape
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    flat = l1_normalize(cube.reshape(-1, 100))
    np.testing.assert_array_equal(flat, out.reshape(-1, 100))
    np.testing.assert_allclose(out * np.abs(cube).sum(-1, keepdims=True), cube, rtol=1e-5)


def test_l1_normalize_nan_and_zero_become_zero() -> None:
    x = np.ones((3, 4), dtype=np.float32)
    x[0] = 0
    x[1, 2] = np.nan
    before = x.copy()
    out = l1_normalize(x, out_dtype=np.float16)
    assert out.dtype == np.float16
    assert np.all(out[0] == 0) and np.all(out[1] == 0)
    np.testing.assert_allclose(out[2], 0.25)
    np.testing.assert_array_equal(np.isnan(x), np.isnan(before))  # input untouched


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 12)),
        elements=st.floats(-10, 10, width=32),
    )
)
def test_l1_norm_is_one_or_zero(x: np.ndarray) -> None:
    out = l1_normalize(x)
    norms = np.abs(out.astype(np.float64)).sum(-1)
    assert np.all(np.isfinite(out))
    assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))


def test_htc_rule_any_non_finite_or_zero_norm_pixel_becomes_zero() -> None:
    x = hostile((8, 5))
    out = l1_normalize(x)
    for row in (0, 1, 2, 3, 4):
        assert np.all(out[row] == 0), row  # (-0.0 where a negative value met an inf norm)
    np.testing.assert_array_equal(out[5], [-1, 0, 0, 0, 0])
    np.testing.assert_allclose(np.abs(out[6:]).sum(-1), 1.0, rtol=1e-6)
    assert np.all(np.sign(out[6:]) == np.sign(x[6:]))  # negative values keep their sign
    none = preprocess(x, "none")
    assert np.all(none[:5] == np.nan_to_num(x[:5], nan=0, posinf=0, neginf=0))
    np.testing.assert_array_equal(none[6:], x[6:])


@pytest.mark.parametrize("method", SPECTRAL_ONLY)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize(
    "shape", [(37, 11, 9), (7, 13, 100), (3, 5, 1000), (50, 100), (2, 3, 4, 6), (6, 7)]
)
def test_blocked_is_bit_identical_to_whole_array(monkeypatch, method, dtype, shape) -> None:
    """Blocks of every size (one pixel, a partial last block, one block) give the same bits,
    in (..., C) and in channels-first layout."""
    x = hostile(shape, dtype)
    expected = whole_array(x, method).astype(np.float32)
    for block in (1, 7, 10**6):
        monkeypatch.setattr(spectral, "_BLOCK_PIXELS", block)
        out = preprocess(x, method)
        assert out.dtype == np.float32 and out.shape == x.shape
        assert out.tobytes() == expected.tobytes()
        first = preprocess(x, method, channels_first=True)
        assert first.shape == (shape[-1], *shape[:-1])
        assert first.tobytes() == np.moveaxis(expected, -1, 0).tobytes()


def test_memory_map_and_views_are_read_not_modified(tmp_path) -> None:
    x = hostile((20, 30, 10))
    np.save(tmp_path / "c.npy", x)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")  # read-only
    expected = whole_array(x, "l1")
    assert preprocess(mm, channels_first=True).tobytes() == expected.transpose(2, 0, 1).tobytes()
    view = x.transpose(1, 0, 2)  # not C-contiguous
    assert preprocess(view).tobytes() == whole_array(view, "l1").tobytes()
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), x)


def test_unknown_method_and_scalars_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing"):
        preprocess(np.ones((2, 3)), "l2")
    with pytest.raises(ValueError, match="channel axis"):
        preprocess(np.float32(1.0))
    assert preprocess(np.ones((0, 4)), channels_first=True).shape == (4, 0)


# --- preprocessings with tissue parameter images ---------------------------------------------
def _reflectance_cube(h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    from datasets.optics import TissueParams, reflectance

    rng = np.random.default_rng(seed)
    rows = [
        TissueParams(
            blood=float(rng.uniform(0.02, 0.1)),
            sto2=float(rng.uniform(0.2, 0.95)),
            water=float(rng.uniform(0.4, 0.8)),
            fat=float(rng.uniform(0.0, 0.3)),
            scat_a=float(rng.uniform(15, 35)),
            scat_b=float(rng.uniform(0.9, 1.6)),
        ).as_array()
        for _ in range(h * w)
    ]
    return reflectance(np.array(rows)).reshape(h, w, N_CHANNELS).astype(np.float32)


def test_registry_lists_the_tissue_parameter_methods_and_their_channels() -> None:
    from datasets.parameters import PARAMETER_NAMES

    assert PREPROCESSINGS == tuple(PREPROCESSING_REGISTRY)
    assert {"l1", "none", "l1+tpi", "tpi"} <= set(PREPROCESSINGS)
    assert spectral.N_PARAMETER_CHANNELS == len(PARAMETER_NAMES) == 6
    assert spectral.preprocessed_channels("l1") == spectral.preprocessed_channels("none") == 100
    assert spectral.preprocessed_channels("l1+tpi") == 106
    assert spectral.preprocessed_channels("tpi") == 6
    assert spectral.preprocessed_channels("l1", 40) == 40
    with pytest.raises(ValueError, match="unknown preprocessing"):
        spectral.preprocessed_channels("zscore")


@pytest.mark.parametrize("channels_first", [False, True])
def test_tpi_methods_append_the_parameter_images_to_the_spectra(channels_first) -> None:
    from datasets.parameters import PARAMETER_NAMES, parameter_images

    cube = _reflectance_cube()
    images = parameter_images(cube)
    both = preprocess(cube, "l1+tpi")
    only = preprocess(cube, "tpi")
    assert both.shape == (6, 5, 106) and only.shape == (6, 5, 6)
    assert both.dtype == only.dtype == np.float32
    np.testing.assert_array_equal(both[..., :100], preprocess(cube, "l1"))
    for i, name in enumerate(PARAMETER_NAMES):
        np.testing.assert_array_equal(both[..., 100 + i], images[name])
        np.testing.assert_array_equal(only[..., i], images[name])
    if channels_first:
        first = preprocess(cube, "l1+tpi", channels_first=True, out_dtype=np.float16)
        assert first.shape == (106, 6, 5) and first.dtype == np.float16
        np.testing.assert_array_equal(first, np.moveaxis(both, -1, 0).astype(np.float16))


def test_tpi_turns_undefined_parameters_into_zero_and_keeps_the_input() -> None:
    cube = _reflectance_cube()
    cube[0, 0, 3] = np.nan  # a pixel without a valid spectrum
    before = cube.copy()
    out = preprocess(cube, "l1+tpi")
    assert np.isfinite(out).all()
    assert not out[0, 0].any()  # l1 zeros the pixel, its parameters are undefined -> 0
    np.testing.assert_array_equal(cube, before)
    with pytest.raises(ValueError, match="100 channels"):
        preprocess(np.ones((3, 40), np.float32), "tpi")
