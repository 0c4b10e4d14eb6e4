"""Scratch space for a run's inputs and outputs, and the disk checks that keep a full disk ours.

A run that fails because our disk is full must not be charged to the participant: refuse to
start when the outputs cannot fit, and report ENOSPC during or after a run as a platform
problem.

A run's inputs (the model, the chunk's cubes; the label maps for trusted scoring) are local
files: with local storage the stored files themselves, with remote storage (S3) hard links into
this machine's object cache, fetched and checked against the sha256 recorded at upload or
registration (xenobench/storage.py). A fetch that fails or brings other bytes is ours."""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from django.conf import settings

from xenobench import storage

from .errors import PlatformProblem

if TYPE_CHECKING:
    from challenges.models import Dataset

    from ..models import Submission

SPACE_MARGIN = 1024**2
DISK_FULL_PUBLIC = "the evaluation server ran out of disk space"
FETCH_PUBLIC = "the evaluation server could not fetch the model or the test data"
UNKNOWN_CUBE_BYTES = 4096  # output estimate per case when the cube is not on this machine


def scratch_dir() -> str:
    path = Path(settings.DATA_ROOT) / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def scratch_free() -> int:
    try:
        return shutil.disk_usage(scratch_dir()).free
    except OSError:
        return 0


def disk_problem(exc: OSError) -> PlatformProblem:
    return PlatformProblem(f"scratch disk full in {scratch_dir()}: {exc}", DISK_FULL_PUBLIC)


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def ensure_scratch_space(cubes_dir: str, case_ids: list[str]) -> None:
    """Refuse to start when the label maps cannot be written: a full disk is our problem, and
    letting the run fail would charge the participant for it."""
    need = SPACE_MARGIN
    local = storage.local_path("datasets", cubes_dir) if cubes_dir else None
    for case_id in case_ids:
        if local is None:  # remote storage: the cubes are fetched with the run
            need += UNKNOWN_CUBE_BYTES
            continue
        try:
            cube = np.load(local / f"{case_id}.npy", mmap_mode="r", allow_pickle=False)
            need += int(cube.shape[0]) * int(cube.shape[1]) + 4096
        except (OSError, ValueError):
            need += 4096  # run_inference reports the broken cube itself
    free = scratch_free()
    if free < need:
        raise disk_problem(OSError(errno.ENOSPC, f"{free} bytes free, {need} needed"))


def check_space_after_failed_run() -> None:
    """A run whose outputs could not be written because our disk is full failed on our side."""
    if scratch_free() < SPACE_MARGIN:
        raise disk_problem(OSError(errno.ENOSPC, "scratch full after the run"))


@contextmanager
def output_dir(prefix: str) -> Iterator[Path]:
    """A private folder under the scratch space for one run's files, removed afterwards."""
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_dir()))
    except OSError as exc:
        raise disk_problem(exc) from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- a run's inputs -------------------------------------------------------------------------
def _fetch(kind: str, name: str, sha256: str, dest: Path) -> Path:
    """storage.local_copy, with every failure reported as ours (never the participant's)."""
    try:
        return storage.local_copy(kind, name, sha256, dest)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_problem(exc) from exc
        raise PlatformProblem(f"could not fetch {kind} object {name}: {exc}", FETCH_PUBLIC) from exc
    except Exception as exc:  # noqa: BLE001 - checksum mismatch, cache or storage errors
        raise PlatformProblem(f"could not fetch {kind} object {name}: {exc}", FETCH_PUBLIC) from exc


@contextmanager
def model_input(sub: Submission) -> Iterator[Path]:
    """The submission's model file on this machine, for the duration of a sandbox run."""
    local = storage.local_path("uploads", sub.model_path)
    if local is not None:
        yield local
        return
    with output_dir(f"xb-model{sub.pk}-") as folder:
        yield _fetch("uploads", sub.model_path, sub.sha256, folder / Path(sub.model_path).name)


@contextmanager
def dataset_input(
    ds: Dataset, case_ids: list[str], part: Literal["cubes", "labels"]
) -> Iterator[Path]:
    """A local folder of ``<case>.npy`` for these cases (the test set's cubes or label maps),
    for the duration of a run: the stored folder itself, or a per-run folder of links into the
    object cache, checked against the sha256 in the dataset's manifest rows."""
    prefix = ds.cubes_dir if part == "cubes" else ds.labels_dir
    local = storage.local_path("datasets", prefix)
    if local is not None:
        yield local
        return
    key = "cube_sha256" if part == "cubes" else "label_sha256"
    rows = {r["image_name"]: r for r in ds.manifest}
    with output_dir(f"xb-{part}-") as folder:
        for case_id in case_ids:
            sha256 = rows.get(case_id, {}).get(key, "")
            _fetch("datasets", f"{prefix}/{case_id}.npy", sha256, folder / f"{case_id}.npy")
        yield folder
