"""Identify uploaded models from their content, on the trusted side, without loading them.

Nothing here unpickles, deserialises tensors or runs a runtime: zip and tar archives are read
from their directories only and ONNX from a bounds-checked protobuf walk. Loading happens
only inside the sandbox (evaluator.harness). Each accepted format is one handler in the
registry (evaluator.modelformats.registry); this module tries them in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ._onnx import Onnx
from ._tar import refuse_tar
from ._zip import EXPORT_HINT, TorchExport, TorchScript, refuse_zip
from .errors import ModelFormatError
from .oci import OciImage
from .registry import (
    ModelFormat,
    ModelInfo,
    Probe,
    get_format,
    register_format,
    registered_formats,
)

for _handler in (TorchScript(), TorchExport(), Onnx(), OciImage()):
    register_format(_handler)

FORMATS = tuple(h.name for h in registered_formats())
MAX_UPLOAD_BYTES = 64 * 1024**3

__all__ = [
    "FORMATS",
    "ModelFormat",
    "ModelFormatError",
    "ModelInfo",
    "get_format",
    "inspect_model",
    "register_format",
    "registered_formats",
    "sniff_format",
]

_PICKLE = f"this looks like a Python pickle, not a model; {EXPORT_HINT}"


def _binary_pickle(p: Probe) -> str | None:
    head = p.head
    return _PICKLE if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5 else None


def _gzip(p: Probe) -> str | None:
    if p.head[:2] == b"\x1f\x8b":
        return (
            "this is a gzip-compressed file; upload the model (or `docker save` tar) uncompressed"
        )
    return None


def _text_pickle(p: Probe) -> str | None:
    head = p.head
    looks = head[:1] in (b"(", b"c", b"]", b"}") and b"\n" in head[:64] and b"." in head
    return _PICKLE if looks else None


# Refusals with a specific message: checked before any handler sniffs, and after none matched.
_REFUSE_FIRST: tuple[Callable[[Probe], str | None], ...] = (_binary_pickle, _gzip)
_REFUSE_UNCLAIMED: tuple[Callable[[Probe], str | None], ...] = (
    refuse_zip,
    refuse_tar,
    _text_pickle,
)


def sniff_format(path: str | os.PathLike[str]) -> str:
    """Return the registered format's name ("torchscript", "torch_export", "onnx",
    "oci_archive"), else raise ModelFormatError."""
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
    probe = Probe(p, size)
    for refuse in _REFUSE_FIRST:
        if why := refuse(probe):
            raise ModelFormatError(why)
    for handler in registered_formats():
        if handler.sniff(probe):
            return ModelInfo(handler.name, p, size, handler.validate(probe))
    for refuse in _REFUSE_UNCLAIMED:
        if why := refuse(probe):
            raise ModelFormatError(why)
    accepted = ", ".join(h.title for h in registered_formats())
    raise ModelFormatError(f"unrecognised model format; accepted are {accepted}")
