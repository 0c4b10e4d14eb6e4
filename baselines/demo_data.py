"""The demo challenge's data: simulated pig and human cubes, with human subjects split into
training subjects (physiological images only: the target species' pathology is unseen, as in
the study) and hidden test subjects. Pure Python; the platform's demo and the story test use
the same split."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from datasets.manifest import load_manifest, write_manifest
from datasets.simulate import PROVENANCE_NAME, SIMULATOR_VERSION, simulate_dataset


@dataclass(frozen=True)
class DemoSize:
    height: int = 64
    width: int = 80
    pigs: int = 8
    humans: int = 16
    images: int = 6  # per subject: half physiological, half malperfused
    test_subjects: int = 8
    val_subjects: int = 2
    seed: int = 2026
    # Training of the demo's baselines (not part of the simulation). Small crops, many steps:
    # about the pixels and time of 48-pixel crops at fewer epochs, but enough optimiser steps
    # for the small network to separate close organs; 32 pairs (not 64) for the transforms.
    epochs: int = 100
    crop_size: int = 32
    max_pairs: int = 32  # (physiological, malperfused) pig pairs for the xeno transforms

    def simulation(self) -> dict[str, int]:
        """The fields that shape the simulated data (the cache marker of make_demo_data)."""
        data = asdict(self)
        for key in ("test_subjects", "val_subjects", "epochs", "crop_size", "max_pairs"):
            data.pop(key)
        return data


FULL = DemoSize()
QUICK = DemoSize(height=48, width=64, pigs=6, humans=14, test_subjects=8, val_subjects=2, epochs=75)


def make_demo_data(
    base: Path, size: DemoSize = FULL, progress: bool = False
) -> tuple[Path, Path, Path]:
    """(simulated, training, hidden test) dataset folders under `base`; simulation is reused
    when its settings and the simulator did not change."""
    sim = base / "sim"
    marker = sim / "demo-settings.json"
    want = json.dumps({**size.simulation(), "simulator": SIMULATOR_VERSION}, sort_keys=True)
    if not (marker.exists() and marker.read_text() == want):
        if sim.exists():
            shutil.rmtree(sim)
        simulate_dataset(
            sim, species=("pig", "human"), subjects_per_species={"pig": size.pigs, "human": size.humans},
            images_per_subject=size.images, tissue_states=("physiological", "malperfused"),
            height=size.height, width=size.width, seed=size.seed, progress=progress,
        )  # fmt: skip
        marker.write_text(want)
    t = load_manifest(sim).table
    subject = t["subject"].astype(str)
    humans = sorted(subject[t["species"] == "human"].unique())
    test_subjects = set(humans[: size.test_subjects])
    is_human = t["species"] == "human"
    train_rows = t[
        (t["species"] == "pig")
        | (is_human & ~subject.isin(test_subjects) & (t["tissue_state"] == "physiological"))
    ]
    test_rows = t[is_human & subject.isin(test_subjects)]
    return sim, subset(sim, base / "train", train_rows), subset(sim, base / "test", test_rows)


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
