"""Import raw Tivita recordings plus label masks and a metadata table into the dataset layout.

Input::

    RAW/<folder>/<timestamp>_SpecCube.dat   one folder per image (e.g. RAW/P043/2019_12_20_12_38_35/)
    RAW/<folder>/<timestamp>_labels.png      raw label mask (png or npy; optional)
    metadata.csv                             one row per image

Metadata columns: ``image_name``, ``species``, ``tissue_state`` (required); ``subject``
(default: image name prefix), ``folder`` and ``label_file`` (relative to RAW; found
automatically otherwise) and any optional manifest column (``phase_type``, ``sto2_mean``, ...).
Raw mask values are class indices of ``mapping`` unless ``raw_label_names`` (raw value -> name,
or a JSON file of that) says otherwise; values >= 100 are unlabelled.
Every problem is collected first and reported together; nothing is written if any is found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from datasets.cube_io import SUFFIXES, CubeFormatError, cube_shape, read_cube, write_cube
from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
from datasets.manifest import (
    CUBES_DIR,
    LABELS_DIR,
    OPTIONAL_COLUMNS,
    DatasetError,
    Manifest,
    Problem,
    join_labels_present,
    load_manifest,
    subject_of,
    write_manifest,
)

LABEL_SUFFIXES = (".png", ".npy")


def _safe_rel(raw_dir: Path, rel: str) -> Path | None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        return None
    return raw_dir / Path(*p.parts)


def _find_folder(raw_dir: Path, row: Mapping[str, Any]) -> Path | None:
    name = str(row["image_name"])
    subject = str(row.get("subject") or subject_of(name))
    timestamp = name.split("#")[1] if "#" in name else name
    candidates = [raw_dir / subject / timestamp, raw_dir / timestamp, raw_dir / name]
    return next((c for c in candidates if c.is_dir()), None)


def _find_cube(folder: Path, timestamp: str) -> list[Path]:
    exact = folder / f"{timestamp}_SpecCube.dat"
    if exact.is_file():
        return [exact]
    return sorted(folder.glob("*_SpecCube.dat"))


def _find_labels(folder: Path, timestamp: str) -> Path | None:
    for stem in (f"{timestamp}_labels", "labels"):
        for suffix in LABEL_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def read_label_file(path: Path) -> np.ndarray:
    """Raw label mask from png (8/16-bit grey or palette) or npy (never unpickled)."""
    if path.suffix == ".npy":
        mask = np.load(path, allow_pickle=False)
    elif path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise ValueError(f"label png must be greyscale or palette, got mode {im.mode}")
            mask = np.array(im)
    else:
        raise ValueError(f"label masks must be .png or .npy, got {path.name}")
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise ValueError(f"label mask must be a 2-D integer image, got {mask.dtype} {mask.shape}")
    return mask


def _load_raw_names(raw: Mapping[int, str] | str | Path | None) -> dict[int, str] | None:
    if raw is None:
        return None
    if isinstance(raw, str | Path):
        data = json.loads(Path(raw).read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in data.items()}
    return {int(k): str(v) for k, v in raw.items()}


def import_tivita_folder(
    raw_dir: str | Path,
    metadata: str | Path | pd.DataFrame,
    out_root: str | Path,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
    raw_label_names: Mapping[int, str] | str | Path | None = None,
    cube_format: str = "b2nd",
    cube_dtype: str = "float16",
    progress: bool = False,
) -> Manifest:
    """Convert raw Tivita folders + masks + metadata into a dataset at ``out_root``.

    Raises :class:`DatasetError` listing every problem (missing or ambiguous cube files,
    unreadable cubes or masks, shape mismatches, bad metadata) before anything is written.
    """
    raw = Path(raw_dir)
    out = Path(out_root)
    meta = (
        metadata.copy()
        if isinstance(metadata, pd.DataFrame)
        else pd.read_csv(metadata, dtype=str, keep_default_na=False)
    )
    names = _load_raw_names(raw_label_names)
    problems: list[Problem] = []
    missing = [c for c in ("image_name", "species", "tissue_state") if c not in meta.columns]
    if missing:
        raise DatasetError([Problem("missing_column", f"metadata lacks column(s) {missing}")])
    plan = []
    for _, row in meta.iterrows():
        r = {k: ("" if isinstance(v, float) and v != v else v) for k, v in row.items()}
        name = str(r["image_name"])
        timestamp = name.split("#")[1] if "#" in name else name
        folder = _safe_rel(raw, str(r["folder"])) if r.get("folder") else _find_folder(raw, r)
        if folder is None or not folder.is_dir():
            problems.append(
                Problem("missing_cube", f"no folder for the image under {raw} (set 'folder')", name)
            )
            continue
        cubes = _find_cube(folder, timestamp)
        if len(cubes) != 1:
            what = "no" if not cubes else f"{len(cubes)} ambiguous"
            problems.append(Problem("missing_cube", f"{what} *_SpecCube.dat in {folder}", name))
            continue
        try:
            h, w, _ = cube_shape(cubes[0])
        except CubeFormatError as e:
            problems.append(Problem("unreadable_cube", str(e), name))
            continue
        label_file = (
            _safe_rel(raw, str(r["label_file"]))
            if r.get("label_file")
            else _find_labels(folder, timestamp)
        )
        if r.get("label_file") and (label_file is None or not label_file.is_file()):
            problems.append(
                Problem("missing_labels", f"label file {r['label_file']!r} not found", name)
            )
            continue
        mask = None
        if label_file is not None:
            try:
                mask = mapping.map_raw(read_label_file(label_file), names)
            except (ValueError, OSError) as e:
                problems.append(Problem("unreadable_labels", f"{label_file}: {e}", name))
                continue
            if mask.shape != (h, w):
                problems.append(
                    Problem(
                        "wrong_label_shape",
                        f"mask {label_file.name} is {mask.shape[0]}x{mask.shape[1]}, cube is {h}x{w}",
                        name,
                    )
                )
                continue
        plan.append((r, cubes[0], mask, (h, w)))
    if problems:
        raise DatasetError(problems, out)

    rows = []
    iterator: Any = plan
    if progress:
        from tqdm import tqdm

        iterator = tqdm(plan, desc="import", unit="image")
    for r, cube_file, mask, (h, w) in iterator:
        name = str(r["image_name"])
        cube_rel = f"{CUBES_DIR}/{name}{SUFFIXES[cube_format]}"
        write_cube(out / cube_rel, read_cube(cube_file), fmt=cube_format, dtype=cube_dtype)
        label_rel = ""
        present = ""
        if mask is not None:
            label_rel = f"{LABELS_DIR}/{name}.npy"
            (out / LABELS_DIR).mkdir(parents=True, exist_ok=True)
            np.save(out / label_rel, mask)
            present = join_labels_present(mapping.names_present(mask))
        row: dict[str, Any] = {
            "image_name": name,
            "species": r["species"],
            "subject": r.get("subject") or subject_of(name),
            "tissue_state": r["tissue_state"],
            "cube_path": cube_rel,
            "label_path": label_rel,
            "labels_present": present,
            "height": h,
            "width": w,
        }
        for col in OPTIONAL_COLUMNS:
            if col in r and r[col] != "" and col not in row:
                row[col] = r[col]
        rows.append(row)
    write_manifest(out, rows)
    return load_manifest(out)
