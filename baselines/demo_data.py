"""The demo challenge's data: simulated pig and human cubes, with human subjects split into
hidden test subjects, validation subjects and training subjects (physiological images only:
the target species' pathology is unseen, as in the study). Pure Python; the platform's demo
and the story test use the same split.

Training and validation cubes are small (the baselines are fully convolutional and train on
crops); the hidden test subjects are simulated again at ``test_height`` x ``test_width``,
the camera's 480 x 640, so the hidden phases evaluate cubes at the scale users work at. Each
simulation is cached in its folder and reused while its settings and the simulator stay the
same.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from datasets.manifest import load_manifest, write_manifest
from datasets.simulate import PROVENANCE_NAME, SIMULATOR_VERSION, simulate_dataset

Progress = Callable[[int, int], None]  # (images done, images in this simulation)


@dataclass(frozen=True)
class DemoSize:
    height: int = 64
    width: int = 80
    pigs: int = 8
    humans: int = 16
    images: int = 6  # per subject: half physiological, half malperfused
    test_subjects: int = 6  # humans[:test_subjects]: the hidden test phases
    val_subjects: int = 2  # the next ones: the public validation phases (small cubes)
    test_height: int = 480  # hidden test cubes: the camera's full size
    test_width: int = 640
    test_images: int = 4  # per hidden test subject, half physiological, half malperfused
    seed: int = 2026
    # Training of the demo's baselines (not part of the simulation). Small crops, many steps:
    # about the pixels and time of 48-pixel crops at fewer epochs, but enough optimiser steps
    # for the small network to separate close organs; 32 pairs (not 64) for the transforms.
    epochs: int = 100
    crop_size: int = 32
    max_pairs: int = 32  # (physiological, malperfused) pig pairs for the xeno transforms

    def simulation(self) -> dict[str, Any]:
        """The fields that shape the small simulated data (the cache marker of make_demo_data)."""
        return {k: v for k, v in asdict(self).items() if k in ("height", "width", "pigs", "humans", "images", "seed")}  # fmt: skip

    def test_simulation(self) -> dict[str, Any]:
        """The fields that shape the full-size hidden test data."""
        return {"height": self.test_height, "width": self.test_width, "humans": self.test_subjects, "images": self.test_images, "seed": self.seed}  # fmt: skip


FULL = DemoSize()
# Tests: everything small (the hidden test cubes too), fewer subjects and epochs.
QUICK = DemoSize(
    height=48, width=64, pigs=6, humans=14, test_subjects=6, val_subjects=2,
    test_height=48, test_width=64, test_images=6, epochs=75,
)  # fmt: skip
STATES = ("physiological", "malperfused")


class DemoData(NamedTuple):
    sim: Path  # every small simulated cube
    train: Path  # pigs + training humans (physiological)
    val: Path  # validation humans, small cubes
    test: Path  # hidden test humans, full-size cubes


def _simulated(folder: Path, settings: dict[str, Any], make: Callable[[Path], None]) -> bool:
    """Run ``make(folder)`` unless the folder holds a simulation of the same settings by the
    same simulator; True when it simulated."""
    marker = folder / "demo-settings.json"
    want = json.dumps({**settings, "simulator": SIMULATOR_VERSION}, sort_keys=True)
    if marker.exists() and marker.read_text() == want:
        return False
    if folder.exists():
        shutil.rmtree(folder)
    make(folder)
    marker.write_text(want)
    return True


def simulate_small(
    base: Path, size: DemoSize = FULL, progress: Progress | bool = False, workers: int = 1
) -> bool:
    """The small cubes of every subject (``base/sim``); True when simulated, False if cached."""
    return _simulated(
        base / "sim",
        size.simulation(),
        lambda out: simulate_dataset(
            out, species=("pig", "human"), subjects_per_species={"pig": size.pigs, "human": size.humans},
            images_per_subject=size.images, tissue_states=STATES, height=size.height,
            width=size.width, seed=size.seed, progress=progress, workers=workers,
        ),
    )  # fmt: skip


def simulate_test(
    base: Path, size: DemoSize = FULL, progress: Progress | bool = False, workers: int = 1
) -> bool:
    """The hidden test subjects at full size (``base/test``). Subject i is the same person as
    in the small simulation (same seed, composition and organs), imaged anew."""
    return _simulated(
        base / "test",
        size.test_simulation(),
        lambda out: simulate_dataset(
            out, species=("human",), subjects_per_species={"human": size.test_subjects},
            images_per_subject=size.test_images, tissue_states=STATES, height=size.test_height,
            width=size.test_width, seed=size.seed, progress=progress, workers=workers,
        ),
    )  # fmt: skip


def split_small(base: Path, size: DemoSize = FULL) -> tuple[Path, Path]:
    """(training, validation) folders from the small simulation."""
    sim = base / "sim"
    t = load_manifest(sim).table
    subject = t["subject"].astype(str)
    is_human = t["species"] == "human"
    humans = sorted(subject[is_human].unique())
    test = set(humans[: size.test_subjects])
    val = set(humans[size.test_subjects : size.test_subjects + size.val_subjects])
    train_rows = t[
        (t["species"] == "pig")
        | (is_human & ~subject.isin(test | val) & (t["tissue_state"] == "physiological"))
    ]
    val_rows = t[is_human & subject.isin(val)]
    return subset(sim, base / "train", train_rows), subset(sim, base / "val", val_rows)


def make_demo_data(
    base: Path, size: DemoSize = FULL, progress: bool = False, workers: int = 1
) -> DemoData:
    """All folders of the demo under ``base``, simulating what is not cached."""
    simulate_small(base, size, progress, workers)
    simulate_test(base, size, progress, workers)
    train, val = split_small(base, size)
    return DemoData(base / "sim", train, val, base / "test")


def subset(src: Path, dst: Path, rows: pd.DataFrame) -> Path:
    """A dataset folder holding some rows of another; files hard-linked (copied if not possible)."""
    if dst.exists():
        shutil.rmtree(dst)
    for col in ("cube_path", "label_path"):
        for rel in rows[col]:
            if isinstance(rel, str) and rel:
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src / rel, dst / rel)
                except OSError:
                    shutil.copy2(src / rel, dst / rel)
    write_manifest(dst, rows.reset_index(drop=True))
    if (src / PROVENANCE_NAME).is_file():  # keeps the simulator's fingerprint (cache keys)
        shutil.copy2(src / PROVENANCE_NAME, dst / PROVENANCE_NAME)
    return dst
