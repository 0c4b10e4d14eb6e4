"""Identify uploaded models from their content, on the trusted side, without loading them.

Nothing here unpickles, deserialises tensors or runs a runtime: zip and tar archives are read
from their directories only and ONNX from a bounds-checked protobuf walk. Loading happens
only inside the sandbox (evaluator.harness).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ._onnx import external_data_locations, looks_like_onnx
from ._tar import inspect_tar
from ._zip import EXPORT_HINT, inspect_zip
from .errors import ModelFormatError

FORMATS = ("torchscript", "torch_export", "onnx", "oci_archive")
MAX_UPLOAD_BYTES = 64 * 1024**3

__all__ = ["FORMATS", "ModelFormatError", "ModelInfo", "inspect_model", "sniff_format"]


@dataclass(frozen=True)
class ModelInfo:
    """What the trusted side knows about an upload: its format and the files it needs."""

    format: str
    path: Path
    size: int
    extra_files: tuple[Path, ...] = field(default=())  # ONNX external data, inside the folder


def sniff_format(path: str | os.PathLike[str]) -> str:
    """Return "torchscript", "torch_export", "onnx" or "oci_archive", else raise."""
    return inspect_model(path).format


def inspect_model(path: str | os.PathLike[str]) -> ModelInfo:
    p = Path(path)
    try:
        st = p.lstat()
    except FileNotFoundError:
        raise ModelFormatError("the model file does not exist") from None
    if p.is_symlink() or not p.is_file():
        raise ModelFormatError("the model must be a regular file")
    size = st.st_size
    if size == 0:
        raise ModelFormatError("the uploaded file is empty (0 bytes); upload the model again")
    if size > MAX_UPLOAD_BYTES:
        raise ModelFormatError("the uploaded file is larger than allowed")
    with open(p, "rb") as fh:
        head = fh.read(512)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        raise ModelFormatError(f"this looks like a Python pickle, not a model; {EXPORT_HINT}")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ModelInfo(inspect_zip(p, size), p, size)
    if head[:2] == b"\x1f\x8b":
        raise ModelFormatError(
            "this is a gzip-compressed file; upload the model (or `docker save` tar) uncompressed"
        )
    if len(head) >= 262 and head[257:262] == b"ustar":
        return ModelInfo(inspect_tar(p, size), p, size)
    if looks_like_onnx(head):
        return ModelInfo("onnx", p, size, _onnx_external_files(p))
    if head[:1] in (b"(", b"c", b"]", b"}") and b"\n" in head[:64] and b"." in head:
        raise ModelFormatError(f"this looks like a Python pickle, not a model; {EXPORT_HINT}")
    raise ModelFormatError(
        "unrecognised model format; accepted are TorchScript (.pt), torch.export (.pt2), "
        "ONNX (.onnx) and container images (`docker save` tar)"
    )


def _onnx_external_files(p: Path) -> tuple[Path, ...]:
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
                f"the ONNX model references external data at {location!r}, outside the model's "
                "folder; save with onnx.save_model(..., save_as_external_data=True, "
                "location='weights.bin') next to the model, or embed the weights"
            )
        if not target.is_file():
            raise ModelFormatError(f"the ONNX model's external data file {location!r} is missing")
        if target not in files:
            files.append(target)
    return tuple(files)
