"""Reading and writing hyperspectral cubes: Tivita raw, .npy and blosc2 (b2nd).

Every reader returns ``(H, W, C)`` arrays in native byte order. Formats:

* ``tivita``: ``<timestamp>_SpecCube.dat``. Three big-endian int32 values ``(W, H, C)`` then
  ``W*H*C`` big-endian float32 values in C order over ``(x, y_flipped, c)``. Reading reshapes
  to ``(W, H, C)``, flips the second axis and swaps the first two, exactly as htc does:
  ``cube[y, x, c] == stored[x, H - 1 - y, c]``. :func:`write_cube` writes the inverse, so the
  two round-trip bit for bit.
* ``npy``: ``np.load(path, mmap_mode="r", allow_pickle=False)``; memory-mapped when asked.
* ``b2nd``: blosc2 N-dimensional frame (the compressed format, chosen by
  ``bench/bench_cube_formats.py``), opened with ``deserialize="safe"``; lazily sliceable via
  :func:`open_cube`.

* ``htc_blosc`` (read only): htc's ``.blosc`` files start with a pickled ``(shape, dtype)``
  header. It is parsed by :mod:`datasets.htc_blosc` without unpickling (a whitelist of pickle
  opcodes and the single global ``numpy.dtype``); anything else is refused.
Writes are atomic (temporary file + rename) so a crashed writer never leaves a half cube.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
B2ND_MAGIC = b"\x9e\xa8b2frame\x00"
FORMATS = ("npy", "b2nd", "tivita")
SUFFIXES = {"npy": ".npy", "b2nd": ".b2nd", "tivita": "_SpecCube.dat"}
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
MAX_DIM = 100_000

# Chosen by bench/bench_cube_formats.py (figures in docs/datasets.md): float16 + byte shuffle
# + LZ4 level 5 reads a full cube about as fast as np.load of raw float32 .npy with files ~3x
# smaller; zstd saves another 12% but reads ~2x slower. Chunks of 32 whole rows keep row-band
# slicing cheap and let blosc2 decompress chunks in parallel.
B2ND_CODEC = "LZ4"
B2ND_CLEVEL = 5
B2ND_FILTER = "SHUFFLE"
B2ND_CHUNK_ROWS = 32


class CubeFormatError(ValueError):
    """A cube file is missing, truncated, corrupt or in an unsupported format."""


def detect_format(path: str | os.PathLike[str]) -> str:
    """Format name of ``path`` by content (magic bytes) and, for Tivita, by name."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError as e:
        raise CubeFormatError(f"{p}: cube file does not exist") from e
    except OSError as e:
        raise CubeFormatError(f"{p}: cannot open cube file ({e})") from e
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(B2ND_MAGIC):
        return "b2nd"
    if p.suffix == ".dat":
        return "tivita"
    if p.suffix == ".blosc":
        return "htc_blosc"
    kind = {".npy": "npy", ".b2nd": "b2nd"}.get(p.suffix)
    if kind is not None:
        raise CubeFormatError(f"{p}: not a valid {kind} file (bad magic bytes {head[:8]!r})")
    raise CubeFormatError(
        f"{p}: unknown cube format (expected .npy, .b2nd, htc .blosc or *_SpecCube.dat)"
    )


def format_from_suffix(path: str | os.PathLike[str]) -> str:
    name = Path(path).name
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".b2nd"):
        return "b2nd"
    if name.endswith(".dat"):
        return "tivita"
    raise CubeFormatError(f"{name}: cannot infer a cube format from the file name")


def _check_cube(arr: Any, path: Path) -> None:
    if len(arr.shape) != 3:
        raise CubeFormatError(f"{path}: expected a (H, W, C) cube, got shape {tuple(arr.shape)}")
    if np.dtype(arr.dtype).newbyteorder("=") not in FLOAT_DTYPES:
        raise CubeFormatError(f"{path}: expected float16/32/64 data, got {arr.dtype}")


# --- Tivita ---------------------------------------------------------------------------------
def _tivita_memmap(path: Path) -> np.ndarray:
    """Memory-mapped (H, W, C) big-endian view of a Tivita file (no copy)."""
    size = path.stat().st_size
    if size < 12:
        raise CubeFormatError(f"{path}: Tivita file too short for its 12-byte header ({size} B)")
    header = np.fromfile(path, dtype=">i4", count=3)
    if np.any(header <= 0) or np.any(header > MAX_DIM):
        raise CubeFormatError(f"{path}: implausible Tivita header shape {header.tolist()}")
    w, h, c = (int(v) for v in header)
    expected = 12 + 4 * w * h * c
    if size != expected:
        what = "truncated" if size < expected else "has trailing bytes"
        raise CubeFormatError(
            f"{path}: Tivita file {what}: header says {w}x{h}x{c} ({expected} B), file has {size} B"
        )
    stored = np.memmap(path, dtype=">f4", mode="r", offset=12, shape=(w, h, c))
    return np.swapaxes(np.flip(stored, axis=1), 0, 1)


def _write_tivita(f: Any, cube: np.ndarray) -> None:
    h, w, c = cube.shape
    f.write(np.array([w, h, c], dtype=">i4").tobytes())
    stored = np.swapaxes(cube, 0, 1)[:, ::-1, :]
    # Row by row to avoid a full big-endian copy.
    for x in range(w):
        f.write(np.ascontiguousarray(stored[x], dtype=">f4").tobytes())


# --- blosc2 -----------------------------------------------------------------------------------
def _b2nd_open(path: Path) -> Any:
    import blosc2

    try:
        nd = blosc2.open(str(path), mode="r", deserialize="safe")
    except Exception as e:  # blosc2 raises RuntimeError/ValueError for broken frames
        raise CubeFormatError(f"{path}: corrupt or truncated b2nd file ({e})") from e
    if not isinstance(nd, blosc2.NDArray):
        raise CubeFormatError(f"{path}: b2nd file holds a {type(nd).__name__}, not an array")
    return nd


def _b2nd_read(nd: Any) -> np.ndarray:
    """Decompress a whole b2nd array. Files written by :func:`write_cube` have chunks and
    blocks of whole rows, so each chunk's bytes are C-ordered rows and can be decompressed
    straight into the output (no intermediate copy); other layouts use blosc2's slicing."""
    shape, chunks, blocks = tuple(nd.shape), tuple(nd.chunks), tuple(nd.blocks)
    rows_ok = chunks[1:] == shape[1:] and blocks[1:] == shape[1:] and chunks[0] % blocks[0] == 0
    if not rows_ok:
        return nd[...]
    dtype = np.dtype(nd.dtype)
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    per_chunk = chunks[0] * int(np.prod(shape[1:], dtype=np.int64))
    schunk = nd.schunk
    for i in range(schunk.nchunks):
        start = i * per_chunk
        stop = min(start + per_chunk, flat.size)
        if stop - start == per_chunk:
            schunk.decompress_chunk(i, flat[start:stop])
        else:  # the last chunk is padded to full size
            tmp = np.empty(per_chunk, dtype=dtype)
            schunk.decompress_chunk(i, tmp)
            flat[start:stop] = tmp[: stop - start]
    return out


def _b2nd_cparams(dtype: np.dtype, nthreads: int | None) -> Any:
    import blosc2

    kwargs: dict[str, Any] = {
        "codec": blosc2.Codec[B2ND_CODEC],
        "clevel": B2ND_CLEVEL,
        "filters": [blosc2.Filter[B2ND_FILTER]],
        "typesize": dtype.itemsize,
    }
    if nthreads is not None:
        kwargs["nthreads"] = nthreads
    return blosc2.CParams(**kwargs)


def _block_rows(row_bytes: int, chunk_rows: int) -> int:
    """Rows per blosc2 block: about 256 KB, a power of two dividing the chunk when possible."""
    rows = 1
    while rows * 2 * row_bytes <= 2**18 and rows * 2 <= chunk_rows:
        rows *= 2
    while chunk_rows % rows:
        rows //= 2
    return rows


def _write_b2nd(path: Path, cube: np.ndarray, nthreads: int | None) -> None:
    import blosc2

    h, w, c = cube.shape
    blosc2.asarray(
        np.ascontiguousarray(cube),
        urlpath=str(path),
        mode="w",
        chunks=(min(h, B2ND_CHUNK_ROWS), w, c),
        blocks=(_block_rows(w * c * cube.dtype.itemsize, min(h, B2ND_CHUNK_ROWS)), w, c),
        cparams=_b2nd_cparams(cube.dtype, nthreads),
    )


def _read_htc(path: Path) -> np.ndarray:
    from datasets.htc_blosc import HtcBloscError, read_htc_blosc

    try:
        arr = read_htc_blosc(path)
    except HtcBloscError as e:
        raise CubeFormatError(f"{path}: {e}") from e
    if isinstance(arr, dict):
        raise CubeFormatError(f"{path}: htc file holds several arrays {sorted(arr)}, not a cube")
    _check_cube(arr, path)
    return arr


# --- public API -------------------------------------------------------------------------------
def read_cube(
    path: str | os.PathLike[str], mmap: bool = True, dtype: np.dtype | type | None = None
) -> np.ndarray:
    """Read a cube as an ``(H, W, C)`` array.

    ``mmap=True`` memory-maps ``.npy`` files (read-only; nothing is read until used). Tivita
    files are always converted to native float32 (their big-endian, flipped layout cannot be
    handed out as a plain array); b2nd files are decompressed. ``dtype`` casts the result.
    Raises :class:`CubeFormatError` for missing, truncated, corrupt or unsupported files.
    """
    p = Path(path)
    kind = detect_format(p)
    try:
        if kind == "npy":
            arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
            _check_cube(arr, p)
        elif kind == "tivita":
            arr = np.ascontiguousarray(_tivita_memmap(p), dtype=np.float32)
        elif kind == "htc_blosc":
            arr = _read_htc(p)
        else:
            nd = _b2nd_open(p)
            _check_cube(nd, p)
            arr = _b2nd_read(nd)
    except CubeFormatError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError) as e:
        raise CubeFormatError(f"{p}: cannot read {kind} cube ({e})") from e
    if dtype is not None and arr.dtype != np.dtype(dtype):
        arr = arr.astype(dtype)
    return arr


class LazyCube:
    """Slice a cube on disk without reading all of it: ``open_cube(p)[y0:y1, :, 10:20]``."""

    def __init__(self, path: Path, kind: str, source: Any) -> None:
        self.path, self.format, self._source = path, kind, source

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self._source.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._source.dtype).newbyteorder("=")

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            part = self._source[key]
        except (ValueError, OSError, RuntimeError) as e:
            raise CubeFormatError(f"{self.path}: cannot read cube data ({e})") from e
        return np.asarray(part, dtype=self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype)


def open_cube(path: str | os.PathLike[str]) -> LazyCube:
    """Open a cube lazily (memory map for npy/Tivita, chunked decompression for b2nd)."""
    p = Path(path)
    kind = detect_format(p)
    try:
        if kind == "npy":
            src: Any = np.load(p, mmap_mode="r", allow_pickle=False)
        elif kind == "tivita":
            src = _tivita_memmap(p)
        elif kind == "htc_blosc":
            src = _read_htc(p)  # blosc buffers cannot be sliced: decompressed once
        else:
            src = _b2nd_open(p)
    except CubeFormatError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError) as e:
        raise CubeFormatError(f"{p}: cannot open {kind} cube ({e})") from e
    _check_cube(src, p)
    return LazyCube(p, kind, src)


def cube_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(H, W, C) of a cube file from its header only."""
    return open_cube(path).shape


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it on success: readers see the whole
    file or the old one, never a partial write; the temporary file is removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_target`."""
    with atomic_target(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_cube(
    path: str | os.PathLike[str],
    cube: np.ndarray,
    fmt: str | None = None,
    dtype: np.dtype | type | str | None = None,
    nthreads: int | None = None,
) -> Path:
    """Write an ``(H, W, C)`` cube atomically; ``fmt`` defaults to the one the suffix names.

    ``dtype`` (e.g. ``"float16"``) casts before writing; Tivita files are always float32.
    ``nthreads`` limits blosc2 compression threads. Returns the path written.
    """
    p = Path(path)
    kind = fmt or format_from_suffix(p)
    if kind not in FORMATS:
        raise ValueError(f"unknown cube format {kind!r}; choose one of {FORMATS}")
    arr = np.asarray(cube)
    if arr.ndim != 3:
        raise ValueError(f"cubes are (H, W, C) arrays, got shape {arr.shape}")
    target = np.dtype(dtype) if dtype is not None else arr.dtype
    if kind == "tivita":
        if dtype is not None and target != np.float32:
            raise ValueError("Tivita files always hold float32 data")
        target = np.dtype(np.float32)
    if target.newbyteorder("=") not in FLOAT_DTYPES:
        raise ValueError(f"cubes are stored as float16/32/64, not {target}")
    arr = arr.astype(target.newbyteorder("="), copy=False)
    with atomic_target(p) as tmp:
        if kind == "npy":
            with tmp.open("wb") as f:
                np.save(f, arr, allow_pickle=False)
        elif kind == "tivita":
            with tmp.open("wb") as f:
                _write_tivita(f, arr)
        else:
            tmp.unlink()
            _write_b2nd(tmp, arr, nthreads)
    return p
