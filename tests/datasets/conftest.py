"""Shared fixtures: a tiny simulated dataset (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets.simulate import simulate_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim") / "ds"
    return simulate_dataset(
        root,
        subjects_per_species={"pig": 2, "rat": 2, "human": 3},
        images_per_subject=3,
        tissue_states=("physiological", "malperfused", "icg"),
        height=16,
        width=20,
        seed=7,
        progress=False,
    )
