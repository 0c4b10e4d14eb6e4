"""Tar archives (OCI / `docker save` image archives and their layers), checked from their
headers only."""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO

from .errors import ModelFormatError
from .registry import Probe

MAX_MEMBERS = 50_000
MAX_TOTAL = 64 * 1024**3
MAX_META_HEADER = 1024**2  # pax / GNU long-name headers are read into memory by tarfile


def _prescan(path: Path, size: int) -> None:
    """Walk the raw 512-byte headers before tarfile does, refusing oversized metadata
    headers (tarfile would read them whole into the trusted process's memory)."""
    with open(path, "rb") as fh:
        prescan_headers(fh, 0, size)


def prescan_headers(
    fh: BinaryIO, start: int, size: int, *, max_members: int = MAX_MEMBERS, what: str = "image"
) -> None:
    """The header walk of _prescan over ``size`` bytes of ``fh`` from ``start`` (a tar stored
    inside another file, e.g. an image layer)."""
    offset = 0
    for _ in range(4 * max_members):
        if offset + 512 > size:
            return  # tarfile reports truncation
        fh.seek(start + offset)
        block = fh.read(512)
        if block.count(0) == 512:
            return
        raw = block[124:136]
        if raw[0] & 0x80:  # base-256 size
            length = int.from_bytes(raw[1:], "big")
        else:
            text = raw.split(b"\0", 1)[0].strip() or b"0"
            try:
                length = int(text, 8)
            except ValueError:
                raise ModelFormatError(f"the {what} archive is corrupted") from None
        if block[156:157] in (b"x", b"g", b"L", b"K") and length > MAX_META_HEADER:
            raise ModelFormatError(f"the {what} archive has an oversized metadata header")
        offset += 512 + (length + 511) // 512 * 512
    raise ModelFormatError(f"the {what} archive has too many entries (limit {max_members})")


def tar_members(path: Path, size: int) -> frozenset[str]:
    """Normalised member names of a tar archive, after the safety checks on every header."""
    _prescan(path, size)
    names: set[str] = set()
    total = 0
    try:
        with tarfile.open(path, mode="r:") as tf:
            for count, member in enumerate(tf, start=1):
                if count > MAX_MEMBERS:
                    raise ModelFormatError(f"the image archive has over {MAX_MEMBERS} entries")
                name = member.name
                norm = posixpath.normpath(name)
                if name.startswith("/") or norm == ".." or norm.startswith("../"):
                    raise ModelFormatError(f"the image archive contains an unsafe path {name!r}")
                if member.issym() or member.islnk():
                    target = posixpath.normpath(
                        posixpath.join(posixpath.dirname(norm), member.linkname)
                    )
                    if member.linkname.startswith("/") or target.startswith(".."):
                        raise ModelFormatError(f"the image archive links {name!r} outside itself")
                elif not (member.isfile() or member.isdir()):
                    raise ModelFormatError(f"the image archive contains a special file {name!r}")
                total += member.size
                if member.offset_data + member.size > size:
                    raise ModelFormatError("the image archive is truncated")
                names.add(norm)
    except tarfile.TarError as exc:
        raise ModelFormatError(f"the image archive is truncated or corrupted ({exc})") from None
    if total > MAX_TOTAL:
        raise ModelFormatError("the image archive declares more data than allowed")
    return frozenset(names)


def refuse_tar(probe: Probe) -> str | None:
    """Why a tar archive that no handler claimed is refused."""
    if not probe.is_tar:
        return None
    return (
        "this tar archive is not a container image (no manifest.json or index.json); "
        "upload the output of `docker save IMAGE -o image.tar`"
    )
