from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A few small simulated pig and human cubes (pig with kidney malperfusion)."""
    from datasets.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("baselines") / "data"
    return simulate_dataset(
        root,
        species=("pig", "human"),
        subjects_per_species={"pig": 3, "human": 4},
        images_per_subject=4,
        tissue_states={
            "pig": ("physiological", "physiological", "malperfused", "malperfused"),
            "human": ("physiological", "physiological", "physiological", "malperfused"),
        },
        height=24,
        width=32,
        seed=7,
        progress=False,
    )


@pytest.fixture(scope="session")
def tiny_animals(tmp_path_factory) -> Path:
    """Tiny pig (ICG), rat (kidney malperfusion) and human cubes for the other recipes."""
    from datasets.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("baselines") / "animals"
    return simulate_dataset(
        root,
        species=("pig", "rat", "human"),
        subjects_per_species={"pig": 2, "rat": 3, "human": 2},
        images_per_subject=4,
        tissue_states={
            "pig": ("physiological", "icg", "physiological", "icg"),
            "rat": ("physiological", "malperfused", "physiological", "malperfused"),
            "human": ("physiological", "physiological", "icg", "malperfused"),
        },
        height=24,
        width=32,
        seed=11,
        progress=False,
    )


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny tensors: extra threads only add overhead (severe on a loaded 2-core machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
