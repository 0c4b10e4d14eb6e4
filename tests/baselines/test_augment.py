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


# --- htc projection-matrix files ---------------------------------------------------------------
def _htc_matrix_file(path, variables: dict[str, np.ndarray]):
    """What htc's compress_file writes for a dict: pickle.dump({name: (shape, dtype, n_bytes)})
    followed by one blosc buffer per array."""
    import pickle

    import blosc2

    buffers = {
        k: blosc2.compress(np.ascontiguousarray(v).tobytes(), typesize=v.dtype.itemsize)
        for k, v in variables.items()
    }
    header = {k: (v.shape, v.dtype, len(buffers[k])) for k, v in variables.items()}
    path.write_bytes(pickle.dumps(header) + b"".join(buffers[k] for k in variables))
    return path


def test_htc_projection_matrices_load_and_apply_like_htc(tmp_path) -> None:
    from datasets.labels import DEFAULT_LABEL_MAPPING as mapping

    rng = np.random.default_rng(0)
    c = 100
    kidney, liver = mapping.index_of("kidney"), mapping.index_of("liver")
    mats = {
        "kidney": (np.eye(c, c + 1) + 0.01 * rng.standard_normal((3, c, c + 1))).astype(np.float32),
        "liver": (np.eye(c, c + 1) + 0.01 * rng.standard_normal((2, c, c + 1))).astype(np.float32),
    }
    name = "weights+bias_malperfusion_pig_kidney=P091,P095.blosc"
    path = _htc_matrix_file(tmp_path / name, mats)
    loaded = load_transforms(path)
    assert set(loaded) == {kidney, liver}
    np.testing.assert_array_equal(loaded[kidney], mats["kidney"])
    assert set(load_transforms(path, labels=["kidney"])) == {kidney}

    cube = _l1_cube(rng, 8, 9, c)
    labels = np.full((8, 9), mapping.index_of("colon"), np.uint8)
    labels[:4] = kidney
    labels[6:, :3] = liver
    out = apply_physiology_augmentation(
        cube, labels, loaded, [kidney, liver], p=1.0, rng=np.random.default_rng(5)
    )
    # By hand, with htc's order of draws: the p draw, then per label present (ascending
    # index) a matrix index and an interpolation weight; then L1 normalisation.
    draws = np.random.default_rng(5)
    draws.random()
    expected = cube.copy()
    for label, key in sorted(((kidney, "kidney"), (liver, "liver"))):
        T = mats[key][int(draws.integers(len(mats[key])))].astype(np.float64)
        w = float(np.float32(draws.random()))
        mask = labels == label
        x = cube[mask].astype(np.float64)
        y = x + w * (x @ T[:, :c] + T[:, c] - x)
        expected[mask] = y / np.abs(y).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    colon = labels == mapping.index_of("colon")
    np.testing.assert_array_equal(out[colon], cube[colon])
    assert not np.array_equal(out[labels == kidney], cube[labels == kidney])


def test_htc_weights_only_and_bias_only_files(tmp_path) -> None:
    c = 100
    w = np.stack([np.eye(c, dtype=np.float32) * 2])
    b = np.full((1, c), 0.5, np.float32)
    only_w = load_transforms(_htc_matrix_file(tmp_path / "weights_x.blosc", {"kidney": w}))
    only_b = load_transforms(_htc_matrix_file(tmp_path / "bias_x.blosc", {"kidney": b}))
    x = np.ones((1, c), np.float32)
    (tw,) = only_w.values()
    (tb,) = only_b.values()
    np.testing.assert_array_equal(x @ tw[0, :, :c] + tw[0, :, c], 2 * x)
    np.testing.assert_array_equal(x @ tb[0, :, :c] + tb[0, :, c], 1.5 * x)


def test_htc_files_with_unknown_labels_or_bad_shapes_are_refused(tmp_path) -> None:
    c = 100
    good = np.zeros((1, c, c + 1), np.float32)
    path = _htc_matrix_file(tmp_path / "weights+bias_a.blosc", {"heart": good, "kidney": good})
    with pytest.raises(ValueError, match="heart"):
        load_transforms(path)
    assert len(load_transforms(path, labels=["kidney"])) == 1
    bad = _htc_matrix_file(tmp_path / "weights+bias_b.blosc", {"kidney": np.zeros((1, c, c))})
    with pytest.raises(ValueError, match="projection mode"):
        load_transforms(bad)


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # what a crafted file would ask pickle to run
        import builtins

        return (builtins.open, (self.marker, "w"))


def test_malicious_projection_file_is_refused_without_running_it(tmp_path) -> None:
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "weights+bias_evil.blosc"
    path.write_bytes(pickle.dumps({"kidney": _Payload(marker)}) + b"\0" * 64)
    with pytest.raises(ValueError, match="not an htc projection-matrix file"):
        load_transforms(path)
    assert not marker.exists()
    # a plain array file (not a dict of matrices) is refused too
    single = tmp_path / "weights+bias_single.blosc"
    arr = np.zeros((2, 3), np.float32)
    import blosc2

    single.write_bytes(pickle.dumps((arr.shape, arr.dtype)) + blosc2.compress(arr.tobytes()))
    with pytest.raises(ValueError):
        load_transforms(single)
