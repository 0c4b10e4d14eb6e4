"""The four baselines on a tiny simulated dataset: selection, xeno transforms, cache, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.augment import load_transforms
from baselines.cli import main as cli_main
from baselines.recipes import (
    ICG_ORGANS,
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
        "rat_physiological",
        "human_physiological",
        "human_xeno_kidney",
        "human_xeno_kidney_rat",
        "human_xeno_icg",
        "joint_pig_human",
        "joint_animals_human",
    }
    names = ("pig_physiological", "human_physiological", "human_xeno_kidney", "joint_pig_human")
    counts = {name: train_recipe(name, tiny_dataset, TINY).n_images for name in names}
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


def test_icg_recipe_learns_pig_icg_changes_for_abdominal_organs(tiny_animals) -> None:
    man = load_manifest(tiny_animals)
    recipe = RECIPES["human_xeno_icg"]
    assert recipe.xeno_source == "pig" and recipe.xeno_state == "icg"
    assert set(recipe.xeno_labels) == set(ICG_ORGANS) and len(ICG_ORGANS) == 8
    fitted = RecipeSettings(**{**TINY.key_dict(), "fit_steps": 100, "max_pairs": 4})
    transforms, n_pairs = learn_xeno_transforms(man, recipe, fitted)
    assert n_pairs >= 1 and transforms
    organs = {DEFAULT_LABEL_MAPPING.index_of(o) for o in ICG_ORGANS}
    assert set(transforms) <= organs
    for mats in transforms.values():
        assert mats.shape[1:] == (100, 101) and np.isfinite(mats).all()
    # applied to physiological organ spectra, the learned changes lower reflectance near
    # ICG's 800 nm peak relative to 550 nm (the ICG band, learned from data alone)
    from baselines.recipes import load_images
    from datasets.spectral import channel_of

    pig = man.select(species="pig", tissue_state="physiological").image_names
    ratios = []
    for cube, labels in load_images(man, pig):
        for label, mats in transforms.items():
            if (labels == label).sum() < 4:
                continue
            x = cube[labels == label].mean(0)
            for m in mats:
                y = x @ m[:, :100] + m[:, 100]
                ratios.append(
                    (y[channel_of(800)] / y[channel_of(550)])
                    / (x[channel_of(800)] / x[channel_of(550)])
                )
    assert ratios and np.median(ratios) < 0.97, np.median(ratios)
    result = train_recipe("human_xeno_icg", tiny_animals, TINY)
    phys = man.table[(man.table.species == "human") & (man.table.tissue_state == "physiological")]
    assert result.n_images == len(phys) and result.transforms


def test_rat_recipes_run_on_rat_data(tiny_animals, tiny_dataset, capsys) -> None:
    man = load_manifest(tiny_animals)
    rat = train_recipe("rat_physiological", tiny_animals, TINY)
    t = man.table
    assert rat.n_images == ((t.species == "rat") & (t.tissue_state == "physiological")).sum()
    xeno = train_recipe("human_xeno_kidney_rat", tiny_animals, TINY)
    assert set(xeno.transforms) == {KIDNEY} and xeno.n_transform_pairs >= 1
    joint = train_recipe("joint_animals_human", tiny_animals, TINY)
    assert joint.n_images == (t.tissue_state == "physiological").sum()
    # No rat in a dataset: a clear message naming the species, and no traceback from the CLI.
    with pytest.raises(ValueError, match="no rat physiological images.*species there: human, pig"):
        train_recipe("rat_physiological", tiny_dataset, TINY)
    from baselines.cli import run

    flags = ["--data", str(tiny_dataset), "--recipe", "rat_physiological", "--epochs", "1"]
    assert run(["train", *flags, "--out", str(tiny_dataset.parent / "rat.onnx")]) == 2
    assert "no rat physiological images" in capsys.readouterr().err


def test_cli_learns_transforms_of_any_xeno_recipe(tiny_animals, tmp_path, capsys) -> None:
    out = tmp_path / "rat.npz"
    flags = ["--data", str(tiny_animals), "--recipe", "human_xeno_kidney_rat", "--out", str(out)]
    assert cli_main(["learn-transforms", *flags]) == 0
    assert set(load_transforms(out)) == {KIDNEY}


def test_cache_key_follows_the_simulator(tiny_dataset, tmp_path) -> None:
    import shutil

    from datasets.simulate import PROVENANCE_NAME

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    assert cache_key("human_physiological", copy, TINY) == cache_key(
        "human_physiological", tiny_dataset, TINY
    )
    provenance = json.loads((copy / PROVENANCE_NAME).read_text())
    (copy / PROVENANCE_NAME).write_text(json.dumps({**provenance, "simulator": "other"}))
    assert cache_key("human_physiological", copy, TINY) != cache_key(
        "human_physiological", tiny_dataset, TINY
    )
