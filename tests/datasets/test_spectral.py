from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import datasets.spectral as spectral
from datasets.spectral import (
    N_CHANNELS,
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


def test_wavelengths() -> None:
    assert WAVELENGTHS_NM.shape == (N_CHANNELS,) == (100,)
    assert WAVELENGTHS_NM[0] == 500 and WAVELENGTHS_NM[-1] == 995
    assert np.all(np.diff(WAVELENGTHS_NM) == 5)
    assert not WAVELENGTHS_NM.flags.writeable
    assert channel_of(800) == 60 and channel_of(997) == 99
    with pytest.raises(ValueError):
        channel_of(450)


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


@pytest.mark.parametrize("method", PREPROCESSINGS)
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
