"""The one home of stored objects: uploads, test sets, results and reports go through Django's
storage API (settings.STORAGES, docs/deployment.md "Storage"), never through paths that
callers build under DATA_ROOT.

Named storages: ``uploads`` (participants' model files), ``datasets`` (test cubes and label
maps), ``results`` (files an evaluation keeps) and ``reports`` (printed PDFs). On one machine
each is a FileSystemStorage under DATA_ROOT (the on-disk layout of earlier versions); with
S3_BUCKET set each is a prefix of an S3-compatible bucket (django-storages), and workers on
other machines fetch what a run needs into their local object cache
(datasets.object_cache: size-bounded, checksum-verified, shared by the worker processes of a
machine). The sandbox always bind-mounts local files.

Object names are relative (``<uuid>/model.onnx``, ``test-3/cubes/<case>.npy``). An absolute
name is a path recorded by an older version on this machine's disk and is used as it is.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages

KINDS = ("uploads", "datasets", "results", "reports")
COPY_CHUNK = 1024 * 1024


def get(kind: str) -> Storage:
    if kind not in KINDS:
        raise ValueError(f"unknown storage {kind!r}; one of {KINDS}")
    return storages[kind]


def is_local(kind: str) -> bool:
    """True when the storage's objects are files on this machine (FileSystemStorage)."""
    return isinstance(get(kind), FileSystemStorage)


def local_path(kind: str, name: str) -> Path | None:
    """The file (or folder) of ``name`` on this machine's disk, or None for remote storage."""
    if os.path.isabs(name):
        return Path(name)
    store = get(kind)
    if isinstance(store, FileSystemStorage):
        return Path(store.path(name))
    return None


# --- writing ----------------------------------------------------------------------------------
def save_file(kind: str, name: str, src: str | os.PathLike[str]) -> str:
    """Store the local file ``src`` under ``name`` (replacing it); returns the name."""
    target = local_path(kind, name)
    if target is not None:
        if Path(src).resolve() != target.resolve():
            from datasets.cube_io import atomic_target

            with atomic_target(target) as tmp:
                shutil.copyfile(src, tmp)
        return name
    with open(src, "rb") as fh:  # remote storages are configured to overwrite (settings.py)
        return get(kind).save(name, File(fh, name=os.path.basename(name)))


def save_bytes(kind: str, name: str, data: bytes) -> str:
    """Store ``data`` under ``name``, replacing it; readers never see a partial object."""
    target = local_path(kind, name)
    if target is not None:
        from datasets.cube_io import write_bytes_atomic

        write_bytes_atomic(target, data)
        return name
    return get(kind).save(name, ContentFile(data, name=os.path.basename(name)))


def delete(kind: str, name: str, *, prune_folder: bool = False) -> None:
    """Remove ``name`` if it exists (``prune_folder``: and its folder on disk once empty)."""
    if not name:
        return
    path = local_path(kind, name)
    if path is not None:
        path.unlink(missing_ok=True)
        if prune_folder:
            try:
                path.parent.rmdir()
            except OSError:
                pass
        return
    get(kind).delete(name)


def delete_tree(kind: str, prefix: str) -> None:
    """Remove every object under the folder ``prefix``."""
    path = local_path(kind, prefix)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        return
    store = get(kind)
    stack = [prefix.rstrip("/")]
    while stack:
        folder = stack.pop()
        dirs, files = store.listdir(folder)
        stack.extend(f"{folder}/{d}" for d in dirs)
        for f in files:
            store.delete(f"{folder}/{f}")


# --- reading ----------------------------------------------------------------------------------
def exists(kind: str, name: str) -> bool:
    path = local_path(kind, name)
    return path.is_file() if path is not None else get(kind).exists(name)


def read_bytes(kind: str, name: str) -> bytes:
    with open_file(kind, name) as fh:
        return fh.read()


def open_file(kind: str, name: str) -> BinaryIO:
    """A binary file object to read ``name`` from (the caller closes it)."""
    path = local_path(kind, name)
    if path is not None:
        return open(path, "rb")  # noqa: SIM115 - returned to the caller
    return get(kind).open(name, "rb")


def copy_to(kind: str, name: str, writer: BinaryIO) -> None:
    """Stream the object into ``writer`` in chunks (never whole in memory)."""
    with open_file(kind, name) as src:
        shutil.copyfileobj(src, writer, COPY_CHUNK)


def ensure_bucket() -> bool:
    """Create the S3 bucket of the named storages if it is missing (a deployment's own MinIO
    on first start: the migrate service calls this); True when it was created."""
    store = get("uploads")
    if isinstance(store, FileSystemStorage):
        return False
    from botocore.exceptions import ClientError

    client = store.connection.meta.client
    try:
        client.head_bucket(Bucket=store.bucket_name)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    client.create_bucket(Bucket=store.bucket_name)
    return True


# --- workers: local copies --------------------------------------------------------------------
@cache
def _worker_cache(root: str, max_bytes: int):
    from datasets.object_cache import ObjectCache

    return ObjectCache(root, max_bytes)


def worker_cache():
    """This machine's object cache (WORKER_CACHE_DIR, WORKER_CACHE_MB)."""
    return _worker_cache(str(settings.WORKER_CACHE_DIR), int(settings.WORKER_CACHE_MB) * 2**20)


def local_copy(kind: str, name: str, sha256: str, dest: Path | None = None) -> Path:
    """A file on this machine with the bytes of ``name``: the file itself for local storage,
    else ``dest`` (a hard link into the object cache, filled from storage and checked against
    ``sha256`` on a miss). Raises datasets.object_cache.CacheError / ChecksumMismatch when the
    object cannot be fetched whole and unchanged, OSError when storage cannot be read."""
    path = local_path(kind, name)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"{kind} object {name} is missing")
        return path
    if not sha256:
        from datasets.object_cache import CacheError

        raise CacheError(f"no sha256 recorded for {kind} object {name}: cannot verify a fetch")
    if dest is None:
        raise ValueError("remote objects are linked to a destination that outlives the call")
    return worker_cache().get(sha256, lambda writer: copy_to(kind, name, writer), link_to=dest)
