"""OCI / `docker save` tar archives, checked from their headers only."""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path

from .errors import ModelFormatError

MAX_MEMBERS = 50_000
MAX_TOTAL = 64 * 1024**3


def inspect_tar(path: Path, size: int) -> str:
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
    if "manifest.json" in names or "index.json" in names:
        return "oci_archive"
    raise ModelFormatError(
        "this tar archive is not a container image (no manifest.json or index.json); "
        "upload the output of `docker save IMAGE -o image.tar`"
    )
