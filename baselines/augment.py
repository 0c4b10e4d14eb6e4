"""Geometric and physiology-based (xeno-learning) augmentation of (cube, label) pairs.

Physiology-based augmentation follows the xeno-learning study: a pathological change (e.g.
kidney malperfusion) is learned in a source species as an affine map ``x -> xW + b`` of
L1-normalised spectra, one per organ label and per (physiological, pathological) image pair,
by matching per-channel means and standard deviations (no pixel correspondence). During
target-species training the maps are applied to the organ's pixels with a random strength.

Cubes are ``(H, W, C)`` float32 arrays; labels are ``(H, W)`` uint8 with 255 = ignore.
Transforms are stored as ``label -> [n_pairs, C, C + 1]`` with ``[..., :C] = W`` and
``[..., C] = b``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
from datasets.spectral import l1_normalize

Sample = tuple[np.ndarray, np.ndarray]  # (cube (H, W, C), labels (H, W))
Transforms = dict[int, np.ndarray]  # label -> [n_pairs, C, C + 1]

__all__ = [
    "apply_physiology_augmentation",
    "fit_affine_transform",
    "learn_transforms",
    "load_transforms",
    "random_flip_rotate",
    "save_transforms",
]


# --- geometric ---------------------------------------------------------------------------------
def random_flip_rotate(
    cube: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal/vertical flips and a multiple of 90 degrees rotation.

    Non-square images only get 0 or 180 degrees so that their shape (and batching) is kept.
    """
    h, w = labels.shape
    k = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2))
    if k:
        cube, labels = np.rot90(cube, k, axes=(0, 1)), np.rot90(labels, k, axes=(0, 1))
    if rng.random() < 0.5:
        cube, labels = cube[:, ::-1], labels[:, ::-1]
    if rng.random() < 0.5:
        cube, labels = cube[::-1], labels[::-1]
    return np.ascontiguousarray(cube), np.ascontiguousarray(labels)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch CPU ops on ``n`` threads (None: leave as is)."""
    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


# --- physiology-based: fitting -----------------------------------------------------------------
def fit_affine_transform(
    X: np.ndarray | torch.Tensor,
    Y: np.ndarray | torch.Tensor,
    steps: int = 100,
    lr: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Affine map (W [C, C], b [C]) whose output moments match those of ``Y``.

    ``X`` [n, C] and ``Y`` [m, C] are the pixel spectra of one label in the physiological and
    the pathological image. Full-batch Adam from W = I, b = 0 minimises
    ``MSE(mean(XW + b), mean(Y)) + MSE(std(XW + b), std(Y))`` over channels.

    The loss depends on ``X`` only through its mean and covariance (mean(XW + b) = mean(X) W
    + b, var(XW + b) = diag(W^T cov(X) W)), so each step costs O(C^3) instead of O(n C^2):
    the result is the same as the pixel-level full batch, far faster for large organs.
    """
    with torch_threads(1):  # tiny ops: extra threads only add (heavy, under load) overhead
        return _fit_affine(X, Y, steps, lr)


def _fit_affine(
    X: np.ndarray | torch.Tensor, Y: np.ndarray | torch.Tensor, steps: int, lr: float
) -> tuple[np.ndarray, np.ndarray]:
    x = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(Y), dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must be [n, C] with the same C, got {x.shape} and {y.shape}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("need at least two pixels in each image to match standard deviations")
    c = x.shape[1]
    mu_x = x.mean(0)
    xc = x - mu_x
    cov_x = xc.T @ xc / (x.shape[0] - 1)  # unbiased, like torch.std
    mu_y, std_y = y.mean(0), y.std(0)

    W = torch.eye(c, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        mean = mu_x @ W + b
        var = ((cov_x @ W) * W).sum(0)
        std = torch.sqrt(var.clamp_min(1e-20))
        loss = torch.mean((mean - mu_y) ** 2) + torch.mean((std - std_y) ** 2)
        loss.backward()
        opt.step()
    return (
        W.detach().numpy().astype(np.float32),
        b.detach().numpy().astype(np.float32),
    )


def learn_transforms(
    pairs: Iterable[tuple[Sample, Sample]],
    labels: Iterable[int],
    steps: int = 100,
    lr: float = 0.01,
    min_pixels: int = 16,
) -> Transforms:
    """Fit one affine map per label and per (physiological, pathological) image pair.

    ``pairs`` holds ``((phys_cube, phys_labels), (path_cube, path_labels))``; the images need
    not share a subject. A pair contributes to a label when the label covers at least
    ``min_pixels`` pixels in both images. Labels without any pair are left out.
    """
    wanted = [int(label) for label in labels]
    found: dict[int, list[np.ndarray]] = {label: [] for label in wanted}
    for (cube_a, lab_a), (cube_b, lab_b) in pairs:
        for label in wanted:
            mask_a, mask_b = lab_a == label, lab_b == label
            if mask_a.sum() < min_pixels or mask_b.sum() < min_pixels:
                continue
            W, b = fit_affine_transform(cube_a[mask_a], cube_b[mask_b], steps, lr)
            found[label].append(np.concatenate([W, b[:, None]], axis=1))
    return {label: np.stack(mats).astype(np.float32) for label, mats in found.items() if mats}


# --- storage (npz, never pickle) ---------------------------------------------------------------
def save_transforms(path: str | Path, transforms: Mapping[int, np.ndarray]) -> Path:
    """Write ``label -> [n_pairs, C, C + 1]`` as an uncompressed .npz (keys ``label_<k>``)."""
    p = Path(path)
    arrays = {f"label_{int(k)}": np.asarray(v, dtype=np.float32) for k, v in transforms.items()}
    for key, arr in arrays.items():
        if arr.ndim != 3 or arr.shape[2] != arr.shape[1] + 1:
            raise ValueError(f"{key}: expected [n_pairs, C, C + 1], got {arr.shape}")
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as fh:  # a file handle keeps numpy from appending ".npz"
        np.savez(fh, **arrays)
    return p


def load_transforms(
    path: str | Path,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
    labels: Sequence[str] | None = None,
) -> Transforms:
    """Read transforms: our ``.npz`` (from :func:`save_transforms`) or htc's projection matrices.

    htc's ``projection_matrices/<name>.blosc`` files hold ``label name -> float32 [n, C, C + 1]``
    (W and b side by side; ``weights_*`` files hold W only ``[n, C, C]``, ``bias_*`` files b
    only ``[n, C]``; the mode is the file name's first ``_`` part, as in htc). They are read
    with :func:`datasets.htc_blosc.read_blosc_dict`, which parses the pickled header as data
    and refuses anything but plain arrays, so a crafted file cannot run code. Label names are
    mapped to indices with ``mapping``; ``labels`` keeps only these names (htc's
    ``target_labels``), and any other name the mapping does not know is an error. Every
    result is ``label index -> float32 [n, C, C + 1]``.
    """
    p = Path(path)
    if p.suffix == ".npz":
        return _load_npz(p)
    from datasets.htc_blosc import HtcBloscError

    try:
        variables = _read_blosc_dict(p)
    except HtcBloscError as e:
        raise ValueError(f"{p}: not an htc projection-matrix file this reader accepts: {e}") from e
    if labels is not None:
        variables = {k: v for k, v in variables.items() if k in set(labels)}
    unknown = sorted(set(variables) - set(mapping.class_names))
    if unknown:
        raise ValueError(
            f"{p}: labels {unknown} are not classes of the label mapping "
            f"{list(mapping.class_names)}; pass labels=[...] to keep only known ones"
        )
    mode = p.stem.split("_")[0]
    out: Transforms = {}
    for name, arr in variables.items():
        out[mapping.index_of(name)] = _as_affine(np.asarray(arr), mode, f"{p}: {name}")
    return out


def _read_blosc_dict(path: Path) -> dict[str, np.ndarray]:
    """htc's dict-of-arrays .blosc, parsed without unpickling; anything else is refused."""
    from datasets.htc_blosc import read_htc_blosc_dict

    return read_htc_blosc_dict(path)


def _as_affine(arr: np.ndarray, mode: str, where: str) -> np.ndarray:
    """``[n, C, C + 1]`` from htc's three projection modes (W+b, W only, b only)."""
    if arr.dtype.kind != "f":
        raise ValueError(f"{where}: expected floating point matrices, got {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if mode not in ("weights", "bias", "weights+bias"):  # not htc's naming: infer from shape
        mode = {2: "bias"}.get(arr.ndim, "weights" if arr.shape[-1] == arr.shape[-2] else "")
        mode = mode or "weights+bias"
    if mode == "bias" and arr.ndim == 2:
        n, c = arr.shape
        eye = np.broadcast_to(np.eye(c, dtype=np.float32), (n, c, c))
        return np.concatenate([eye, arr[:, :, None]], axis=2)
    if mode == "weights" and arr.ndim == 3 and arr.shape[1] == arr.shape[2]:
        return np.concatenate([arr, np.zeros((*arr.shape[:2], 1), np.float32)], axis=2)
    if mode == "weights+bias" and arr.ndim == 3 and arr.shape[2] == arr.shape[1] + 1:
        return np.ascontiguousarray(arr)
    raise ValueError(f"{where}: shape {arr.shape} does not fit projection mode {mode!r}")


def _load_npz(path: Path) -> Transforms:
    out: Transforms = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            if not key.startswith("label_"):
                raise ValueError(f"unexpected key {key!r} in transforms file {path}")
            arr = np.asarray(data[key], dtype=np.float32)
            if arr.ndim != 3 or arr.shape[2] != arr.shape[1] + 1:
                raise ValueError(f"{key}: expected [n_pairs, C, C + 1], got {arr.shape}")
            out[int(key.removeprefix("label_"))] = arr
    return out


# --- physiology-based: application -------------------------------------------------------------
def apply_physiology_augmentation(
    cube: np.ndarray,
    labels: np.ndarray,
    transforms: Mapping[int, np.ndarray],
    target_labels: Sequence[int],
    p: float = 0.8,
    rng: np.random.Generator | None = None,
    interpolate: bool = True,
    renormalize: bool = True,
) -> np.ndarray:
    """Simulate the learned pathology on an (L1-normalised) target-species image.

    As htc's ``ProjectionTransform`` (label_match mode, ``interpolate=True``): with
    probability ``p`` per image; then for each label present in the image (ascending index)
    that is a target label and has matrices: one random (W, b) of that label, one weight
    ``w ~ U(0, 1)``, and the label's pixels become ``lerp(x, xW + b, w)`` (``xW + b`` without
    ``interpolate``), computed in float32. Random draws in this order: the ``p`` draw, then
    per label the matrix index and ``w``. htc's transform stops there; the study re-applies
    the L1 normalisation afterwards, which ``renormalize`` does for the changed pixels.
    Other pixels are returned bit-identical; the input is never modified.
    """
    rng = rng if rng is not None else np.random.default_rng()
    if p <= 0 or rng.random() >= p:
        return cube
    out = None
    c = cube.shape[-1]
    wanted = {int(t) for t in target_labels}
    present = [int(v) for v in np.unique(labels)]
    for label in present:
        mats = transforms.get(label)
        if label not in wanted or mats is None or len(mats) == 0:
            continue
        if mats.shape[1] != c:
            raise ValueError(f"transforms have {mats.shape[1]} channels, the cube has {c}")
        mask = labels == label
        T = np.asarray(mats[int(rng.integers(len(mats)))], dtype=np.float32)
        x = cube[mask].astype(np.float32, copy=False)
        y = x @ T[:, :c] + T[:, c]
        if interpolate:
            w = np.float32(rng.random())
            y = x + w * (y - x)
        if out is None:
            out = np.array(cube, dtype=np.float32, copy=True)
        out[mask] = l1_normalize(y) if renormalize else y
    return cube if out is None else out
