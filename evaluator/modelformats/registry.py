"""The model-format registry: one handler object per accepted format, looked up by name.

A handler says how a format is recognised from content (``sniff``), what must hold before
anything runs (``validate``, header-only, on the trusted side), which executor runs it
("harness": the model file is loaded by evaluator.harness in a bwrap/none sandbox;
"container": an image run by docker/podman) and, for harness formats, how the harness opens
it (``open``, called only inside the sandbox). Adding a format is one ``register_format``
call: inspect_model, the inference routes and the harness look handlers up here and never
branch on format names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

from .errors import ModelFormatError

ExecutorKind = Literal["harness", "container"]  # which route runs a format
Forward = Callable[..., object]  # batch [B, C, H, W] float32 -> raw output (tensor/array)

HEAD_BYTES = 512


@dataclass(frozen=True)
class ModelInfo:
    """What the trusted side knows about an upload: its format and the files it needs."""

    format: str
    path: Path
    size: int
    extra_files: tuple[Path, ...] = field(default=())  # ONNX external data, inside the folder


class Probe:
    """An upload as sniffers see it: its first bytes and, read lazily and bomb-checked once
    for every handler, the member names of a zip or tar container."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        with open(path, "rb") as fh:
            self.head = fh.read(HEAD_BYTES)

    @property
    def is_zip(self) -> bool:
        return self.head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    @property
    def is_tar(self) -> bool:
        return len(self.head) >= 262 and self.head[257:262] == b"ustar"

    @cached_property
    def zip_members(self) -> frozenset[str]:
        """Member names below the archive's top folder; raises for bombs and unsafe paths."""
        from ._zip import zip_members

        return zip_members(self.path, self.size)

    @cached_property
    def tar_members(self) -> frozenset[str]:
        """Normalised member names; raises for unsafe, special or oversized members."""
        from ._tar import tar_members

        return tar_members(self.path, self.size)


class ModelFormat(ABC):
    """Handler of one accepted format. Subclasses set the class attributes and ``sniff``."""

    name: ClassVar[str]  # stored with the submission and sent to the harness
    title: ClassVar[str]  # for participants: "TorchScript (.pt)"
    executor: ClassVar[ExecutorKind] = "harness"

    @abstractmethod
    def sniff(self, probe: Probe) -> bool:
        """Whether the upload is in this format (content only, never loads it)."""

    def validate(self, probe: Probe) -> tuple[Path, ...]:
        """Refuse what must not reach a sandbox (raise ModelFormatError); return the extra
        files, inside the model's folder, that must be mounted next to it."""
        return ()

    def open(self, path: str, *, threads: int, gpu: bool) -> Forward:
        """Inside the sandbox only: load the model; return batch -> raw output."""
        raise ModelFormatError(f"{self.title} files are not run by the inference harness")


_REGISTRY: dict[str, ModelFormat] = {}


def register_format(handler: ModelFormat) -> ModelFormat:
    """Add a handler; sniffing tries handlers in registration order."""
    if handler.name in _REGISTRY:
        raise ValueError(f"model format {handler.name!r} is already registered")
    _REGISTRY[handler.name] = handler
    return handler


def get_format(name: str) -> ModelFormat:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelFormatError(f"unknown model format {name!r}") from None


def registered_formats() -> tuple[ModelFormat, ...]:
    return tuple(_REGISTRY.values())
