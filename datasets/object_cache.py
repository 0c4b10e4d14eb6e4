"""A local, size-bounded, checksum-verified cache of immutable files named by their sha256.

Evaluation workers on machines without the platform's file system fetch test cubes, label
maps and uploaded models from object storage into this cache, once per machine. What the
cache knows of the outside world is one callable, ``fill(writer)``, that writes an object's
bytes (for example from S3); the cache hashes them while they arrive and keeps the file only
when the sha256 is the one recorded when the object was stored, so a damaged or replaced
object is refused, never silently used.

Layout under ``root``: ``objects/<2 hex>/<sha256>`` (read-only files; modification time =
last use, for LRU eviction) and ``locks/<sha256>.lock``. Several worker processes on one
machine share the cache: a per-object file lock serialises filling (the second process waits
and then finds the object), a cache-wide lock serialises eviction, and an object is evicted
only when nobody holds its lock. Callers that keep using an object (a sandbox run) take a
hard link to it (``link_to``) while holding the object's lock, so eviction never pulls a file
from under a running job: the link keeps the data until the job's folder is removed.

No Django here: the platform wires storage into ``fill`` (xenobench/storage.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

from .cube_io import atomic_target

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_LOCK_TIMEOUT = 3600.0  # seconds to wait for another process filling the same object


class CacheError(RuntimeError):
    """The cache could not provide the object (too large for the cache, lock timeout...)."""


class ChecksumMismatch(CacheError):
    """The bytes fetched do not have the recorded sha256: the object was not stored."""


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link when both lie on one file system (no copy, survives eviction), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


class ObjectCache:
    """Files keyed by sha256 under ``root``, at most ``max_bytes`` in all (LRU by last use)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        max_bytes: int,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.lock_timeout = lock_timeout
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "locks").mkdir(parents=True, exist_ok=True)

    # --- paths and locks ------------------------------------------------------------------
    @staticmethod
    def check_key(key: str) -> str:
        key = key.strip().lower()
        if not SHA256_RE.match(key):
            raise CacheError(f"not a sha256 hex digest: {key!r}")
        return key

    def path(self, key: str) -> Path:
        key = self.check_key(key)
        return self.root / "objects" / key[:2] / key

    def _lock(self, key: str, timeout: float | None = None) -> FileLock:
        return FileLock(
            self.root / "locks" / f"{key}.lock",
            timeout=self.lock_timeout if timeout is None else timeout,
            thread_local=False,
            preserve_lock_file=True,  # removing a lock file races with a process opening it
        )

    def _evict_lock(self) -> FileLock:
        return FileLock(
            self.root / "evict.lock",
            timeout=self.lock_timeout,
            thread_local=False,
            preserve_lock_file=True,
        )

    # --- the one entry point --------------------------------------------------------------
    def get(
        self, key: str, fill: Callable[[BinaryIO], object], *, link_to: Path | None = None
    ) -> Path:
        """The cached file of ``key``, filled with ``fill(writer)`` on a miss and verified.

        With ``link_to`` the object is hard-linked (or copied) there under the object's lock
        and that path is returned: use it for anything that outlives this call. Raises
        ChecksumMismatch when the fetched bytes are not ``key``'s, CacheError when the object
        cannot fit into the cache or another process holds its lock for too long."""
        key = self.check_key(key)
        obj = self.path(key)
        try:
            with self._lock(key):
                if obj.is_file():
                    os.utime(obj)  # last use, for LRU
                else:
                    self._fill(key, obj, fill)
                if link_to is None:
                    return obj
                _link_or_copy(obj, Path(link_to))
                return Path(link_to)
        except Timeout as exc:
            raise CacheError(f"timed out waiting for the lock of {key[:12]}") from exc

    def _fill(self, key: str, obj: Path, fill: Callable[[BinaryIO], object]) -> None:
        with atomic_target(obj) as tmp:
            with tmp.open("wb") as fh:
                writer = _HashingWriter(fh)
                fill(writer)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            got = writer.digest.hexdigest()
            if got != key:
                raise ChecksumMismatch(
                    f"object {key[:12]}: fetched {writer.size} bytes with sha256 {got[:12]}, "
                    "not the recorded checksum"
                )
            if writer.size > self.max_bytes:
                raise CacheError(
                    f"object {key[:12]} has {writer.size} bytes, more than the whole cache "
                    f"({self.max_bytes} bytes): raise the cache size"
                )
            tmp.chmod(0o444)
            self._make_room(writer.size, keep=key)

    # --- size bound -----------------------------------------------------------------------
    def entries(self) -> list[tuple[float, int, str, Path]]:
        """(last use, size, key, path) of every stored object, oldest first."""
        out = []
        for sub in (self.root / "objects").iterdir():
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                if SHA256_RE.match(entry.name) and entry.is_file(follow_symlinks=False):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    out.append((st.st_mtime, st.st_size, entry.name, Path(entry.path)))
        out.sort()
        return out

    def total_bytes(self) -> int:
        return sum(size for _, size, _, _ in self.entries())

    def _make_room(self, incoming: int, keep: str) -> None:
        """Evict least recently used objects until ``incoming`` more bytes fit. Objects whose
        lock is held (being filled or linked by another process) are skipped."""
        with self._evict_lock():
            entries = self.entries()
            total = sum(size for _, size, _, _ in entries)
            for _, size, key, path in entries:
                if total + incoming <= self.max_bytes:
                    break
                if key == keep:
                    continue
                lock = self._lock(key, timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    continue
                try:
                    path.unlink(missing_ok=True)
                    total -= size
                finally:
                    lock.release()
