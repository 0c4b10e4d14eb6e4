"""Uploads streamed to disk in chunks with a size cap and a sha256; never read whole into
memory, never opened as a model on this (trusted) side.

An upload is first written to a local file (where it can be sniffed), then committed to the
"uploads" storage (xenobench/storage.py): on one machine the local file already is the stored
object; with S3 it is copied to the bucket and the local file removed. Submission.model_path
holds the object's name in that storage."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

from xenobench import storage


class UploadError(ValueError):
    pass


SAFE_SUFFIXES = {".pt", ".pt2", ".onnx", ".tar", ".data", ".bin"}


def store_upload(
    chunks: Iterable[bytes], original_name: str, max_bytes: int
) -> tuple[Path, int, str]:
    """Write chunks to a fresh local file; returns (path, size, sha256). Partial files are
    removed. commit_upload() stores the file once it passed the checks."""
    suffix = Path(original_name).suffix.lower()
    name = f"{uuid.uuid4().hex}/model{suffix if suffix in SAFE_SUFFIXES else '.bin'}"
    # local storage: the stored file itself; remote: a staging copy at the same place
    path = storage.local_path("uploads", name) or Path(settings.UPLOAD_ROOT) / name
    path.parent.mkdir(parents=True)
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


def commit_upload(path: Path) -> str:
    """Store the checked upload at ``path`` in the "uploads" storage; returns its name there."""
    name = f"{path.parent.name}/{path.name}"
    local = storage.local_path("uploads", name)
    if local is not None and local.resolve() == path.resolve():
        return name
    try:
        storage.save_file("uploads", name, path)
    finally:
        discard(path)
    return name


def discard(path_or_name: str | Path) -> None:
    """Remove a local upload file (absolute path) or a stored upload (its name)."""
    storage.delete("uploads", str(path_or_name), prune_folder=True)
