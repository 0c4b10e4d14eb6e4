from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from datasets.spectral import N_CHANNELS, WAVELENGTHS_NM, channel_of, l1_normalize


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
