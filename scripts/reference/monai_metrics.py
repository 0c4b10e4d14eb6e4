"""MONAI's values for a fixed set of 2D cases, committed so CI can check against them.

MONAI is the reference implementation of our segmentation metrics, but it is not
installed in the test environment. This script runs in a separate, optional
environment that has it, computes MONAI's per-class values for deterministic
cases and writes them, with the parameters that regenerate each case, to
tests/evaluator/metrics/data/monai_expected.json. tests/evaluator/metrics/test_monai.py
regenerates the same label maps with `build_case` (NumPy only) and compares
`evaluator.metrics.score_image` with the committed values.

Regenerate (from the repository root) after changing a case, or the MONAI pin in
requirements-bench.txt:

    python3.11 -m venv ../monai-env       # any folder outside the repository
    ../monai-env/bin/pip install $(grep -E '^(torch|numpy|scipy)==' requirements.txt)
    ../monai-env/bin/pip install --no-deps -r requirements-bench.txt
    ../monai-env/bin/python scripts/reference/monai_metrics.py

The output is deterministic: rerunning with the same versions rewrites the same
file (`--check` reports a difference instead of writing).

What is computed: one-hot masks of every class restricted to valid pixels (the
reference's ``ignore_index`` pixels are removed from both masks, as score_image
does), ``include_background=True``, no spacing, Euclidean distances, MONAI's
default ``ignore_empty=True``:

- dsc, iou: ``compute_dice``, ``compute_iou``
- nsd: ``compute_surface_dice`` with the case's per-class tolerances
- hd95, hd: ``compute_hausdorff_distance`` with ``percentile=95`` and without
- assd: ``compute_average_surface_distance(symmetric=True)``
- masd: the mean of ``compute_average_surface_distance`` in both directions
  (prediction -> reference and reference -> prediction)

Non-finite values (MONAI's NaN/inf for classes missing from one or both masks)
are written as the strings "nan", "inf"; docs/metrics.md explains where our
convention differs on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "evaluator" / "metrics" / "data" / "monai_expected.json"
METRICS = ("dsc", "iou", "nsd", "hd95", "hd", "masd", "assd")
IGNORE_INDEX = 255

# Explicit cases paint primitives in order over a background label:
#   {"label": L, "rect": [y0, x0, y1, x1]}        half-open box
#   {"label": L, "ellipse": [cy, cx, ry, rx]}     integer centre and radii
#   {"label": L, "pixels": [[y, x], ...]}
#   {"label": L, "checker": [y0, x0, y1, x1]}     L on pixels with (y + x) even
# Random cases ("kind": "random") draw ellipses from a seed (see `_random_case`).
CASES: list[dict[str, Any]] = [
    {
        "name": "random_4_classes",
        "kind": "random",
        "shape": [48, 64],
        "num_classes": 4,
        "nsd_tolerance": [1.0, 1.0, 2.0, 1.5],
        "seed": 1,
        "n_shapes": 9,
        "jitter": 2,
        "flip_rate": 0.01,
        "ignore_rate": 0.0,
    },
    {
        "name": "random_6_classes_ignored_pixels",
        "kind": "random",
        "shape": [60, 80],
        "num_classes": 6,
        "nsd_tolerance": [0.0, 1.0, 2.0, 3.0, 1.5, 2.5],
        "seed": 2,
        "n_shapes": 14,
        "jitter": 3,
        "flip_rate": 0.02,
        "ignore_rate": 0.05,
    },
    {
        "name": "random_12_classes",
        "kind": "random",
        "shape": [96, 128],
        "num_classes": 12,
        "nsd_tolerance": [1.0, 2.0, 2.0, 3.0, 1.0, 1.5, 2.0, 1.0, 4.0, 2.0, 1.0, 0.5],
        "seed": 3,
        "n_shapes": 40,
        "jitter": 4,
        "flip_rate": 0.005,
        "ignore_rate": 0.02,
    },
    {
        "name": "random_coarse_prediction",
        "kind": "random",
        "shape": [64, 64],
        "num_classes": 5,
        "nsd_tolerance": 2.0,
        "seed": 4,
        "n_shapes": 12,
        "jitter": 8,
        "flip_rate": 0.0,
        "ignore_rate": 0.0,
    },
    {
        "name": "empty_prediction",
        "kind": "explicit",
        "shape": [32, 40],
        "num_classes": 3,
        "nsd_tolerance": 1.0,
        "ref": [{"label": 1, "rect": [4, 4, 14, 20]}, {"label": 2, "ellipse": [22, 28, 5, 7]}],
        "pred": [{"label": 1, "rect": [5, 4, 15, 21]}],
    },
    {
        "name": "empty_reference",
        "kind": "explicit",
        "shape": [32, 40],
        "num_classes": 3,
        "nsd_tolerance": 1.0,
        "ref": [{"label": 1, "rect": [4, 4, 14, 20]}],
        "pred": [{"label": 1, "rect": [4, 6, 14, 20]}, {"label": 2, "ellipse": [22, 28, 5, 7]}],
    },
    {
        "name": "both_empty",
        "kind": "explicit",
        "shape": [32, 40],
        "num_classes": 4,
        "nsd_tolerance": [1.0, 1.0, 1.0, 1.0],
        "ref": [{"label": 1, "ellipse": [15, 18, 8, 10]}, {"label": 2, "rect": [0, 34, 32, 40]}],
        "pred": [{"label": 1, "ellipse": [16, 18, 8, 9]}, {"label": 2, "rect": [0, 33, 32, 40]}],
    },
    {
        "name": "single_pixels",
        "kind": "explicit",
        "shape": [24, 24],
        "num_classes": 3,
        "nsd_tolerance": [1.0, 3.0, 3.5],
        "ref": [{"label": 1, "pixels": [[10, 10]]}, {"label": 2, "pixels": [[3, 3]]}],
        "pred": [{"label": 1, "pixels": [[12, 13]]}, {"label": 2, "pixels": [[3, 3]]}],
    },
    {
        "name": "shapes_at_image_border",
        "kind": "explicit",
        "shape": [40, 48],
        "num_classes": 5,
        "nsd_tolerance": [1.0, 1.0, 2.0, 1.0, 2.0],
        "ref": [
            {"label": 1, "rect": [0, 0, 40, 6]},
            {"label": 2, "rect": [0, 10, 3, 48]},
            {"label": 3, "ellipse": [39, 47, 6, 8]},
            {"label": 4, "rect": [20, 20, 40, 30]},
        ],
        "pred": [
            {"label": 1, "rect": [0, 0, 40, 5]},
            {"label": 2, "rect": [1, 12, 4, 48]},
            {"label": 3, "ellipse": [37, 46, 6, 6]},
            {"label": 4, "rect": [22, 19, 40, 31]},
        ],
    },
    {
        "name": "class_fills_image",
        "kind": "explicit",
        "shape": [20, 30],
        "num_classes": 2,
        "nsd_tolerance": 1.0,
        "ref": [],
        "pred": [{"label": 1, "pixels": [[0, 0], [19, 29]]}],
    },
    {
        "name": "thin_lines_and_checkerboard",
        "kind": "explicit",
        "shape": [32, 32],
        "num_classes": 4,
        "nsd_tolerance": [1.0, 1.0, 1.0, 0.0],
        "ref": [
            {"label": 1, "rect": [5, 2, 6, 30]},
            {"label": 2, "rect": [2, 20, 30, 21]},
            {"label": 3, "checker": [12, 4, 20, 12]},
        ],
        "pred": [
            {"label": 1, "rect": [6, 2, 7, 28]},
            {"label": 2, "rect": [2, 22, 30, 23]},
            {"label": 3, "checker": [13, 4, 21, 12]},
        ],
    },
    {
        "name": "distances_equal_to_tolerance",
        "kind": "explicit",
        "shape": [30, 30],
        "num_classes": 4,
        "nsd_tolerance": [1.0, 2.0, 1.5, 1.4],
        "ref": [
            {"label": 1, "rect": [5, 5, 10, 10]},
            {"label": 2, "rect": [15, 15, 20, 20]},
            {"label": 3, "pixels": [[25, 5]]},
        ],
        "pred": [
            {"label": 1, "rect": [5, 7, 10, 12]},
            {"label": 2, "rect": [16, 16, 21, 21]},
            {"label": 3, "pixels": [[26, 6]]},
        ],
    },
    {
        "name": "ignored_seam_between_classes",
        "kind": "explicit",
        "shape": [30, 40],
        "num_classes": 3,
        "nsd_tolerance": 1.0,
        "ref": [
            {"label": 1, "rect": [0, 0, 30, 19]},
            {"label": 2, "rect": [0, 21, 30, 40]},
            {"label": IGNORE_INDEX, "rect": [0, 19, 30, 21]},
            {"label": IGNORE_INDEX, "rect": [10, 5, 14, 9]},
        ],
        "pred": [
            {"label": 1, "rect": [0, 0, 30, 20]},
            {"label": 2, "rect": [0, 20, 30, 40]},
            {"label": 0, "rect": [25, 30, 28, 34]},
        ],
    },
]


def _paint(shape: tuple[int, int], primitives: list[dict[str, Any]], background: int) -> np.ndarray:
    """Label map from primitives painted in order (integer arithmetic only, so exact)."""
    h, w = shape
    out = np.full((h, w), background, dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.int64)
    for prim in primitives:
        label = int(prim["label"])
        if "rect" in prim:
            y0, x0, y1, x1 = prim["rect"]
            out[y0:y1, x0:x1] = label
        elif "ellipse" in prim:
            cy, cx, ry, rx = (int(v) for v in prim["ellipse"])
            inside = ((yy - cy) * rx) ** 2 + ((xx - cx) * ry) ** 2 <= (ry * rx) ** 2
            out[inside] = label
        elif "pixels" in prim:
            for y, x in prim["pixels"]:
                out[y, x] = label
        elif "checker" in prim:
            y0, x0, y1, x1 = prim["checker"]
            box = np.zeros((h, w), dtype=bool)
            box[y0:y1, x0:x1] = True
            out[box & ((yy + xx) % 2 == 0)] = label
        else:
            raise ValueError(f"unknown primitive {prim}")
    return out


def _random_case(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ellipses of labels 1..K-1 on background 0; the prediction moves and
    resizes each by up to ``jitter`` px and relabels a ``flip_rate`` of pixels; the
    reference loses an ``ignore_rate`` of pixels to ``ignore_index``.

    Only ``Generator.integers`` and ``Generator.random`` are used, and shapes are
    painted with integer arithmetic, so the maps do not depend on floating-point
    details of the platform (the test checks their hashes anyway).
    """
    h, w = spec["shape"]
    k = spec["num_classes"]
    jitter = spec["jitter"]
    rng = np.random.default_rng(spec["seed"])
    ref_shapes: list[dict[str, Any]] = []
    pred_shapes: list[dict[str, Any]] = []
    for i in range(spec["n_shapes"]):
        label = 1 + i % (k - 1)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        ry, rx = int(rng.integers(2, max(3, h // 4))), int(rng.integers(2, max(3, w // 4)))
        dy, dx, dry, drx = (int(v) for v in rng.integers(-jitter, jitter + 1, size=4))
        ref_shapes.append({"label": label, "ellipse": [cy, cx, ry, rx]})
        pred_shapes.append(
            {"label": label, "ellipse": [cy + dy, cx + dx, max(1, ry + dry), max(1, rx + drx)]}
        )
    ref = _paint((h, w), ref_shapes, 0)
    pred = _paint((h, w), pred_shapes, 0)
    flip = rng.random((h, w)) < spec["flip_rate"]
    pred[flip] = rng.integers(0, k, size=int(flip.sum())).astype(np.uint8)
    ref[rng.random((h, w)) < spec["ignore_rate"]] = IGNORE_INDEX
    return pred, ref


def build_case(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, reference) uint8 label maps of one case spec."""
    if spec["kind"] == "random":
        return _random_case(spec)
    shape = tuple(spec["shape"])
    return _paint(shape, spec["pred"], 0), _paint(shape, spec["ref"], 0)


def array_digest(arr: np.ndarray) -> str:
    """SHA-256 of shape, dtype and bytes: proves a regenerated map is the one MONAI saw."""
    arr = np.ascontiguousarray(arr)
    head = f"{arr.shape}|{arr.dtype.str}|".encode()
    return hashlib.sha256(head + arr.tobytes()).hexdigest()


def tolerances(spec: dict[str, Any]) -> list[float]:
    tol = spec["nsd_tolerance"]
    if isinstance(tol, int | float):
        return [float(tol)] * spec["num_classes"]
    return [float(t) for t in tol]


def encode(value: float) -> float | str:
    """JSON has no NaN/inf: write them as strings."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode(value: float | str) -> float:
    return float(value)


def monai_scores(pred: np.ndarray, ref: np.ndarray, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """MONAI's metrics for every class 0..K-1 (see the module docstring)."""
    import torch
    from monai import metrics as mm

    k = spec["num_classes"]
    valid = ref != IGNORE_INDEX

    def one_hot(labels: np.ndarray) -> torch.Tensor:
        oh = np.stack([(labels == c) & valid for c in range(k)])[None].astype(np.float32)
        return torch.from_numpy(oh)

    p, r = one_hot(pred), one_hot(ref)
    tol = tolerances(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about every empty mask
        values = {
            "dsc": mm.compute_dice(p, r, include_background=True),
            "iou": mm.compute_iou(p, r, include_background=True),
            "nsd": mm.compute_surface_dice(p, r, tol, include_background=True),
            "hd95": mm.compute_hausdorff_distance(p, r, include_background=True, percentile=95),
            "hd": mm.compute_hausdorff_distance(p, r, include_background=True),
            "assd": mm.compute_average_surface_distance(
                p, r, include_background=True, symmetric=True
            ),
            "asd_pred_ref": mm.compute_average_surface_distance(p, r, include_background=True),
            "asd_ref_pred": mm.compute_average_surface_distance(r, p, include_background=True),
        }
    rows = []
    for c in range(k):
        v = {name: float(t[0, c]) for name, t in values.items()}  # float32 -> exact float
        v["masd"] = (v.pop("asd_pred_ref") + v.pop("asd_ref_pred")) / 2
        rows.append(
            {
                "label": c,
                "pred_pixels": int(((pred == c) & valid).sum()),
                "ref_pixels": int(((ref == c) & valid).sum()),
                **{m: encode(v[m]) for m in METRICS},
            }
        )
    return rows


def generate() -> dict[str, Any]:
    import monai
    import scipy
    import torch

    torch.set_num_threads(1)
    cases = []
    for spec in CASES:
        pred, ref = build_case(spec)
        cases.append(
            {
                "spec": spec,
                "sha256": {"pred": array_digest(pred), "ref": array_digest(ref)},
                "monai": monai_scores(pred, ref, spec),
            }
        )
    return {
        "generated_by": "scripts/reference/monai_metrics.py",
        "versions": {
            "monai": monai.__version__,
            "torch": torch.__version__.split("+")[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "settings": {
            "include_background": True,
            "ignore_empty": True,
            "spacing": None,
            "distance_metric": "euclidean",
            "ignore_index": IGNORE_INDEX,
            "masd": "mean of compute_average_surface_distance(pred, ref) and (ref, pred)",
        },
        "cases": cases,
    }


def dumps(doc: dict[str, Any]) -> str:
    """Indented JSON with one line per case spec and per class row (readable diffs)."""

    def one(value: Any) -> str:
        return json.dumps(value, allow_nan=False)

    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = ["{"] + [f" {one(k)}: {one(v)}," for k, v in head.items()] + [' "cases": [']
    for i, case in enumerate(doc["cases"]):
        rows = ",\n".join(f"    {one(row)}" for row in case["monai"])
        end = "," if i < len(doc["cases"]) - 1 else ""
        lines += [
            f'  {{"spec": {one(case["spec"])},',
            f'   "sha256": {one(case["sha256"])},',
            f'   "monai": [\n{rows}\n   ]}}{end}',
        ]
    text = "\n".join(lines + [" ]", "}"]) + "\n"
    assert json.loads(text) == json.loads(one(doc))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="compare with --out instead of writing it"
    )
    args = parser.parse_args(argv)
    text = dumps(generate())
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from MONAI now'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    n = sum(len(c["monai"]) for c in json.loads(text)["cases"])
    print(f"wrote {args.out} ({len(CASES)} cases, {n} class rows, {len(text) / 1e3:.1f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
