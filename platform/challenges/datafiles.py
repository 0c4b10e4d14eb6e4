"""Files of a registered dataset folder for download: listing, checksums (cached by size and
mtime, so a listing hashes each file once) and safe path resolution."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.core.cache import cache

from .models import Dataset


@dataclass(frozen=True)
class DataFile:
    path: str  # relative, POSIX separators
    size: int
    sha256: str


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = "sha256:" + hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    cached = cache.get(key)
    if cached:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    cache.set(key, value, timeout=None)
    return value


def _regular_files(root: Path) -> list[Path]:
    """Regular files below root; symbolic links are skipped (they could point anywhere)."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or not p.is_file():
            continue
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        out.append(p)
    return out


def dataset_files(ds: Dataset) -> list[DataFile]:
    root = Path(ds.source_path)
    if not root.is_dir():
        return []
    return [
        DataFile(p.relative_to(root).as_posix(), p.stat().st_size, file_sha256(p))
        for p in _regular_files(root)
    ]


def resolve_file(ds: Dataset, name: str) -> Path | None:
    """The file `name` inside the dataset folder, or None (no traversal, no links)."""
    root = Path(ds.source_path).resolve()
    if not name or name.startswith("/") or "\\" in name:
        return None
    parts = Path(name).parts
    if any(part in ("..", ".") or part.startswith(".") for part in parts):
        return None
    candidate = root.joinpath(*parts)
    if candidate.is_symlink() or not candidate.is_file():
        return None
    try:
        candidate.resolve().relative_to(root)
    except ValueError:
        return None
    return candidate
