from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.cube_io import (
    CubeFormatError,
    cube_shape,
    detect_format,
    open_cube,
    read_cube,
    write_cube,
)

FILES = {"npy": "c.npy", "b2nd": "c.b2nd", "tivita": "2020_01_01_00_00_00_SpecCube.dat"}


def _cube(h: int = 6, w: int = 7, c: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


@pytest.mark.parametrize("fmt", ["npy", "b2nd", "tivita"])
def test_round_trip_exact(tmp_path: Path, fmt: str) -> None:
    cube = _cube()
    path = write_cube(tmp_path / FILES[fmt], cube)
    assert detect_format(path) == fmt
    out = read_cube(path)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, cube)
    np.testing.assert_array_equal(read_cube(path, mmap=False), cube)
    assert cube_shape(path) == (6, 7, 5)
    lazy = open_cube(path)
    np.testing.assert_array_equal(lazy[2:4, 1:3, 1], cube[2:4, 1:3, 1])
    np.testing.assert_array_equal(np.asarray(lazy), cube)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


@pytest.mark.parametrize("fmt", ["npy", "b2nd"])
def test_float16_option(tmp_path: Path, fmt: str) -> None:
    cube = _cube()
    path = write_cube(tmp_path / FILES[fmt], cube, dtype="float16")
    out = read_cube(path)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out, cube, rtol=1e-3, atol=1e-4)
    assert read_cube(path, dtype=np.float32).dtype == np.float32


def test_npy_is_memory_mapped(tmp_path: Path) -> None:
    path = write_cube(tmp_path / "c.npy", _cube())
    assert isinstance(read_cube(path), np.memmap)
    assert not isinstance(read_cube(path, mmap=False), np.memmap)


def test_tivita_layout_matches_htc_reader(tmp_path: Path) -> None:
    """The file holds (W, H, C) with y flipped; htc reads: reshape, flip axis 1, swap 0/1."""
    h, w, c = 3, 4, 2
    cube = np.arange(h * w * c, dtype=np.float32).reshape(h, w, c)
    path = write_cube(tmp_path / "x_SpecCube.dat", cube)
    raw = path.read_bytes()
    shape = np.frombuffer(raw[:12], dtype=">i4")
    assert shape.tolist() == [w, h, c]
    data = np.frombuffer(raw[12:], dtype=">f4").reshape(*shape)
    htc = np.swapaxes(np.flip(data, axis=1), 0, 1)
    np.testing.assert_array_equal(htc, cube)
    assert data[0, 0, 0] == cube[h - 1, 0, 0]  # first stored value: bottom-left pixel


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    c=st.integers(1, 7),
    fmt=st.sampled_from(["npy", "b2nd", "tivita"]),
)
def test_round_trip_any_shape(tmp_path: Path, h: int, w: int, c: int, fmt: str) -> None:
    cube = _cube(h, w, c, seed=h * 100 + w * 10 + c)
    path = write_cube(tmp_path / f"{h}_{w}_{c}_{FILES[fmt]}", cube)
    np.testing.assert_array_equal(read_cube(path), cube)


@pytest.mark.parametrize("fmt", ["npy", "b2nd", "tivita"])
@pytest.mark.parametrize("keep", [0.0, 0.02, 0.5, 0.99])
def test_truncated_files_raise(tmp_path: Path, fmt: str, keep: float) -> None:
    path = write_cube(tmp_path / FILES[fmt], _cube(8, 9, 6))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CubeFormatError):
        read_cube(path)


@pytest.mark.parametrize("fmt", ["npy", "b2nd"])
def test_garbage_header_raises(tmp_path: Path, fmt: str) -> None:
    path = write_cube(tmp_path / FILES[fmt], _cube())
    data = bytearray(path.read_bytes())
    data[:16] = b"\x00" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(CubeFormatError, match="not a valid"):
        read_cube(path)


def test_tivita_bad_header_and_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a_SpecCube.dat"
    path.write_bytes(np.array([-1, 2, 3], dtype=">i4").tobytes() + b"\x00" * 24)
    with pytest.raises(CubeFormatError, match="implausible"):
        read_cube(path)
    write_cube(path, _cube())
    path.write_bytes(path.read_bytes() + b"xx")
    with pytest.raises(CubeFormatError, match="trailing"):
        read_cube(path)


def test_missing_unknown_and_refused_files(tmp_path: Path) -> None:
    with pytest.raises(CubeFormatError, match="does not exist"):
        read_cube(tmp_path / "nope.npy")
    (tmp_path / "x.tif").write_bytes(b"II*\x00")
    with pytest.raises(CubeFormatError, match="unknown cube format"):
        read_cube(tmp_path / "x.tif")
    (tmp_path / "x.blosc").write_bytes(b"\x80\x04")
    with pytest.raises(CubeFormatError, match="header"):
        read_cube(tmp_path / "x.blosc")


def test_npy_wrong_content_raises(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(CubeFormatError, match=r"\(H, W, C\)"):
        read_cube(tmp_path / "flat.npy")
    np.save(tmp_path / "int.npy", np.zeros((2, 2, 2), np.int32))
    with pytest.raises(CubeFormatError, match="float"):
        read_cube(tmp_path / "int.npy")
    np.save(tmp_path / "obj.npy", np.array([[[{"a": 1}]]], dtype=object), allow_pickle=True)
    with pytest.raises(CubeFormatError):
        read_cube(tmp_path / "obj.npy")


def test_write_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_cube(tmp_path / "a.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError):
        write_cube(tmp_path / "a_SpecCube.dat", _cube(), dtype="float16")
    with pytest.raises(ValueError):
        write_cube(tmp_path / "a.npy", _cube(), dtype="int16")
    with pytest.raises(CubeFormatError):
        write_cube(tmp_path / "a.tif", _cube())
    with pytest.raises(ValueError):
        write_cube(tmp_path / "a.npy", _cube(), fmt="zarr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(70, 33, 100), (33, 2, 3), (5, 7, 4)])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_b2nd_row_chunk_fast_path(tmp_path: Path, shape: tuple[int, int, int], dtype: str) -> None:
    cube = np.random.default_rng(1).random(shape, dtype=np.float32).astype(dtype)
    path = write_cube(tmp_path / "c.b2nd", cube)
    np.testing.assert_array_equal(read_cube(path), cube)
    np.testing.assert_array_equal(open_cube(path)[shape[0] - 3 :], cube[-3:])


def test_b2nd_foreign_chunk_layout_is_read(tmp_path: Path) -> None:
    import blosc2

    cube = _cube(40, 50, 10)
    blosc2.asarray(cube, urlpath=str(tmp_path / "x.b2nd"), mode="w", chunks=(16, 16, 10))
    np.testing.assert_array_equal(read_cube(tmp_path / "x.b2nd"), cube)


def test_b2nd_holding_a_non_cube_is_refused(tmp_path: Path) -> None:
    import blosc2

    blosc2.asarray(np.zeros(10, np.float32), urlpath=str(tmp_path / "v.b2nd"), mode="w")
    with pytest.raises(CubeFormatError, match=r"\(H, W, C\)"):
        read_cube(tmp_path / "v.b2nd")
    blosc2.asarray(np.zeros((2, 2, 2), np.int16), urlpath=str(tmp_path / "i.b2nd"), mode="w")
    with pytest.raises(CubeFormatError, match="float"):
        read_cube(tmp_path / "i.b2nd")
