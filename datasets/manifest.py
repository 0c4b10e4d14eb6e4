"""Dataset layout, manifest table and validation.

Layout of a dataset folder ``ROOT``::

    ROOT/manifest.csv              one row per image (columns: see MANIFEST_COLUMNS)
    ROOT/cubes/<image_name>.<ext>  (H, W, 100) reflectance cube (.b2nd, .npy or Tivita .dat)
    ROOT/labels/<image_name>.npy   (H, W) uint8 class indices, 255 = ignore
    ROOT/splits.json               htc data specification (list of folds)

The manifest is CSV: a few thousand rows at most, read by people and spreadsheets, diffable in
review and parsed with the standard library alone. Types are enforced on load instead of being
trusted from the file. Paths in the manifest are relative to ``ROOT`` and may not leave it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from datasets.cube_io import CubeFormatError, open_cube, write_cube
from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
from datasets.spectral import N_CHANNELS, l1_normalize

MANIFEST_NAME = "manifest.csv"
SPLITS_NAME = "splits.json"
CUBES_DIR = "cubes"
LABELS_DIR = "labels"

SPECIES = ("pig", "rat", "human")
TISSUE_STATES = ("physiological", "malperfused", "icg", "unclear")
PHASE_TYPES = ("ischemia", "stasis", "avascular")

REQUIRED_COLUMNS = (
    "image_name",
    "species",
    "subject",
    "tissue_state",
    "cube_path",
    "label_path",
    "labels_present",
)
# Optional columns and their types; other extra columns are kept as strings.
OPTIONAL_COLUMNS: dict[str, str] = {
    "timestamp": "str",
    "camera_id": "str",
    "phase_type": "str",
    "clamping_location": "str",
    "clamped": "bool",
    "reperfused": "bool",
    "icg_seconds": "float",
    "sto2_mean": "float",
    "blood_volume_mean": "float",
    "height": "int",
    "width": "int",
}
MANIFEST_COLUMNS = REQUIRED_COLUMNS + tuple(OPTIONAL_COLUMNS)
IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(#[A-Za-z0-9_.\-]+)+$")
LABELS_SEP = ";"


@dataclass(frozen=True)
class Problem:
    """One validation finding; ``severity`` is "error" (unusable) or "warning"."""

    code: str
    message: str
    image_name: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.image_name}: " if self.image_name else ""
        return f"[{self.severity}] {where}{self.message}"


class DatasetError(ValueError):
    """A dataset failed validation; ``problems`` lists every finding."""

    def __init__(self, problems: Sequence[Problem], root: Path | None = None) -> None:
        self.problems = list(problems)
        self.root = root
        errors = [p for p in self.problems if p.severity == "error"]
        head = f"dataset {root} is invalid" if root else "dataset is invalid"
        lines = [f"{head}: {len(errors)} error(s)"] + [f"  - {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        super().__init__("\n".join(lines))


def split_labels_present(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [s.strip() for s in str(value).split(LABELS_SEP) if s.strip()]


def join_labels_present(names: Iterable[str]) -> str:
    return LABELS_SEP.join(names)


def subject_of(image_name: str) -> str:
    """Subject part of an htc image name (``P043#2019_12_20_12_38_35`` -> ``P043``)."""
    return image_name.split("#", 1)[0]


def _parse_bool(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y"):
        return True
    if text in ("false", "0", "no", "n"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass
class Manifest:
    """The manifest table of a dataset plus the root its relative paths refer to."""

    root: Path
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def image_names(self) -> list[str]:
        return self.table["image_name"].tolist()

    def row(self, image_name: str) -> pd.Series:
        rows = self.table[self.table["image_name"] == image_name]
        if rows.empty:
            raise KeyError(f"image {image_name!r} is not in the manifest of {self.root}")
        return rows.iloc[0]

    def resolve(self, relative: str) -> Path:
        """Absolute path of a manifest path; refuses paths that leave the dataset root."""
        rel = PurePosixPath(str(relative))
        if rel.is_absolute() or ".." in rel.parts or str(relative).strip() == "":
            raise DatasetError(
                [Problem("bad_path", f"path {relative!r} must be relative to the dataset root")],
                self.root,
            )
        return self.root / Path(*rel.parts)

    def cube_path(self, image_name: str) -> Path:
        return self.resolve(self.row(image_name)["cube_path"])

    def label_path(self, image_name: str) -> Path | None:
        value = self.row(image_name)["label_path"]
        return self.resolve(value) if isinstance(value, str) and value else None

    def read_cube(self, image_name: str, **kwargs: Any) -> np.ndarray:
        from datasets.cube_io import read_cube

        return read_cube(self.cube_path(image_name), **kwargs)

    def read_labels(self, image_name: str) -> np.ndarray | None:
        path = self.label_path(image_name)
        return None if path is None else np.load(path, allow_pickle=False)

    def select(self, image_names: Iterable[str] | None = None, **equals: Any) -> Manifest:
        """Rows with the given names and/or column values (``species="pig"``)."""
        mask = pd.Series(True, index=self.table.index)
        if image_names is not None:
            mask &= self.table["image_name"].isin(list(image_names))
        for col, value in equals.items():
            values = value if isinstance(value, list | tuple | set) else [value]
            mask &= self.table[col].isin(list(values))
        return Manifest(self.root, self.table[mask].reset_index(drop=True), list(self.problems))


def manifest_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """DataFrame from row dicts with the standard columns first (missing optional ones empty)."""
    df = pd.DataFrame(list(rows))
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    ordered = [c for c in MANIFEST_COLUMNS if c in df.columns]
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return df[ordered + extra]


def write_manifest(root: str | Path, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> Path:
    """Write ``ROOT/manifest.csv`` (standard columns first)."""
    df = rows if isinstance(rows, pd.DataFrame) else manifest_frame(rows)
    path = Path(root) / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def _read_table(root: Path) -> tuple[pd.DataFrame | None, list[Problem]]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None, [Problem("manifest_missing", f"no {MANIFEST_NAME} in {root}")]
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises several parser error types
        return None, [Problem("manifest_unreadable", f"cannot parse {path}: {e}")]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        return None, [
            Problem("missing_column", f"{MANIFEST_NAME} lacks required column(s) {missing}")
        ]
    problems: list[Problem] = []
    for col, kind in OPTIONAL_COLUMNS.items():
        if col not in df.columns or kind == "str":
            continue
        parsed: list[Any] = []
        for name, raw in zip(df["image_name"], df[col], strict=True):
            try:
                if raw == "":
                    parsed.append(None)
                elif kind == "bool":
                    parsed.append(_parse_bool(raw))
                else:
                    num = float(raw)
                    if kind == "int":
                        if not num.is_integer():
                            raise ValueError
                        num = int(num)
                    parsed.append(num)
            except ValueError:
                problems.append(
                    Problem("bad_value", f"column {col!r} has non-{kind} value {raw!r}", name)
                )
                parsed.append(None)
        df[col] = pd.Series(parsed, index=df.index, dtype=object)
    return df, problems


def load_manifest(root: str | Path) -> Manifest:
    """Load ``ROOT/manifest.csv`` with typed optional columns.

    Raises :class:`DatasetError` if the table is missing, unreadable or lacks required
    columns; value problems are listed in ``Manifest.problems`` (see :func:`validate_dataset`).
    """
    root_path = Path(root)
    df, problems = _read_table(root_path)
    if df is None:
        raise DatasetError(problems, root_path)
    return Manifest(root_path, df, problems)


# --- validation --------------------------------------------------------------------------------
def _check_rows(man: Manifest, mapping: LabelMapping) -> list[Problem]:
    df = man.table
    problems: list[Problem] = []
    if df.empty:
        problems.append(Problem("empty_manifest", "the manifest has no rows", None, "warning"))
    dup = df["image_name"][df["image_name"].duplicated()].unique().tolist()
    for name in dup:
        problems.append(Problem("duplicate_image_name", f"image name {name!r} appears twice", name))
    for _, row in df.iterrows():
        name = row["image_name"]
        if not IMAGE_NAME_RE.match(name):
            problems.append(
                Problem(
                    "bad_image_name",
                    f"image name {name!r} is not of the form subject#timestamp[#camera] "
                    "(letters, digits, _ . - only)",
                    name or None,
                )
            )
        elif row["subject"] != subject_of(name):
            problems.append(
                Problem(
                    "subject_mismatch",
                    f"subject {row['subject']!r} differs from the image name prefix "
                    f"{subject_of(name)!r}",
                    name,
                )
            )
        if row["species"] not in SPECIES:
            problems.append(
                Problem("bad_species", f"species {row['species']!r} is not one of {SPECIES}", name)
            )
        if row["tissue_state"] not in TISSUE_STATES:
            problems.append(
                Problem(
                    "bad_tissue_state",
                    f"tissue_state {row['tissue_state']!r} is not one of {TISSUE_STATES}",
                    name,
                )
            )
        phase = row.get("phase_type", "")
        if isinstance(phase, str) and phase and phase not in PHASE_TYPES:
            problems.append(
                Problem("bad_value", f"phase_type {phase!r} is not one of {PHASE_TYPES}", name)
            )
        sto2 = row.get("sto2_mean")
        if sto2 is not None and not (isinstance(sto2, float) and 0.0 <= sto2 <= 1.0):
            if not (isinstance(sto2, float) and math.isnan(sto2)):
                problems.append(Problem("bad_value", f"sto2_mean {sto2!r} is outside [0, 1]", name))
        unknown = [
            n for n in split_labels_present(row["labels_present"]) if n not in mapping.name_to_index
        ]
        if unknown:
            problems.append(
                Problem(
                    "unknown_label_name",
                    f"labels_present names {unknown} that are not classes of the label mapping",
                    name,
                )
            )
        for col in ("cube_path", "label_path"):
            value = row[col]
            if col == "label_path" and value == "":
                continue
            rel = PurePosixPath(value)
            if value == "" or rel.is_absolute() or ".." in rel.parts or "\\" in value:
                problems.append(
                    Problem(
                        "bad_path",
                        f"{col} {value!r} must be a relative path inside the dataset folder",
                        name,
                    )
                )
        if row["label_path"] == "" and split_labels_present(row["labels_present"]):
            problems.append(
                Problem("missing_labels", "labels_present is set but label_path is empty", name)
            )
    return problems


def _check_cube_data(
    path: Path, name: str, expected_channels: int, allow_negative: bool, row: pd.Series
) -> tuple[list[Problem], tuple[int, int] | None]:
    problems: list[Problem] = []
    if not path.is_file():
        return [Problem("missing_cube", f"cube file {path} does not exist", name)], None
    try:
        lazy = open_cube(path)
        h, w, c = lazy.shape
    except CubeFormatError as e:
        return [Problem("unreadable_cube", str(e), name)], None
    if c != expected_channels:
        problems.append(
            Problem(
                "wrong_channels",
                f"cube has {c} channels, expected {expected_channels} (500-1000 nm, np.linspace(500, 1000, 100))",
                name,
            )
        )
    for col, actual in (("height", h), ("width", w)):
        declared = row.get(col)
        if declared is not None and declared == declared and declared != actual:
            problems.append(
                Problem(
                    "wrong_shape", f"cube {col} is {actual} but the manifest says {declared}", name
                )
            )
    n_nonfinite = n_negative = 0
    min_value = math.inf
    step = max(1, 2**22 // max(1, w * c))  # about 4M values per band
    try:
        for y0 in range(0, h, step):
            band = lazy[y0 : y0 + step]
            finite = np.isfinite(band)
            n_nonfinite += int(band.size - np.count_nonzero(finite))
            neg = band < 0
            n_negative += int(np.count_nonzero(neg))
            if n_negative:
                min_value = min(min_value, float(band[finite & neg].min(initial=0.0)))
    except CubeFormatError as e:
        return [Problem("unreadable_cube", str(e), name)], None
    if n_nonfinite:
        problems.append(
            Problem("nonfinite", f"cube has {n_nonfinite} NaN or infinite values", name)
        )
    if n_negative and not allow_negative:
        problems.append(
            Problem(
                "negative_reflectance",
                f"cube has {n_negative} negative reflectance values (min {min_value:.4g})",
                name,
            )
        )
    return problems, (h, w)


def _check_label_data(
    path: Path, name: str, shape: tuple[int, int] | None, mapping: LabelMapping, declared: list[str]
) -> list[Problem]:
    if not path.is_file():
        return [Problem("missing_labels", f"label file {path} does not exist", name)]
    try:
        mask = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        return [Problem("unreadable_labels", f"cannot read label mask {path}: {e}", name)]
    problems: list[Problem] = []
    if mask.dtype != np.uint8:
        problems.append(
            Problem("wrong_label_dtype", f"label mask is {mask.dtype}, expected uint8", name)
        )
    if mask.ndim != 2:
        return problems + [
            Problem(
                "wrong_label_shape", f"label mask has shape {mask.shape}, expected (H, W)", name
            )
        ]
    if shape is not None and tuple(mask.shape) != shape:
        problems.append(
            Problem(
                "wrong_label_shape",
                f"label mask is {mask.shape[0]}x{mask.shape[1]} but the cube is "
                f"{shape[0]}x{shape[1]}",
                name,
            )
        )
    if not np.issubdtype(mask.dtype, np.integer):
        return problems
    bad = mapping.invalid_values(mask)
    if bad:
        problems.append(
            Problem(
                "labels_outside_mapping",
                f"label values {bad[:10]} are neither class indices 0..{mapping.n_classes - 1} "
                f"nor the ignore index {mapping.ignore_index}",
                name,
            )
        )
    else:
        actual = mapping.names_present(mask)
        canonical = [mapping.index_to_name.get(mapping.index_of(n), n) for n in declared]
        if sorted(actual) != sorted(canonical):
            problems.append(
                Problem(
                    "labels_present_mismatch",
                    f"labels_present says {sorted(declared)} but the mask holds {sorted(actual)}",
                    name,
                )
            )
    return problems


def validate_dataset(
    root: str | Path,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
    check_data: bool = True,
    expected_channels: int = N_CHANNELS,
    allow_negative: bool = False,
    progress: bool = False,
) -> list[Problem]:
    """Every problem of the dataset at ``root`` (empty list: valid).

    Checks the manifest (columns, names, duplicates, species, tissue states, values, paths)
    and, with ``check_data``, every cube (readable, channel count, shape, NaN/inf, negative
    reflectance) and label mask (exists, uint8, shape, values within ``mapping``, agrees with
    ``labels_present``).
    """
    root_path = Path(root)
    df, problems = _read_table(root_path)
    if df is None:
        return problems
    man = Manifest(root_path, df)
    problems += _check_rows(man, mapping)
    bad_paths = {p.image_name for p in problems if p.code == "bad_path"}
    rows = list(df.iterrows())
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="validate", unit="image")
    for _, row in rows:
        name = row["image_name"]
        if name in bad_paths:
            continue
        cube_path = man.resolve(row["cube_path"])
        shape = None
        if check_data:
            found, shape = _check_cube_data(cube_path, name, expected_channels, allow_negative, row)
            problems += found
        elif not cube_path.is_file():
            problems.append(Problem("missing_cube", f"cube file {cube_path} does not exist", name))
        if row["label_path"]:
            label_path = man.resolve(row["label_path"])
            if check_data:
                declared = split_labels_present(row["labels_present"])
                problems += _check_label_data(label_path, name, shape, mapping, declared)
            elif not label_path.is_file():
                problems.append(
                    Problem("missing_labels", f"label file {label_path} does not exist", name)
                )
    return problems


def check_dataset(root: str | Path, **kwargs: Any) -> Manifest:
    """Validate and load; raise :class:`DatasetError` listing all problems if any is an error."""
    problems = validate_dataset(root, **kwargs)
    if any(p.severity == "error" for p in problems):
        raise DatasetError(problems, Path(root))
    return load_manifest(root)


# --- export for sandboxes ----------------------------------------------------------------------
def export_cases(
    manifest: Manifest,
    cubes_out_dir: str | Path,
    labels_out_dir: str | Path | None = None,
    image_names: Iterable[str] | None = None,
    preprocess: str | None = "l1",
    dtype: np.dtype | type | str = np.float32,
    progress: bool = False,
) -> list[str]:
    """Write ``<cubes_out_dir>/<image_name>.npy`` (H, W, C) and, optionally, the labels apart.

    Cubes and labels go to different folders so a sandbox can mount the cubes without ever
    seeing the ground truth. ``preprocess="l1"`` applies :func:`l1_normalize`; ``None`` keeps
    reflectance. Only the cube arrays are written: no metadata that could reveal species or
    tissue state. Returns the exported image names in manifest order.
    """
    if preprocess not in (None, "l1"):
        raise ValueError(f"unknown preprocess {preprocess!r} (use 'l1' or None)")
    if image_names is not None:
        image_names = list(image_names)
    sel = manifest.select(image_names) if image_names is not None else manifest
    if image_names is not None:
        missing = sorted(set(image_names) - set(sel.image_names))
        if missing:
            raise KeyError(f"images not in the manifest: {missing[:10]}")
    cubes_dir = Path(cubes_out_dir)
    labels_dir = Path(labels_out_dir) if labels_out_dir is not None else None
    names = sel.image_names
    iterator: Iterable[str] = names
    if progress:
        from tqdm import tqdm

        iterator = tqdm(names, desc="export", unit="image")
    for name in iterator:
        cube = sel.read_cube(name)
        cube = l1_normalize(cube, out_dtype=dtype) if preprocess == "l1" else cube.astype(dtype)
        write_cube(cubes_dir / f"{name}.npy", cube, fmt="npy")
        if labels_dir is not None:
            labels = sel.read_labels(name)
            if labels is None:
                continue
            labels_dir.mkdir(parents=True, exist_ok=True)
            np.save(labels_dir / f"{name}.npy", np.asarray(labels, dtype=np.uint8))
    return names
