"""The four baselines on a tiny simulated dataset: selection, xeno transforms, cache, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.augment import load_transforms
from baselines.cli import main as cli_main
from baselines.recipes import (
    RECIPES,
    RecipeSettings,
    cache_key,
    cached_transforms,
    learn_xeno_transforms,
    train_recipe,
    train_recipe_cached,
)
from datasets.labels import DEFAULT_LABEL_MAPPING
from datasets.manifest import load_manifest

TINY = RecipeSettings(epochs=1, batch_size=4, width=4, crop_size=16, max_pairs=3, fit_steps=5)
KIDNEY = DEFAULT_LABEL_MAPPING.index_of("kidney")


def test_recipes_select_their_species(tiny_dataset) -> None:
    assert set(RECIPES) == {
        "pig_physiological",
        "human_physiological",
        "human_xeno_kidney",
        "joint_pig_human",
    }
    counts = {name: train_recipe(name, tiny_dataset, TINY).n_images for name in RECIPES}
    man = load_manifest(tiny_dataset).table
    phys = man[man.tissue_state == "physiological"]
    n_pig, n_human = (phys.species == "pig").sum(), (phys.species == "human").sum()
    assert counts == {
        "pig_physiological": n_pig,
        "human_physiological": n_human,
        "human_xeno_kidney": n_human,
        "joint_pig_human": n_pig + n_human,
    }


def test_image_names_restrict_training(tiny_dataset) -> None:
    man = load_manifest(tiny_dataset)
    names = tuple(man.select(species="human", tissue_state="physiological").image_names[:3])
    res = train_recipe(
        "human_physiological",
        tiny_dataset,
        RecipeSettings(**{**TINY.key_dict(), "image_names": names}),
    )
    assert res.n_images == 3
    with pytest.raises(ValueError):
        train_recipe("human_physiological", tiny_dataset, RecipeSettings(image_names=("x#y",)))


def test_xeno_transforms_from_pig_kidney_pairs(tiny_dataset) -> None:
    man = load_manifest(tiny_dataset)
    transforms, n_pairs = learn_xeno_transforms(man, RECIPES["human_xeno_kidney"], TINY)
    assert set(transforms) == {KIDNEY}
    assert 1 <= n_pairs <= TINY.max_pairs
    assert transforms[KIDNEY].shape[1:] == (100, 101)
    assert learn_xeno_transforms(man, RECIPES["human_physiological"], TINY) == ({}, 0)


def test_cache_reuses_trained_models(tiny_dataset, tmp_path) -> None:
    cache = tmp_path / "cache"
    first = train_recipe_cached("human_xeno_kidney", tiny_dataset, cache, TINY, ("onnx",))
    assert not first.hit and first.file("onnx").is_file()
    assert first.record["n_transform_pairs"] >= 1
    assert set(load_transforms(first.directory / "transforms.npz")) == {KIDNEY}
    again = train_recipe_cached("human_xeno_kidney", tiny_dataset, cache, TINY, ("onnx",))
    assert again.hit and again.directory == first.directory
    assert cached_transforms(again) is not None
    more = train_recipe_cached("human_xeno_kidney", tiny_dataset, cache, TINY, ("torchscript",))
    assert more.hit and more.file("torchscript").is_file() and more.file("onnx").is_file()
    sd1, sd2 = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    # device/threads do not change the key; training settings and data do
    assert cache_key("human_xeno_kidney", tiny_dataset, TINY) == first.key
    faster = RecipeSettings(**{**TINY.key_dict(), "num_threads": 1})
    assert cache_key("human_xeno_kidney", tiny_dataset, faster) == first.key
    other = RecipeSettings(**{**TINY.key_dict(), "seed": 1})
    assert cache_key("human_xeno_kidney", tiny_dataset, other) != first.key
    assert cache_key("human_physiological", tiny_dataset, TINY) != first.key
    record = json.loads((first.directory / "record.json").read_text())
    assert record["key"] == first.key and record["exports"]["onnx"]["file"] == "model.onnx"


def test_cli_trains_and_exports(tiny_dataset, tmp_path, capsys) -> None:
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    flags = "--recipe human_physiological --epochs 1 --width 4 --crop-size 16".split()
    paths = ["--data", str(tiny_dataset), "--out", str(out), "--weights", str(tmp_path / "w.pt")]
    rc = cli_main(["train", *flags, *paths])
    assert rc == 0 and out.is_file()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 100, 24, 32), dtype=np.float32)
    assert session.run(None, {"cube": x})[0].shape == (1, 12, 24, 32)
    assert (
        cli_main(["export", "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "m.pt")])
        == 0
    )
    assert (tmp_path / "m.pt").is_file()
    assert cli_main(["recipes"]) == 0
    assert "human_xeno_kidney" in capsys.readouterr().out
    with pytest.raises(ValueError):
        bad = ["--data", str(tiny_dataset), "--out", str(tmp_path / "m.pkl")]
        cli_main(["train", "--recipe", "pig_physiological", *bad])
