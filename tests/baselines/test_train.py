"""The training loop learns, is deterministic and uses physiology-based augmentation."""

from __future__ import annotations

import numpy as np
import torch

from baselines.augment import apply_physiology_augmentation
from baselines.train import predict, train_model
from datasets.spectral import l1_normalize

C = 8


def _toy_images(n: int, seed: int = 0, size: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two classes with clearly different spectra, on random blob layouts, some ignored."""
    rng = np.random.default_rng(seed)
    spectra = np.array([np.linspace(1, 2, C), np.linspace(2, 1, C)], dtype=np.float32)
    images = []
    for _ in range(n):
        labels = (rng.random((size // 4, size // 4)) < 0.5).astype(np.uint8)
        labels = np.kron(labels, np.ones((4, 4), np.uint8))
        cube = spectra[labels] * rng.uniform(0.9, 1.1, (size, size, C)).astype(np.float32)
        labels[rng.random((size, size)) < 0.05] = 255
        images.append((l1_normalize(cube), labels))
    return images


def _loss(model: torch.nn.Module, images) -> float:
    from baselines.losses import SegmentationLoss

    x = torch.from_numpy(np.stack([c.transpose(2, 0, 1) for c, _ in images]))
    y = torch.from_numpy(np.stack([lab for _, lab in images]).astype(np.int64))
    with torch.no_grad():
        return float(SegmentationLoss()(model.eval()(x), y))


def test_training_reduces_loss_on_a_separable_problem() -> None:
    images = _toy_images(8)
    steps: list[tuple[int, int, float]] = []
    untrained = train_model(images, 2, epochs=1, batch_size=4, lr=0.0, width=8, seed=1)
    model = train_model(
        images,
        2,
        epochs=3,
        batch_size=4,
        lr=1e-2,
        width=8,
        seed=1,
        crop_size=None,
        progress=lambda s, t, loss: steps.append((s, t, loss)),
    )
    assert [s for s, _, _ in steps] == list(range(1, 7)) and steps[-1][1] == 6
    assert _loss(model, images) < _loss(untrained, images)
    cube, labels = images[0]
    pred = predict(model, cube)
    valid = labels != 255
    assert pred.shape == labels.shape and pred.dtype == np.uint8
    assert (pred[valid] == labels[valid]).mean() > 0.8


def test_training_is_deterministic_by_seed() -> None:
    images = _toy_images(4, seed=2)
    kwargs = dict(epochs=1, batch_size=2, width=4, crop_size=12)
    a = train_model(images, 2, seed=3, **kwargs).state_dict()
    b = train_model(images, 2, seed=3, **kwargs).state_dict()
    c = train_model(images, 2, seed=4, **kwargs).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_applies_physiology_augmentation(monkeypatch) -> None:
    images = _toy_images(2, seed=5)
    W = np.eye(C, dtype=np.float32) * 2
    transforms = {1: np.concatenate([W, np.zeros((C, 1), np.float32)], axis=1)[None]}
    calls: list[tuple[int, ...]] = []

    def spy(cube, labels, tf, targets, p, rng):
        calls.append(tuple(targets))
        return apply_physiology_augmentation(cube, labels, tf, targets, p, rng)

    monkeypatch.setattr("baselines.train.apply_physiology_augmentation", spy)
    train_model(
        images, 2, epochs=2, batch_size=2, width=4, augment_transforms=transforms, target_labels=[1]
    )
    assert calls == [(1,)] * 4
    calls.clear()
    train_model(images, 2, epochs=1, batch_size=2, width=4)
    assert calls == []
