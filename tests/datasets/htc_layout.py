"""Small synthetic datasets in htc's layout, built the way htc writes its files.

Used by tests/datasets/test_htc_import.py and by scripts/reference/htc_reference.py, which
runs in an environment with imsy-htc (and without XenoBench's dependencies): so this module
needs only numpy, pickle and a blosc codec (``blosc2`` here, htc's ``blosc`` there), and writes
every file itself. Everything is deterministic in ``seed``.

Layout written (htc's ``DataPathMultiorgan``)::

    ROOT/data/dataset_settings.json
    ROOT/data/subjects/<subject>/<timestamp>/<timestamp>_SpecCube.dat
    ROOT/intermediates/segmentations/<subject>#<timestamp>.blosc
    ROOT/intermediates/tables/<name>@meta.csv
    ROOT/intermediates/preprocessing/parameter_images/<subject>#<timestamp>.blosc
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

N_CHANNELS = 100

#: A dataset_settings.json label mapping in the style of htc's semantic datasets: organs,
#: background materials, names outside the study's mapping and two invalid values.
LABEL_MAPPING: dict[str, int] = {
    "background": 0,
    "stomach": 1,
    "small_bowel": 2,
    "meso": 3,
    "metal": 4,
    "blue_cloth": 5,
    "heart": 6,
    "kidney": 7,
    "liver": 8,
    "gallbladder": 9,
    "silicone_gloves_light_blue": 10,
    "white_compress_dry": 11,
    "overlap": 254,
    "unlabeled": 255,
}
LAST_VALID_LABEL_INDEX = 11
ANNOTATION_DEFAULT = "semantic#primary"
#: A raw mask value that the dataset settings do not name (htc: "unknown" -> invalid).
UNNAMED_VALUE = 42

#: image name -> (annotations in its segmentation file, has parameter images, perfusion state)
IMAGES: dict[str, tuple[tuple[str, ...], bool, str]] = {
    "P041#2019_12_14_12_00_16": (
        ("semantic#primary", "semantic#reannotation"),
        True,
        "physiological",
    ),
    "P041#2019_12_14_12_01_39": (("semantic#primary",), False, "malperfused"),
    "R002#2021_03_01_10_00_00": (("polygon#annotator1",), False, "icg"),
}
SPECIES = {"P041": "pig", "R002": "rat"}


def make_cube(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Reflectance-like float32 (H, W, 100): smooth positive spectra plus noise and one
    all-zero pixel (zeros after L1 normalisation, in htc as here)."""
    wl = np.linspace(0, 1, N_CHANNELS)
    base = 0.3 + 0.2 * np.sin(2 * np.pi * (wl[None, None, :] + rng.random((height, width, 1))))
    cube = base * (0.5 + rng.random((height, width, 1))) + 0.01 * rng.random(
        (height, width, N_CHANNELS)
    )
    cube = cube.astype(np.float32)
    cube[0, 1, :] = 0.0
    return cube


def make_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A raw uint8 mask of 4 x 4 blocks: every named value, the unnamed one and 254/255 (in a
    random order, so each mask differs), plus a few scattered pixels."""
    values = np.array([*sorted(set(LABEL_MAPPING.values())), UNNAMED_VALUE], dtype=np.uint8)
    order = rng.permutation(values)
    mask = np.zeros((height, width), np.uint8)
    bh, bw = max(1, height // 4), max(1, width // 4)
    k = 0
    for i in range(0, height, bh):
        for j in range(0, width, bw):
            mask[i : i + bh, j : j + bw] = order[k % order.size]
            k += 1
    scatter = rng.random((height, width)) < 0.1
    mask[scatter] = rng.choice(values, int(scatter.sum()))
    return mask


def write_tivita(path: Path, cube: np.ndarray) -> None:
    """The Tivita ``_SpecCube.dat`` layout: big-endian int32 (W, H, C), then big-endian float32
    over (x, flipped y, c), the inverse of htc's ``read_tivita_hsi``."""
    h, w, c = cube.shape
    stored = np.swapaxes(np.flip(cube, axis=0), 0, 1)  # (W, H, C), y flipped
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(np.array([w, h, c], dtype=">i4").tobytes())
        f.write(np.ascontiguousarray(stored, dtype=">f4").tobytes())


def _compress(array: np.ndarray) -> bytes:
    """A blosc 1 buffer as htc's compress_file writes (zstd, level 9, byte shuffle) where the
    ``blosc`` package is installed (htc's environment); else blosc2's, which the reader
    decompresses the same way."""
    try:
        import blosc
    except ImportError:
        import blosc2

        return blosc2.compress(
            array.tobytes(), typesize=array.dtype.itemsize, clevel=9, codec=blosc2.Codec.ZSTD
        )
    return blosc.compress(array.tobytes(), typesize=array.dtype.itemsize, clevel=9, cname="zstd")


def write_blosc_dict(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """htc's multi-array ``.blosc``: pickle.dump({key: (shape, dtype, n_bytes)}) + buffers."""
    buffers, meta = [], {}
    for key, array in arrays.items():
        array = np.ascontiguousarray(array)
        data = _compress(array)
        buffers.append(data)
        meta[key] = (array.shape, array.dtype, len(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(meta, f)
        for data in buffers:
            f.write(data)


def predictions(ref_mapped: np.ndarray, seed: int, n_classes: int = 12) -> list[np.ndarray]:
    """Deterministic predictions for a mapped reference (255 = ignore): a perfect one, a noisy
    one, one with a class that is absent from the reference, and one predicting one class."""
    rng = np.random.default_rng(seed)
    ref = np.where(ref_mapped == 255, 0, ref_mapped).astype(np.int64)
    noisy = ref.copy()
    flip = rng.random(ref.shape) < 0.3
    noisy[flip] = rng.integers(0, n_classes, int(flip.sum()))
    absent = [c for c in range(n_classes) if c not in set(np.unique(ref_mapped).tolist())]
    extra = ref.copy()
    extra[: max(1, ref.shape[0] // 3), :] = absent[0] if absent else 0
    constant = np.full_like(ref, int(np.bincount(ref.ravel()).argmax()))
    return [
        ref.astype(np.uint8),
        noisy.astype(np.uint8),
        extra.astype(np.uint8),
        constant.astype(np.uint8),
    ]


def build_htc_dataset(
    root: Path, *, seed: int = 0, height: int = 12, width: int = 16, meta_table: str = "csv"
) -> dict[str, Any]:
    """Write the synthetic dataset under ``root``; returns what was written (image name ->
    cube, raw masks, parameter images) for the tests to compare with."""
    rng = np.random.default_rng(seed)
    data_dir = root / "data"
    inter = root / "intermediates"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "dataset_settings.json").write_text(
        json.dumps(
            {
                "dataset_name": "synthetic_htc",
                "label_mapping": LABEL_MAPPING,
                "last_valid_label_index": LAST_VALID_LABEL_INDEX,
                "annotation_name_default": ANNOTATION_DEFAULT,
            },
            indent=2,
        )
    )
    written: dict[str, Any] = {}
    rows = []
    for name, (annotation_names, has_params, state) in IMAGES.items():
        subject, timestamp = name.split("#")
        cube = make_cube(rng, height, width)
        write_tivita(
            data_dir / "subjects" / subject / timestamp / f"{timestamp}_SpecCube.dat", cube
        )
        masks = {a: make_mask(rng, height, width) for a in annotation_names}
        write_blosc_dict(inter / "segmentations" / f"{name}.blosc", masks)
        params = None
        if has_params:
            params = {
                "StO2": rng.random((height, width)).astype(np.float32),
                "NIR": rng.random((height, width)).astype(np.float32),
            }
            write_blosc_dict(inter / "preprocessing" / "parameter_images" / f"{name}.blosc", params)
        written[name] = {"cube": cube, "masks": masks, "parameter_images": params}
        rows.append(
            {
                "image_name": name,
                "subject_name": subject,
                "timestamp": timestamp,
                "species_name": SPECIES[subject],
                "perfusion_state": state,
                "camera_name": "0102-00085_correct-1",
            }
        )
    tables = inter / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    if meta_table == "csv":
        cols = list(rows[0])
        lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]
        (tables / "synthetic_htc@meta.csv").write_text("\n".join(lines) + "\n")
    elif meta_table == "feather":
        import pandas as pd

        pd.DataFrame(rows).to_feather(tables / "synthetic_htc@meta.feather")
    return written
