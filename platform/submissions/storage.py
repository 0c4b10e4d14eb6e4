"""Uploads streamed to disk in chunks with a size cap and a sha256; never read whole into
memory, never opened as a model on this (trusted) side."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings


class UploadError(ValueError):
    pass


SAFE_SUFFIXES = {".pt", ".pt2", ".onnx", ".tar", ".data", ".bin"}


def store_upload(
    chunks: Iterable[bytes], original_name: str, max_bytes: int
) -> tuple[Path, int, str]:
    """Write chunks to a fresh folder; returns (path, size, sha256). Partial files are removed."""
    folder = Path(settings.UPLOAD_ROOT) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    suffix = Path(original_name).suffix.lower()
    path = folder / ("model" + (suffix if suffix in SAFE_SUFFIXES else ".bin"))
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadError(
                        f"the upload is larger than this phase's limit of {max_bytes // 2**20} MB"
                    )
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        discard(path)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise UploadError(
                "the server has no disk space left for uploads right now; nothing was charged, please try again later"
            ) from exc
        raise
    if size == 0:
        discard(path)
        raise UploadError("the uploaded file is empty (0 bytes)")
    return path, size, digest.hexdigest()


def discard(path: str | Path) -> None:
    p = Path(path)
    p.unlink(missing_ok=True)
    try:
        p.parent.rmdir()
    except OSError:
        pass
