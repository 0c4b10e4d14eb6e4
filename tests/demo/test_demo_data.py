"""The demo's data: simulation in worker processes writes the same bytes as one process, the
hidden test subjects are the small simulation's test subjects imaged at the test size, the
split keeps test and validation subjects out of training, and a second call reuses the
cached simulation instead of simulating again."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from baselines import demo_data
from baselines.demo_data import QUICK, make_demo_data
from datasets.manifest import load_manifest
from datasets.simulate import simulate_dataset

TINY = replace(
    QUICK, height=16, width=20, pigs=2, humans=5, images=2, test_subjects=2, val_subjects=1,
    test_height=24, test_width=32, test_images=2,
)  # fmt: skip


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_parallel_simulation_writes_the_same_bytes(tmp_path):
    kw = dict(
        species=("pig", "human"), subjects_per_species=2, images_per_subject=2, height=16,
        width=20, seed=3, progress=False,
    )  # fmt: skip
    one = simulate_dataset(tmp_path / "one", workers=1, **kw)
    two = simulate_dataset(tmp_path / "two", workers=2, **kw)
    assert digests(one) == digests(two)


def test_split_and_cache(tmp_path, monkeypatch):
    data = make_demo_data(tmp_path, TINY)
    train = load_manifest(data.train).table
    val = load_manifest(data.val).table
    test = load_manifest(data.test).table
    humans = sorted(load_manifest(data.sim).table.query("species == 'human'")["subject"].unique())
    test_subjects = set(humans[: TINY.test_subjects])
    val_subjects = set(humans[TINY.test_subjects : TINY.test_subjects + TINY.val_subjects])
    assert set(test["subject"]) == test_subjects and set(val["subject"]) == val_subjects
    human_train = train[train["species"] == "human"]
    assert not set(human_train["subject"]) & (test_subjects | val_subjects)
    assert set(human_train["tissue_state"]) == {"physiological"}  # target pathology unseen
    assert len(test) == TINY.test_subjects * TINY.test_images
    assert set(test["height"]) == {TINY.test_height} and set(test["width"]) == {TINY.test_width}
    assert set(train["height"]) == {TINY.height}

    calls = []

    def fake(out, **_kw):
        calls.append(out)
        Path(out).mkdir(parents=True)

    monkeypatch.setattr(demo_data, "simulate_dataset", fake)
    again = make_demo_data(tmp_path, TINY)
    assert calls == [] and again == data  # both simulations reused
    make_demo_data(tmp_path, replace(TINY, test_images=4))
    assert len(calls) == 1  # only the changed one is simulated again
