"""htc .blosc files are read by parsing, never executing, their pickled header."""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import blosc2
import numpy as np
import pytest

from datasets.cube_io import CubeFormatError, detect_format, open_cube, read_cube
from datasets.htc_blosc import HtcBloscError, parse_header, read_htc_blosc


def htc_file(path: Path, array: np.ndarray, protocol: int = 4) -> Path:
    """What htc's compress_file writes: pickle.dump((shape, dtype)) + a blosc buffer."""
    array = np.ascontiguousarray(array)
    header = pickle.dumps((array.shape, array.dtype), protocol=protocol)
    data = blosc2.compress(
        array.tobytes(), typesize=array.dtype.itemsize, clevel=9, codec=blosc2.Codec.ZSTD
    )
    path.write_bytes(header + data)
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("dtype", ["float16", "float32", ">f4"])
def test_reads_single_array_files(tmp_path: Path, protocol: int, dtype: str) -> None:
    cube = np.random.default_rng(0).random((5, 6, 7)).astype(dtype)
    path = htc_file(tmp_path / "P043#2019_12_20_12_38_35.blosc", cube, protocol)
    assert detect_format(path) == "htc_blosc"
    out = read_cube(path)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, cube)
    np.testing.assert_array_equal(open_cube(path)[1:3], cube[1:3])


def test_reads_multi_array_files(tmp_path: Path) -> None:
    a = np.ones((2, 3), np.float32)
    b = np.arange(4, dtype=np.uint8)
    ca, cb = blosc2.compress(a.tobytes(), typesize=4), blosc2.compress(b.tobytes(), typesize=1)
    meta = {"cube": (a.shape, a.dtype, len(ca)), "seg": (b.shape, b.dtype, len(cb))}
    path = tmp_path / "m.blosc"
    path.write_bytes(pickle.dumps(meta) + ca + cb)
    out = read_htc_blosc(path)
    assert set(out) == {"cube", "seg"}
    np.testing.assert_array_equal(out["seg"], b)
    with pytest.raises(CubeFormatError, match="several arrays"):
        read_cube(path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:  # what an attacker would put in the header
        return (builtins.open, (str(self.marker), "w"))


def test_malicious_header_is_refused_without_execution(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.blosc"
    path.write_bytes(pickle.dumps(((2, 2, 2), _Evil(marker))) + b"\x00" * 32)
    with pytest.raises(CubeFormatError, match="refused"):
        read_cube(path)
    assert not marker.exists()
    with pytest.raises(HtcBloscError, match="refused"):
        parse_header(pickle.dumps(np.zeros(2)))  # numpy's own reconstruct global


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(((2, 2, 2), np.dtype(object))),  # object arrays
        pickle.dumps(((2, 2, 2), "f4")),  # not a dtype
        pickle.dumps(((-1, 2, 2), np.dtype("f4"))),  # bad shape
        pickle.dumps([1, 2]),  # unsupported opcodes (list)
        b"\x80\x04\x95",  # truncated header
    ],
)
def test_bad_headers(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "bad.blosc"
    path.write_bytes(payload + blosc2.compress(b"\x00" * 32, typesize=4))
    with pytest.raises(CubeFormatError):
        read_cube(path)


def test_truncated_data(tmp_path: Path) -> None:
    path = htc_file(tmp_path / "t.blosc", np.random.default_rng(1).random((8, 8, 8)))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CubeFormatError, match="corrupt or truncated|bytes"):
        read_cube(path)
