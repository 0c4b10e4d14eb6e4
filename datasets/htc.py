"""Import a dataset in htc's layout (imsy-htc, HeiPorSPECTRAL) into a XenoBench dataset folder.

``python -m datasets.htc SOURCE DEST [--annotation-name NAME] ...`` (docs/datasets.md has a
worked example). SOURCE is an htc dataset root::

    SOURCE/data/dataset_settings.json        label_mapping (name -> raw value),
                                             last_valid_label_index, annotation_name_default
    SOURCE/data/subjects/<subject>/<timestamp>/<timestamp>_SpecCube.dat
    SOURCE/intermediates/segmentations/<subject>#<timestamp>.blosc
                                             annotation name -> uint8 mask (htc dict .blosc)
    SOURCE/intermediates/tables/*meta*.feather | *meta*.csv          (optional)
    SOURCE/intermediates/preprocessing/parameter_images/<image>.blosc (optional)

(or SOURCE is the ``data`` folder itself, with ``intermediates`` beside it, as htc allows).
DEST gets ``manifest.csv``, ``cubes/``, ``labels/`` (see :mod:`datasets.manifest`),
``parameter_images/<image>.blosc`` (htc's files, copied byte for byte; read by
:func:`datasets.parameters.load_parameter_images`) and ``htc_import.json``, the record of what
was imported with checksums, which makes re-runs skip every output that is already identical.

Labels follow htc: a raw mask value means the *name* the dataset settings give it (the first
name listed for that value), and that name is looked up in the task mapping (by default the
study's: :data:`datasets.labels.DEFAULT_LABEL_MAPPING`, background materials -> background,
meso -> small_bowel); names outside it and values without a name are ignored (255). Raw
values >= 100 are unlabelled (htc's ``label_index_thresh``). The annotation is chosen like
htc's ``DataPath.read_segmentation``: the requested name, else the dataset's
``annotation_name_default``, else the file's only annotation; an image whose file lacks the
chosen annotation is imported without labels. The ``.blosc`` headers are parsed as data,
never unpickled (:mod:`datasets.htc_blosc`).

Every problem is collected before anything is written and reported together, each naming the
file and the reason (:class:`~datasets.manifest.DatasetError`).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datasets.cube_io import (
    FORMATS,
    SUFFIXES,
    CubeFormatError,
    cube_shape,
    read_cube,
    write_bytes_atomic,
    write_cube,
)
from datasets.htc_blosc import HtcBloscError, read_htc_blosc_dict
from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
from datasets.manifest import (
    CUBES_DIR,
    LABELS_DIR,
    MANIFEST_NAME,
    OPTIONAL_COLUMNS,
    SPECIES,
    TISSUE_STATES,
    DatasetError,
    Manifest,
    Problem,
    join_labels_present,
    load_manifest,
    write_manifest,
)
from datasets.parameters import PARAMETER_IMAGES_DIR

SETTINGS_NAME = "dataset_settings.json"
RECORD_NAME = "htc_import.json"
RECORD_VERSION = 1
#: Meta-table columns (htc's names first) -> manifest column.
META_COLUMNS: dict[str, str] = {
    "species_name": "species",
    "species": "species",
    "subject_name": "subject",
    "subject": "subject",
    "perfusion_state": "tissue_state",
    "tissue_state": "tissue_state",
    "camera_name": "camera_id",
    "camera_id": "camera_id",
    "phase_type": "phase_type",
    "clamping_location": "clamping_location",
    "clamped": "clamped",
    "reperfused": "reperfused",
    "icg_seconds": "icg_seconds",
    "timestamp": "timestamp",
}
#: Subject prefixes of the study's image names (``P043#...`` pig, ``R002#...`` rat,
#: ``SPACE_000001#...`` human); used only where no meta table names the species.
SPECIES_PREFIXES: tuple[tuple[str, str], ...] = (
    (r"SPACE_\d+", "human"),
    (r"P\d+", "pig"),
    (r"R\d+", "rat"),
)


@dataclass(frozen=True)
class HtcSettings:
    """The parts of htc's ``dataset_settings.json`` the import uses."""

    label_mapping: Mapping[str, int]
    last_valid_label_index: int | None = None
    annotation_name_default: str | tuple[str, ...] | None = None

    @property
    def raw_names(self) -> dict[int, str]:
        """Raw value -> name; the first name listed wins, as in htc's ``LabelMapping``."""
        names: dict[int, str] = {}
        for name, value in self.label_mapping.items():
            names.setdefault(int(value), name)
        return names


@dataclass(frozen=True)
class HtcImage:
    """One image of the source dataset and its files (None: not present)."""

    image_name: str
    subject: str
    timestamp: str
    cube: Path
    segmentation: Path | None
    parameter_images: Path | None


@dataclass
class ImportReport:
    """What :func:`import_htc_dataset` did; ``written``/``unchanged`` count output files."""

    manifest: Manifest
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.manifest)} images imported into {self.manifest.root}: "
            f"{len(self.written)} file(s) written, {len(self.unchanged)} unchanged"
            + (f", {len(self.unlabelled)} without labels" if self.unlabelled else "")
        )


# --- reading the source ----------------------------------------------------------------------
def source_dirs(source: str | Path) -> tuple[Path, Path]:
    """(data dir, intermediates dir) of an htc dataset root or of its ``data`` folder."""
    src = Path(source)
    if (src / "data" / SETTINGS_NAME).is_file() or (src / "data" / "subjects").is_dir():
        return src / "data", src / "intermediates"
    if (src / SETTINGS_NAME).is_file() or (src / "subjects").is_dir():
        return src, src.parent / "intermediates"
    raise DatasetError(
        [
            Problem(
                "not_htc_layout",
                f"{src}: neither {src / 'data' / SETTINGS_NAME} nor {src / SETTINGS_NAME} exists "
                "(expected an htc dataset: data/dataset_settings.json, data/subjects/, "
                "intermediates/)",
            )
        ]
    )


def read_settings(path: str | Path) -> HtcSettings:
    """Parse and check ``dataset_settings.json``; :class:`DatasetError` names the problem."""
    p = Path(path)

    def fail(reason: str) -> DatasetError:
        return DatasetError([Problem("bad_dataset_settings", f"{p}: {reason}")])

    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail("file does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(f"not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise fail("must hold a JSON object")
    mapping = data.get("label_mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise fail("'label_mapping' must be a non-empty object of label name -> mask value")
    bad = [
        k
        for k, v in mapping.items()
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255
    ]
    if bad:
        raise fail(f"'label_mapping' values must be integers 0..255 (bad: {bad[:5]})")
    last = data.get("last_valid_label_index")
    if last is not None and (not isinstance(last, int) or isinstance(last, bool)):
        raise fail(f"'last_valid_label_index' must be an integer, got {last!r}")
    default = data.get("annotation_name_default")
    if isinstance(default, list) and all(isinstance(n, str) and n for n in default):
        default = tuple(default)
    elif default is not None and not (isinstance(default, str) and default):
        raise fail(f"'annotation_name_default' must be a name or a list of names, got {default!r}")
    return HtcSettings(dict(mapping), last, default)


def find_images(data_dir: Path, intermediates_dir: Path) -> list[HtcImage]:
    """Every ``subjects/<subject>/<timestamp>/`` folder, in sorted order."""
    seg_dir = intermediates_dir / "segmentations"
    par_dir = intermediates_dir / "preprocessing" / "parameter_images"
    images = []
    for subject_dir in sorted(p for p in (data_dir / "subjects").glob("*") if p.is_dir()):
        for image_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            name = f"{subject_dir.name}#{image_dir.name}"
            seg = seg_dir / f"{name}.blosc"
            par = par_dir / f"{name}.blosc"
            images.append(
                HtcImage(
                    image_name=name,
                    subject=subject_dir.name,
                    timestamp=image_dir.name,
                    cube=image_dir / f"{image_dir.name}_SpecCube.dat",
                    segmentation=seg if seg.is_file() else None,
                    parameter_images=par if par.is_file() else None,
                )
            )
    return images


def read_meta_tables(intermediates_dir: Path) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """image_name -> manifest fields from ``intermediates/tables/*meta*.feather|csv``."""
    tables = sorted((intermediates_dir / "tables").glob("*meta*.feather")) + sorted(
        (intermediates_dir / "tables").glob("*meta*.csv")
    )
    rows: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for path in tables:
        try:
            df = pd.read_feather(path) if path.suffix == ".feather" else pd.read_csv(path)
        except Exception as e:  # pyarrow and pandas raise many kinds on broken files
            problems.append(Problem("bad_meta_table", f"{path}: not readable ({e})"))
            continue
        if "image_name" not in df.columns:
            if {"subject_name", "timestamp"} <= set(df.columns):
                df = df.assign(
                    image_name=df["subject_name"].astype(str) + "#" + df["timestamp"].astype(str)
                )
            else:
                problems.append(
                    Problem(
                        "bad_meta_table",
                        f"{path}: needs an 'image_name' column (or 'subject_name' and 'timestamp')",
                    )
                )
                continue
        for record in df.to_dict("records"):
            fields_ = rows.setdefault(str(record["image_name"]), {"_table": path})
            for col, target in META_COLUMNS.items():
                value = record.get(col)
                if _present(value) and target not in fields_:
                    fields_[target] = value
    return rows, problems


def _present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not (isinstance(value, str) and not value.strip()) and value is not pd.NA


def species_from_name(subject: str) -> str | None:
    """The species the study's naming gives a subject (P043 pig, R002 rat, SPACE_000001 human)."""
    for pattern, species in SPECIES_PREFIXES:
        if re.fullmatch(pattern, subject):
            return species
    return None


def select_annotation(
    annotations: Mapping[str, np.ndarray],
    requested: str | Sequence[str] | None,
    default: str | Sequence[str] | None,
) -> tuple[np.ndarray | None, str | None]:
    """(mask, annotation name) as htc's ``read_segmentation`` chooses it, or (None, None).

    The requested name, else the dataset default, else the only annotation (more than one
    without a name raises ValueError). ``"a&b"`` and lists name candidates: htc returns all of
    them, XenoBench needs one mask per image and takes the first present. A name the file
    lacks gives no mask (htc: None).
    """
    name = requested if requested is not None else default
    if not annotations:
        return None, None
    if name is None:
        if len(annotations) != 1:
            raise ValueError(
                f"holds {len(annotations)} annotations {sorted(annotations)} and neither "
                "--annotation-name nor the dataset's annotation_name_default chooses one"
            )
        only = next(iter(annotations))
        return annotations[only], only
    names = name.split("&") if isinstance(name, str) else list(name)
    if "all" in names:
        raise ValueError("annotation name 'all' gives several masks; choose one name")
    for candidate in names:
        if candidate in annotations:
            return annotations[candidate], candidate
    return None, None


def map_htc_mask(
    raw: np.ndarray, settings: HtcSettings, mapping: LabelMapping = DEFAULT_LABEL_MAPPING
) -> np.ndarray:
    """A raw htc mask -> uint8 class indices of ``mapping``, by label name as htc maps."""
    return mapping.map_raw(raw, settings.raw_names)


# --- checksums and idempotent writes ---------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _npy_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(mask), allow_pickle=False)
    return buf.getvalue()


def _write_bytes_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically unless the file already holds exactly ``data``; True if written."""
    if path.is_file() and path.stat().st_size == len(data):
        if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
            return False
    write_bytes_atomic(path, data)
    return True


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _load_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == RECORD_VERSION else {}


# --- the import ------------------------------------------------------------------------------
@dataclass
class _Planned:
    image: HtcImage
    row: dict[str, Any]
    mask: np.ndarray | None
    annotation: str | None
    shape: tuple[int, int]


def _plan(
    data_dir: Path,
    intermediates_dir: Path,
    mapping: LabelMapping,
    annotation_name: str | Sequence[str] | None,
    species: str | None,
    tissue_state: str | None,
    progress: bool,
) -> tuple[HtcSettings, list[_Planned]]:
    settings = read_settings(data_dir / SETTINGS_NAME)
    if not (data_dir / "subjects").is_dir():
        raise DatasetError(
            [Problem("no_images", f"{data_dir / 'subjects'}: folder does not exist")]
        )
    images = find_images(data_dir, intermediates_dir)
    if not images:
        raise DatasetError(
            [Problem("no_images", f"{data_dir / 'subjects'}: no <subject>/<timestamp>/ folders")]
        )
    meta, problems = read_meta_tables(intermediates_dir)
    if species is not None and species not in SPECIES:
        problems.append(Problem("bad_species", f"--species {species!r} is not one of {SPECIES}"))
    if tissue_state is not None and tissue_state not in TISSUE_STATES:
        problems.append(
            Problem(
                "bad_tissue_state",
                f"--tissue-state {tissue_state!r} is not one of {TISSUE_STATES}",
            )
        )
    plan: list[_Planned] = []
    iterator: Any = images
    if progress:
        from tqdm import tqdm

        iterator = tqdm(images, desc="check", unit="image")
    for img in iterator:
        name = img.image_name
        if not img.cube.is_file():
            problems.append(Problem("missing_cube", f"{img.cube}: cube file does not exist", name))
            continue
        try:
            h, w, _ = cube_shape(img.cube)
        except CubeFormatError as e:
            problems.append(Problem("unreadable_cube", f"{img.cube}: {e}", name))
            continue
        info = meta.get(name, {})
        where = f" (meta table {info['_table']})" if "_table" in info else ""
        sp = species or info.get("species") or species_from_name(img.subject)
        if sp not in SPECIES:
            problems.append(
                Problem(
                    "bad_species",
                    f"species {sp!r}{where} is not one of {SPECIES}"
                    if sp
                    else "no species: no meta table names it and the subject name does not "
                    "tell (give --species)",
                    name,
                )
            )
            continue
        state = tissue_state or info.get("tissue_state") or "physiological"
        if state not in TISSUE_STATES:
            problems.append(
                Problem(
                    "bad_tissue_state",
                    f"tissue state {state!r}{where} is not one of {TISSUE_STATES}",
                    name,
                )
            )
            continue
        mask = chosen = None
        if img.segmentation is not None:
            try:
                annotations = read_htc_blosc_dict(img.segmentation)
                raw, chosen = select_annotation(
                    annotations, annotation_name, settings.annotation_name_default
                )
                if raw is not None:
                    if raw.ndim != 2 or raw.dtype.kind not in "iub":
                        raise ValueError(
                            f"annotation {chosen!r} is {raw.dtype} {raw.shape}, "
                            "expected a 2-D integer mask"
                        )
                    if raw.shape != (h, w):
                        raise ValueError(
                            f"annotation {chosen!r} is {raw.shape[0]}x{raw.shape[1]}, "
                            f"the cube is {h}x{w}"
                        )
                    mask = map_htc_mask(raw, settings, mapping)
            except HtcBloscError as e:
                problems.append(Problem("unreadable_labels", str(e), name))
                continue
            except ValueError as e:
                problems.append(Problem("unreadable_labels", f"{img.segmentation}: {e}", name))
                continue
        if img.parameter_images is not None:
            try:
                read_htc_blosc_dict(img.parameter_images)
            except HtcBloscError as e:
                problems.append(Problem("unreadable_parameter_images", str(e), name))
                continue
        row: dict[str, Any] = {
            "image_name": name,
            "species": sp,
            "subject": str(info.get("subject") or img.subject),
            "tissue_state": state,
            "timestamp": img.timestamp,
            "height": h,
            "width": w,
        }
        for col in OPTIONAL_COLUMNS:
            if col in info and col not in row:
                row[col] = info[col]
        plan.append(_Planned(img, row, mask, chosen, (h, w)))
    if problems:
        raise DatasetError(problems)
    return settings, plan


def import_htc_dataset(
    source: str | Path,
    dest: str | Path,
    *,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
    annotation_name: str | Sequence[str] | None = None,
    species: str | None = None,
    tissue_state: str | None = None,
    cube_format: str = "b2nd",
    cube_dtype: str = "float16",
    progress: bool = False,
    verify: bool = False,
) -> ImportReport:
    """Import the htc dataset at ``source`` into the dataset folder ``dest``.

    ``species``/``tissue_state`` override the meta tables for every image; without either,
    species comes from the subject name and the tissue state is ``physiological`` (htc's
    semantic datasets). Raises :class:`DatasetError` listing every problem before anything is
    written. Re-running with the same inputs and options rewrites nothing: a cube whose source
    and output still have the recorded size and modification time is skipped unread
    (``verify=True`` compares their sha256 instead); labels, parameter images and the manifest
    are compared byte for byte.
    """
    if cube_format not in FORMATS:
        raise ValueError(f"cube_format must be one of {FORMATS}, got {cube_format!r}")
    if np.dtype(cube_dtype) not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ValueError(f"cube_dtype must be float16 or float32, got {cube_dtype!r}")
    data_dir, intermediates_dir = source_dirs(source)
    out = Path(dest)
    settings, plan = _plan(
        data_dir, intermediates_dir, mapping, annotation_name, species, tissue_state, progress
    )
    options = {
        "cube_format": cube_format,
        "cube_dtype": str(np.dtype(cube_dtype)),
        "annotation_name": annotation_name
        if annotation_name is None or isinstance(annotation_name, str)
        else list(annotation_name),
        "label_mapping": mapping.to_dict(),
        "dataset_settings": {
            "label_mapping": dict(settings.label_mapping),
            "last_valid_label_index": settings.last_valid_label_index,
        },
    }
    record_path = out / RECORD_NAME
    old = _load_record(record_path)
    old_images = old.get("images", {}) if old.get("options") == options else {}
    report_written: list[str] = []
    report_unchanged: list[str] = []
    unlabelled: list[str] = []
    images: dict[str, Any] = {}
    rows = []
    iterator: Any = plan
    if progress:
        from tqdm import tqdm

        iterator = tqdm(plan, desc="import", unit="image")
    out.mkdir(parents=True, exist_ok=True)
    for item in iterator:
        img, row = item.image, dict(item.row)
        name = img.image_name
        entry: dict[str, Any] = {}
        before = old_images.get(name, {})
        # cube: converted only when its source or the output changed
        cube_rel = f"{CUBES_DIR}/{name}{SUFFIXES[cube_format]}"
        cube_out = out / cube_rel
        prev = before.get("cube", {})
        src_stat = _stat(img.cube)
        if (
            not verify
            and prev.get("source_stat") == src_stat
            and cube_out.is_file()
            and prev.get("stat") == _stat(cube_out)
        ):  # size and mtime of both files as recorded: unchanged without reading them
            report_unchanged.append(cube_rel)
            entry["cube"] = prev
        else:
            src_sha = sha256_file(img.cube)
            if (
                prev.get("source_sha256") == src_sha
                and cube_out.is_file()
                and sha256_file(cube_out) == prev.get("sha256")
            ):
                report_unchanged.append(cube_rel)
            else:
                write_cube(cube_out, read_cube(img.cube), fmt=cube_format, dtype=cube_dtype)
                report_written.append(cube_rel)
            entry["cube"] = {
                "source_sha256": src_sha,
                "sha256": sha256_file(cube_out),
                "source_stat": src_stat,
                "stat": _stat(cube_out),
            }
        # labels
        row["label_path"] = ""
        row["labels_present"] = ""
        if item.mask is not None:
            label_rel = f"{LABELS_DIR}/{name}.npy"
            data = _npy_bytes(item.mask)
            changed = _write_bytes_if_changed(out / label_rel, data)
            (report_written if changed else report_unchanged).append(label_rel)
            entry["labels"] = {
                "annotation_name": item.annotation,
                "source_sha256": sha256_file(img.segmentation) if img.segmentation else None,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            row["label_path"] = label_rel
            row["labels_present"] = join_labels_present(mapping.names_present(item.mask))
        else:
            unlabelled.append(name)
        # precomputed parameter images: htc's file, byte for byte
        if img.parameter_images is not None:
            par_rel = f"{PARAMETER_IMAGES_DIR}/{name}.blosc"
            data = img.parameter_images.read_bytes()
            changed = _write_bytes_if_changed(out / par_rel, data)
            (report_written if changed else report_unchanged).append(par_rel)
            entry["parameter_images"] = {"sha256": hashlib.sha256(data).hexdigest()}
        row["cube_path"] = cube_rel
        rows.append(row)
        images[name] = entry
    # manifest and record: rewritten only when their content changes
    with tempfile.TemporaryDirectory(dir=out, prefix=".manifest.") as tmp:
        write_manifest(tmp, rows)
        data = (Path(tmp) / MANIFEST_NAME).read_bytes()
    changed = _write_bytes_if_changed(out / MANIFEST_NAME, data)
    (report_written if changed else report_unchanged).append(MANIFEST_NAME)
    record = {"version": RECORD_VERSION, "options": options, "images": images}
    _write_bytes_if_changed(
        record_path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    )
    return ImportReport(load_manifest(out), report_written, report_unchanged, unlabelled)


# --- command line ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datasets.htc",
        description="Import a dataset in htc's layout (imsy-htc, HeiPorSPECTRAL) into a "
        "XenoBench dataset folder (manifest.csv, cubes/, labels/, parameter_images/).",
    )
    p.add_argument("source", help="htc dataset root (with data/ and intermediates/) or its data/")
    p.add_argument("dest", help="dataset folder to create or update")
    p.add_argument(
        "--annotation-name",
        help="annotation to import (e.g. semantic#primary; 'a&b': the first present); "
        "default: the dataset's annotation_name_default, else the only one",
    )
    p.add_argument("--species", choices=SPECIES, help="species of every image (overrides tables)")
    p.add_argument(
        "--tissue-state",
        choices=TISSUE_STATES,
        help="tissue state of every image (default: the meta table's perfusion_state, "
        "else physiological)",
    )
    p.add_argument("--cube-format", choices=FORMATS, default="b2nd")
    p.add_argument("--cube-dtype", choices=("float16", "float32"), default="float16")
    p.add_argument(
        "--labels",
        default="",
        help="comma-separated class names of the target mapping (default: the study's 12 "
        "classes with htc's name mapping)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--verify",
        action="store_true",
        help="on a re-run, compare cubes by sha256 rather than by size and modification time",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.labels.split(",") if n.strip()]
    mapping = (
        LabelMapping.from_names(
            names,
            aliases={a: t for a, t in DEFAULT_LABEL_MAPPING.aliases.items() if t in names},
        )
        if names
        else DEFAULT_LABEL_MAPPING
    )
    try:
        report = import_htc_dataset(
            args.source,
            args.dest,
            mapping=mapping,
            annotation_name=args.annotation_name,
            species=args.species,
            tissue_state=args.tissue_state,
            cube_format=args.cube_format,
            cube_dtype=args.cube_dtype,
            progress=not args.no_progress,
            verify=args.verify,
        )
    except DatasetError as e:
        print(f"import failed:\n{e}", file=sys.stderr)
        return 1
    print(report.summary())
    if report.unlabelled:
        shown = ", ".join(report.unlabelled[:5]) + (" ..." if len(report.unlabelled) > 5 else "")
        print(f"without the chosen annotation (imported unlabelled): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
