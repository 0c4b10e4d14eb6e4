"""imsy-htc's values on a small synthetic htc-layout dataset, committed so CI can check against them.

The xeno-learning study's numbers come from imsy-htc ("htc"). htc pins another torch than
XenoBench, so it lives in a separate, optional environment. This script runs there: it builds
the dataset of tests/datasets/htc_layout.py (deterministic, NumPy only) in a temporary folder,
reads it with htc's own readers (``DataPathMultiorgan``, ``read_segmentation``,
``LabelMapping.from_path`` + the study's ``settings_species.label_mapping``, ``read_cube`` with
L1 normalisation, ``tivita_wavelengths``) and scores a few predictions with htc's
``evaluate_images`` (DSC per image over the reference's classes), then writes
tests/datasets/data/htc_expected.json, plus two small ``.blosc`` files written by htc's own
``compress_file`` (blosc 1) to tests/datasets/data/htc_written/. tests/datasets/test_htc_import.py
rebuilds the same dataset, imports it with ``python -m datasets.htc``, reads htc's files with
the safe reader and compares.

Regenerate (from the repository root; imsy-htc's binary wheel does not load beside torch
2.13, so htc is built from its source release):

    python3.11 -m venv ../htc-env           # any folder outside the repository
    ../htc-env/bin/pip install torch==2.13.0 ninja setuptools wheel \\
        numpy scipy scikit-learn pandas pyarrow blosc commentjson appdirs python-dotenv \\
        rich lazy-imports threadpoolctl psutil Pillow monai lightning kornia matplotlib
    ../htc-env/bin/pip install --no-deps --no-build-isolation ./imsy-htc-0.0.23  # its source
    ../htc-env/bin/python scripts/reference/htc_reference.py

The output is deterministic (``--check`` reports a difference instead of writing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.datasets import htc_layout  # noqa: E402

OUT = ROOT / "tests" / "datasets" / "data" / "htc_expected.json"
#: Small files written by htc's own ``compress_file`` (blosc 1), read by the tests without htc.
HTC_WRITTEN = ROOT / "tests" / "datasets" / "data" / "htc_written"
LAYOUT = {"seed": 0, "height": 12, "width": 16}
IGNORE = 255
#: (y, x) pixels whose L1-normalised spectra are written in full.
SAMPLE_PIXELS = ((0, 0), (0, 1), (3, 7), (11, 15))


def digest(array: np.ndarray) -> str:
    """sha256 of dtype, shape and C-ordered bytes (the same digest as the test computes)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def htc_written_arrays() -> dict[str, dict[str, np.ndarray]]:
    """What :func:`write_htc_files` stores: a segmentation-like dict and a parameter dict."""
    rng = np.random.default_rng(5)
    return {
        "segmentation.blosc": {
            "semantic#primary": rng.integers(0, 12, (6, 7)).astype(np.uint8),
            "semantic#reannotation": rng.integers(0, 12, (6, 7)).astype(np.uint8),
        },
        "parameter_images.blosc": {
            "StO2": rng.random((6, 7)).astype(np.float32),
            "TWI": rng.random((6, 7)).astype(np.float64),
        },
    }


def write_htc_files() -> None:
    """Write htc_written/*.blosc with htc's own compress_file."""
    from htc.utils.blosc_compression import compress_file

    HTC_WRITTEN.mkdir(parents=True, exist_ok=True)
    for name, arrays in htc_written_arrays().items():
        compress_file(HTC_WRITTEN / name, arrays)


def htc_values(root: Path) -> dict[str, Any]:
    import torch
    from htc.evaluation.evaluate_images import evaluate_images
    from htc.tivita.DataPathMultiorgan import DataPathMultiorgan
    from htc.tivita.DatasetSettings import DatasetSettings
    from htc.tivita.hsi import tivita_wavelengths
    from htc.utils.LabelMapping import LabelMapping
    from htc_projects.species.settings_species import settings_species

    study = settings_species.label_mapping
    data_dir, inter = root / "data", root / "intermediates"
    dsettings = DatasetSettings(data_dir / "dataset_settings.json")
    names = sorted(
        {*study.mapping_name_index, *htc_layout.LABEL_MAPPING, "fat_visceral", "gallbladder"}
    )
    out: dict[str, Any] = {
        "versions": {"imsy-htc": version("imsy-htc"), "numpy": np.__version__},
        "layout": LAYOUT,
        "wavelengths": [float(v) for v in tivita_wavelengths()],
        "study_classes": study.label_names(),
        "study_mapping": {
            n: (int(study.name_to_index(n)) if study.is_name_valid(n) else None) for n in names
        },
        "images": {},
    }
    for i, name in enumerate(htc_layout.IMAGES):
        subject, timestamp = name.split("#")
        image_dir = data_dir / "subjects" / subject / timestamp
        entry: dict[str, Any] = {}
        path = DataPathMultiorgan(image_dir, data_dir, inter, dsettings)
        assert path.image_name() == name
        cube = path.read_cube()
        entry["cube"] = digest(cube)
        l1 = path.read_cube(normalization=1)
        entry["l1"] = {
            "sha256": digest(l1.astype(np.float32)),
            "dtype": str(l1.dtype),
            "samples": {f"{y},{x}": [float(v) for v in l1[y, x]] for y, x in SAMPLE_PIXELS},
        }
        annotations = {}
        for annotation in (None, "polygon#annotator1", "semantic#reannotation"):
            seg = path.read_segmentation(annotation)
            key = annotation or "default"
            if seg is None:
                annotations[key] = None
                continue
            original = LabelMapping.from_path(path)
            mapped = study.map_tensor(torch.from_numpy(seg.astype(np.int64)), original).numpy()
            valid = study.is_index_valid(mapped)
            as_uint8 = np.where(valid, mapped, IGNORE).astype(np.uint8)
            annotations[key] = {
                "sha256": digest(as_uint8),
                "counts": {
                    str(int(v)): int(c)
                    for v, c in zip(*np.unique(as_uint8, return_counts=True), strict=True)
                },
            }
            if annotation is None:
                dsc = []
                labels = torch.from_numpy(np.where(valid, mapped, 0).astype(np.int64))[None]
                mask = torch.from_numpy(valid)[None]
                for pred in htc_layout.predictions(as_uint8, seed=i + 1):
                    res = evaluate_images(
                        torch.from_numpy(pred.astype(np.int64))[None],
                        labels,
                        mask,
                        metrics=["DSC"],
                        n_classes=len(study.label_names()),
                    )[0]
                    dsc.append(
                        {
                            "prediction": digest(pred),
                            "used_labels": [int(v) for v in res["used_labels"]],
                            "dice_metric": [float(v) for v in res["dice_metric"]],
                            "dice_metric_image": float(res["dice_metric_image"]),
                        }
                    )
                entry["dsc"] = dsc
        entry["annotations"] = annotations
        out["images"][name] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        htc_layout.build_htc_dataset(Path(tmp), **LAYOUT)
        values = htc_values(Path(tmp))
    values["htc_written"] = {
        name: {k: digest(v) for k, v in arrays.items()}
        for name, arrays in htc_written_arrays().items()
    }
    text = json.dumps(values, indent=1, sort_keys=True) + "\n"
    if args.check:
        same = OUT.is_file() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from what htc computes now")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    write_htc_files()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
