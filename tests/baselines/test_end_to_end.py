"""End to end: simulate tiny pig/human cubes, train the human baseline, beat chance."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.recipes import RecipeSettings, load_images, train_recipe
from baselines.train import predict
from datasets.manifest import load_manifest


@pytest.mark.slow
def test_human_baseline_beats_chance_on_held_out_subjects(tiny_dataset) -> None:
    man = load_manifest(tiny_dataset)
    human = man.select(species="human", tissue_state="physiological")
    subjects = sorted(set(human.table.subject))
    train_names = tuple(human.select(subject=subjects[:-1]).image_names)
    test = load_images(man, human.select(subject=subjects[-1]).image_names)
    settings = RecipeSettings(
        epochs=40,
        batch_size=4,
        crop_size=None,
        width=12,
        lr=1e-2,
        image_names=train_names,
        num_threads=1,
    )
    result = train_recipe("human_physiological", tiny_dataset, settings)
    assert result.n_images == len(train_names)

    train_labels = np.concatenate([lab[lab != 255] for _, lab in load_images(man, train_names)])
    majority = np.bincount(train_labels, minlength=12).argmax()
    correct = total = majority_correct = 0
    for cube, labels in test:
        valid = labels != 255
        pred = predict(result.model, cube)
        correct += int((pred[valid] == labels[valid]).sum())
        majority_correct += int((labels[valid] == majority).sum())
        total += int(valid.sum())
    accuracy, majority_accuracy = correct / total, majority_correct / total
    assert accuracy > 1 / 12 + 0.2
    assert accuracy > majority_accuracy + 0.1
