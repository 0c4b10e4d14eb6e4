"""Physiology-based (xeno-learning) and geometric augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.augment import (
    apply_physiology_augmentation,
    fit_affine_transform,
    learn_transforms,
    load_transforms,
    random_flip_rotate,
    save_transforms,
)
from datasets.spectral import l1_normalize


def _l1_cube(rng: np.random.Generator, h: int = 16, w: int = 16, c: int = 12) -> np.ndarray:
    return l1_normalize(rng.uniform(0.1, 1.0, (h, w, c)).astype(np.float32))


def test_moment_matching_recovers_known_affine_change() -> None:
    rng = np.random.default_rng(0)
    c = 8
    X = rng.normal(1.0, 0.2, (2000, c))
    A = np.diag(rng.uniform(0.7, 1.3, c))
    Y = rng.normal(1.0, 0.2, (1500, c)) @ A + rng.normal(0, 0.1, c)  # no pixel correspondence
    W, b = fit_affine_transform(X, Y, steps=400, lr=0.01)
    assert W.shape == (c, c) and b.shape == (c,) and W.dtype == np.float32
    Z = X @ W + b
    before_mean = np.abs(X.mean(0) - Y.mean(0)).max()
    before_std = np.abs(X.std(0, ddof=1) - Y.std(0, ddof=1)).max()
    assert np.abs(Z.mean(0) - Y.mean(0)).max() < 0.01 * before_mean
    assert np.abs(Z.std(0, ddof=1) - Y.std(0, ddof=1)).max() < 0.1 * before_std
    np.testing.assert_allclose(Z.std(0, ddof=1), Y.std(0, ddof=1), rtol=0.02)


def test_fit_of_identical_moments_stays_near_identity() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(0.5, 0.1, (300, 5))
    W, b = fit_affine_transform(X, X)  # Adam amplifies rounding noise, but only a little
    np.testing.assert_allclose(W, np.eye(5), atol=0.05)
    Z = X @ W + b
    np.testing.assert_allclose(Z.mean(0), X.mean(0), rtol=0.03)
    np.testing.assert_allclose(Z.std(0), X.std(0), rtol=0.1)
    with pytest.raises(ValueError):
        fit_affine_transform(X, X[:, :4])


def test_learn_transforms_shapes_and_skips_missing_labels() -> None:
    rng = np.random.default_rng(2)
    c = 6
    lab = np.zeros((16, 16), np.uint8)
    lab[4:12, 4:12] = 6
    phys = [(_l1_cube(rng, c=c), lab) for _ in range(2)]
    path = [(_l1_cube(rng, c=c), lab) for _ in range(3)]
    pairs = [(a, b) for a in phys for b in path]
    out = learn_transforms(pairs, labels=[6, 3], steps=5)
    assert set(out) == {6}
    assert out[6].shape == (6, c, c + 1) and out[6].dtype == np.float32


def test_transforms_npz_round_trip_without_pickle(tmp_path) -> None:
    rng = np.random.default_rng(3)
    transforms = {6: rng.normal(size=(4, 5, 6)).astype(np.float32), 2: np.zeros((1, 5, 6))}
    path = save_transforms(tmp_path / "xeno.npz", transforms)
    assert path.name == "xeno.npz"
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["label_2", "label_6"]
    loaded = load_transforms(path)
    assert set(loaded) == {2, 6}
    np.testing.assert_array_equal(loaded[6], transforms[6])
    with pytest.raises(ValueError):
        save_transforms(tmp_path / "bad.npz", {1: np.zeros((2, 5, 5))})


def _augment_setup(seed: int = 4):
    rng = np.random.default_rng(seed)
    c = 10
    cube = _l1_cube(rng, c=c)
    labels = np.zeros((16, 16), np.uint8)
    labels[2:9, 3:12] = 6
    labels[12:, :] = 255
    W = np.eye(c) * rng.uniform(0.5, 1.5, c)
    b = rng.normal(0, 0.01, c)
    transforms = {6: np.concatenate([W, b[:, None]], axis=1)[None].astype(np.float32)}
    return cube, labels, transforms


def test_physiology_augmentation_changes_only_target_pixels() -> None:
    cube, labels, transforms = _augment_setup()
    original = cube.copy()
    out = apply_physiology_augmentation(
        cube, labels, transforms, [6], p=1.0, rng=np.random.default_rng(0)
    )
    np.testing.assert_array_equal(cube, original)  # input untouched
    assert out.shape == cube.shape and out.dtype == np.float32
    target = labels == 6
    np.testing.assert_array_equal(out[~target], cube[~target])
    assert not np.allclose(out[target], cube[target])
    np.testing.assert_allclose(np.abs(out).sum(-1), 1.0, rtol=1e-5)


def test_physiology_augmentation_p0_and_absent_labels_are_identity() -> None:
    cube, labels, transforms = _augment_setup()
    rng = np.random.default_rng(0)
    out = apply_physiology_augmentation(cube, labels, transforms, [6], p=0.0, rng=rng)
    np.testing.assert_array_equal(out, cube)
    out = apply_physiology_augmentation(cube, labels, transforms, [3], p=1.0, rng=rng)
    np.testing.assert_array_equal(out, cube)


def test_physiology_augmentation_probability() -> None:
    cube, labels, transforms = _augment_setup()
    rng = np.random.default_rng(5)
    changed = sum(
        not np.array_equal(
            apply_physiology_augmentation(cube, labels, transforms, [6], p=0.5, rng=rng), cube
        )
        for _ in range(200)
    )
    assert 70 < changed < 130


@pytest.mark.parametrize("shape", [(16, 16), (12, 20)])
def test_geometric_augmentation_keeps_pairs_aligned(shape) -> None:
    rng = np.random.default_rng(6)
    h, w = shape
    labels = rng.integers(0, 12, shape).astype(np.uint8)
    cube = np.repeat(labels[..., None].astype(np.float32), 4, axis=-1)  # cube encodes label
    for _ in range(10):
        c2, l2 = random_flip_rotate(cube, labels, rng)
        assert l2.shape == shape and c2.shape == (h, w, 4)
        np.testing.assert_array_equal(c2[..., 0], l2)
        assert c2.flags.c_contiguous
