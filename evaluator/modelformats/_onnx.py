"""A minimal, pure-Python walk of an ONNX ModelProto's protobuf wire format.

It only records what the trusted side needs (is this ONNX, which external-data files does it
reference) without building the model, so no parser or runtime touches untrusted bytes in a
trusted process beyond bounds-checked slicing.
"""

from __future__ import annotations

import mmap
import posixpath
from collections.abc import Iterator
from pathlib import Path

from .errors import ModelFormatError
from .registry import Forward, ModelFormat, Probe

_MODEL_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}
_MAX_DEPTH = 64


class _Truncated(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Truncated
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field, wire_type, a, b): varint value in a, or the [a, b) span of a length field."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Truncated
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value, 0
        elif wire == 1:
            pos += 8
            if pos > end:
                raise _Truncated
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Truncated
            yield field, wire, pos, pos + length
            pos += length
        elif wire == 5:
            pos += 4
            if pos > end:
                raise _Truncated
        else:
            raise _Truncated


def _tensor(buf: memoryview, s: int, e: int, out: list[str]) -> None:
    external = False
    location = None
    for field, wire, a, b in _fields(buf, s, e):
        if field == 14 and wire == 0:
            external = a == 1
        elif field == 13 and wire == 2:
            key = value = b""
            for f2, w2, a2, b2 in _fields(buf, a, b):
                if w2 == 2 and f2 == 1:
                    key = bytes(buf[a2:b2])
                elif w2 == 2 and f2 == 2:
                    value = bytes(buf[a2:b2])
            if key == b"location":
                location = value.decode("utf-8", "replace")
    if external:
        out.append(location if location is not None else "")


def _sparse(buf: memoryview, s: int, e: int, out: list[str]) -> None:
    for field, wire, a, b in _fields(buf, s, e):
        if wire == 2 and field in (1, 2):
            _tensor(buf, a, b, out)


def _attribute(buf: memoryview, s: int, e: int, out: list[str], depth: int) -> None:
    for field, wire, a, b in _fields(buf, s, e):
        if wire != 2:
            continue
        if field in (5, 10):
            _tensor(buf, a, b, out)
        elif field in (6, 11):
            _graph(buf, a, b, out, depth + 1)
        elif field in (22, 23):
            _sparse(buf, a, b, out)


def _nodes_holder(buf: memoryview, s: int, e: int, node_field: int, out, depth: int) -> None:
    for field, wire, a, b in _fields(buf, s, e):
        if wire == 2 and field == node_field:
            for f2, w2, a2, b2 in _fields(buf, a, b):
                if w2 == 2 and f2 == 5:
                    _attribute(buf, a2, b2, out, depth)


def _graph(buf: memoryview, s: int, e: int, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ModelFormatError("the ONNX graph nests subgraphs too deeply")
    for field, wire, a, b in _fields(buf, s, e):
        if wire != 2:
            continue
        if field == 5:
            _tensor(buf, a, b, out)
        elif field == 15:
            _sparse(buf, a, b, out)
        elif field == 1:
            for f2, w2, a2, b2 in _fields(buf, a, b):
                if w2 == 2 and f2 == 5:
                    _attribute(buf, a2, b2, out, depth)


def looks_like_onnx(head: bytes) -> bool:
    """ONNX files serialise ir_version (field 1, varint) first."""
    return len(head) >= 2 and head[0] == 0x08 and head[1] < 0x80 and 3 <= head[1] <= 20


def external_data_locations(path: Path) -> list[str]:
    """Parse a ModelProto's structure; return the external-data locations it references."""
    out: list[str] = []
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            seen_graph = False
            for field, wire, a, b in _fields(buf, 0, len(buf)):
                if field not in _MODEL_FIELDS:
                    raise ModelFormatError(
                        "this file starts like ONNX but is not a valid ONNX model "
                        f"(unknown top-level field {field})"
                    )
                if field == 7 and wire == 2:
                    seen_graph = True
                    _graph(buf, a, b, out, 0)
                elif field == 25 and wire == 2:
                    _nodes_holder(buf, a, b, 7, out, 0)
                elif field == 20 and wire == 2:
                    for f2, w2, a2, b2 in _fields(buf, a, b):
                        if w2 == 2 and f2 in (1, 3):
                            _graph(buf, a2, b2, out, 1)
        except _Truncated:
            raise ModelFormatError(
                "the ONNX model is truncated or corrupted; upload the complete file"
            ) from None
        finally:
            buf.release()
    if not seen_graph:
        raise ModelFormatError("the ONNX model has no graph")
    return out


class Onnx(ModelFormat):
    name = "onnx"
    title = "ONNX (.onnx)"

    def sniff(self, probe: Probe) -> bool:
        return looks_like_onnx(probe.head)

    def validate(self, probe: Probe) -> tuple[Path, ...]:
        """External-data files, which must lie inside the model's folder (they are mounted)."""
        p = probe.path
        folder = p.parent.resolve()
        files: list[Path] = []
        for location in external_data_locations(p):
            bad = (
                not location
                or "\x00" in location
                or location.startswith(("/", "\\"))
                or "\\" in location
                or ":" in location
                or posixpath.normpath(location).startswith("..")
            )
            target = (folder / location).resolve() if not bad else None
            if bad or target is None or not target.is_relative_to(folder) or target == p.resolve():
                raise ModelFormatError(
                    f"the ONNX model references external data at {location!r}, outside the "
                    "model's folder; save with onnx.save_model(..., save_as_external_data=True, "
                    "location='weights.bin') next to the model, or embed the weights"
                )
            if not target.is_file():
                raise ModelFormatError(
                    f"the ONNX model's external data file {location!r} is missing"
                )
            if target not in files:
                files.append(target)
        return tuple(files)

    def open(self, path: str, *, threads: int, gpu: bool) -> Forward:
        from evaluator.harness.loaders import open_onnx

        return open_onnx(path, threads=threads, gpu=gpu)
