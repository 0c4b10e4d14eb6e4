"""Scratch space for a chunk's label maps, and the disk checks that keep a full disk ours.

A run that fails because our disk is full must not be charged to the participant: refuse to
start when the outputs cannot fit, and report ENOSPC during or after a run as a platform
problem."""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.conf import settings

from .errors import PlatformProblem

SPACE_MARGIN = 1024**2
DISK_FULL_PUBLIC = "the evaluation server ran out of disk space"


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
    for case_id in case_ids:
        try:
            cube = np.load(Path(cubes_dir) / f"{case_id}.npy", mmap_mode="r", allow_pickle=False)
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
    """A private folder under the scratch space for one run's outputs, removed afterwards."""
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_dir()))
    except OSError as exc:
        raise disk_problem(exc) from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
