"""Read htc's ``.blosc`` files without unpickling.

htc (``htc/utils/blosc_compression.py``) writes ``pickle.dump((shape, dtype))`` (or, for several
arrays, ``pickle.dump({key: (shape, dtype, n_bytes)})``) followed by blosc-compressed array
buffers. Loading that header with ``pickle`` would execute whatever a crafted file asks for.
Here the header is *parsed* with :func:`pickletools.genops` (which never executes anything)
and interpreted by a tiny whitelist: ints, strings, booleans, None, tuples, dicts and the one
global ``numpy.dtype`` with plain numeric type codes. Anything else is refused with
:class:`~datasets.cube_io.CubeFormatError`.
"""

from __future__ import annotations

import io
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

MAX_HEADER_BYTES = 64 * 1024
_DTYPE_GLOBALS = {("numpy", "dtype"), ("numpy.core.multiarray", "dtype"), ("numpy._core", "dtype")}
_MARK = object()


class HtcBloscError(ValueError):
    """The file is not an htc .blosc file this reader accepts."""


class _DTypeCall:
    """Result of ``REDUCE(numpy.dtype, (code, align, copy))`` before ``BUILD``."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.order = "="

    def to_dtype(self) -> np.dtype:
        dtype = np.dtype(self.code)
        if dtype.kind not in "fiub" or dtype.hasobject:
            raise HtcBloscError(f"unsupported dtype {self.code!r} in the header")
        return dtype.newbyteorder(self.order) if self.order in "<>" else dtype


def _pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise HtcBloscError("malformed header (MARK missing)")


def parse_header(raw: bytes) -> tuple[Any, int]:
    """Interpret the pickled header in ``raw`` without executing it; returns (value, end)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    dtype_global = object()
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(raw)):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                if len(stack) != 1:
                    raise HtcBloscError("malformed header (stack)")
                return _finish(stack[0]), pos + 1
            if name in ("BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG"):
                stack.append(int(arg))
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                stack.append(str(arg))
            elif name == "NEWTRUE":
                stack.append(True)
            elif name == "NEWFALSE":
                stack.append(False)
            elif name == "NONE":
                stack.append(None)
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = stack[-n:]
                del stack[-n:]
                stack.append(tuple(items))
            elif name == "TUPLE":
                stack.append(tuple(_pop_mark(stack)))
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1][_key(key)] = value
            elif name == "SETITEMS":
                items = _pop_mark(stack)
                for k, v in zip(items[::2], items[1::2], strict=True):
                    stack[-1][_key(k)] = v
            elif name in ("MEMOIZE",):
                memo[len(memo)] = stack[-1]
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                stack.append(memo[int(arg)])
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL":
                    module, _, attr = str(arg).partition(" ")
                else:
                    attr, module = stack.pop(), stack.pop()
                if (module, attr) not in _DTYPE_GLOBALS:
                    raise HtcBloscError(f"header references {module}.{attr}; refused")
                stack.append(dtype_global)
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                if func is not dtype_global or not args or not isinstance(args[0], str):
                    raise HtcBloscError("header calls something other than numpy.dtype")
                stack.append(_DTypeCall(args[0]))
            elif name == "BUILD":
                state, obj = stack.pop(), stack[-1]
                if not isinstance(obj, _DTypeCall) or not isinstance(state, tuple):
                    raise HtcBloscError("unsupported BUILD in header")
                if len(state) > 1 and isinstance(state[1], str):
                    obj.order = state[1]
            else:
                raise HtcBloscError(f"unsupported pickle opcode {name} in header")
    except HtcBloscError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        raise HtcBloscError(f"malformed header ({e})") from e
    raise HtcBloscError("header has no STOP (truncated?)")


def _key(key: Any) -> str | int:
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise HtcBloscError("dict keys in the header must be strings")
    return key


def _finish(value: Any) -> Any:
    if isinstance(value, _DTypeCall):
        return value.to_dtype()
    if isinstance(value, tuple):
        return tuple(_finish(v) for v in value)
    if isinstance(value, dict):
        return {k: _finish(v) for k, v in value.items()}
    return value


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10**6 for v in value
    ):
        raise HtcBloscError(f"bad array shape {value!r} in header")
    return value


def _decode(buf: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    import blosc2

    try:
        # The chunk header states its compressed size; a shorter buffer would let the
        # decompressor read past its end (what it returns then depends on memory), so a
        # size mismatch is refused before decompressing.
        _, cbytes, _ = blosc2.get_cbuffer_sizes(buf)
        if cbytes != len(buf):
            raise ValueError(f"chunk header says {cbytes} bytes, the file holds {len(buf)}")
        data = blosc2.decompress(buf)
    except Exception as e:  # blosc2 raises RuntimeError/ValueError on broken buffers
        raise HtcBloscError(f"corrupt or truncated blosc data ({e})") from e
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if data is None or len(data) != expected:
        got = 0 if data is None else len(data)
        raise HtcBloscError(f"blosc data holds {got} bytes, header says {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_htc_blosc(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """One array (htc single-array files) or a dict of arrays (htc multi-array files).

    Integer dict keys are returned as strings; :func:`read_htc_blosc_dict` is the strict
    reader for files that must hold a dict with string keys.
    """
    return _read(Path(path), strict_dict=False)


def read_htc_blosc_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A plain ``{str: ndarray}`` from an htc multi-array ``.blosc`` file, nothing else.

    This is the reader for htc's segmentation files (annotation name -> uint8 mask), parameter
    images (name -> float image) and projection matrices (label -> [n, 100, 101]). The header
    is parsed as data (never unpickled); a single-array file, non-string keys or any entry that
    is not ``(shape, plain numeric dtype, size)`` raise :class:`HtcBloscError` naming the file.
    """
    p = Path(path)
    try:
        out = _read(p, strict_dict=True)
    except HtcBloscError as e:
        raise HtcBloscError(f"{p}: {e}") from e
    assert isinstance(out, dict)
    return out


def _read(p: Path, *, strict_dict: bool) -> np.ndarray | dict[str, np.ndarray]:
    with p.open("rb") as f:
        head = f.read(MAX_HEADER_BYTES)
        meta, end = parse_header(head)
        f.seek(end)
        if isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[1], np.dtype):
            if strict_dict:
                raise HtcBloscError("holds a single array, expected a dict of named arrays")
            return _decode(f.read(), _shape(meta[0]), meta[1])
        if isinstance(meta, dict):
            if strict_dict and not all(isinstance(k, str) for k in meta):
                raise HtcBloscError("dict keys in the header must be strings")
            out: dict[str, np.ndarray] = {}
            for key_, entry in meta.items():
                key = str(key_)
                if not (isinstance(entry, tuple) and len(entry) == 3):
                    raise HtcBloscError(f"bad header entry for {key!r}")
                shape, dtype, size = entry
                if not isinstance(dtype, np.dtype) or not isinstance(size, int) or size < 0:
                    raise HtcBloscError(f"bad header entry for {key!r}")
                buf = f.read(size)
                if len(buf) != size:
                    raise HtcBloscError(f"truncated data for {key!r}")
                out[key] = _decode(buf, _shape(shape), dtype)
            if strict_dict and f.read(1):
                raise HtcBloscError("trailing bytes after the arrays the header lists")
            return out
    raise HtcBloscError("header is neither (shape, dtype) nor {key: (shape, dtype, size)}")
