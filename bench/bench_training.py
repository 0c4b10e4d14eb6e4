"""Train the four starter-kit baselines on a demo-size simulated dataset, side by side.

Prints, per baseline: training seconds, images, and class-mean DSC on held-out human
physiological images (organ task) and kidney DSC on human malperfused images (xeno task).

    .venv/bin/python bench/bench_training.py [--size 64x80] [--epochs 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.recipes import RECIPES, RecipeSettings, load_images, train_recipe  # noqa: E402
from baselines.train import predict  # noqa: E402
from datasets.labels import DEFAULT_LABEL_MAPPING  # noqa: E402
from datasets.manifest import load_manifest  # noqa: E402
from datasets.simulate import simulate_dataset  # noqa: E402

KIDNEY = DEFAULT_LABEL_MAPPING.index_of("kidney")


def dice_per_class(pred: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    valid = labels != 255
    out = {}
    for k in np.unique(labels[valid]):
        a, b = (pred == k) & valid, labels == k
        out[int(k)] = 2 * float((a & b).sum()) / float(a.sum() + b.sum())
    return out


def class_mean_dsc(model, images) -> float:
    per_class: dict[int, list[float]] = {}
    for cube, labels in images:
        for k, d in dice_per_class(predict(model, cube), labels).items():
            per_class.setdefault(k, []).append(d)
    return float(np.mean([np.mean(v) for v in per_class.values()]))


def kidney_dsc(model, images) -> float:
    return float(
        np.mean([dice_per_class(predict(model, c), lab).get(KIDNEY, 0.0) for c, lab in images])
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="64x80")
    ap.add_argument("--epochs", type=int, default=RecipeSettings.epochs)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="reuse a simulated dataset")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    root = args.data or Path(tempfile.mkdtemp(prefix="xb-bench-")) / "data"
    if not (root / "manifest.csv").is_file():
        t0 = time.perf_counter()
        simulate_dataset(
            root,
            species=("pig", "human"),
            subjects_per_species={"pig": 6, "human": 16},
            images_per_subject=4,
            height=h,
            width=w,
            seed=args.seed,
            progress=False,
            tissue_states={
                "pig": ("physiological", "physiological", "malperfused", "malperfused"),
                "human": ("physiological", "physiological", "malperfused", "physiological"),
            },
        )
        print(f"simulated {root} in {time.perf_counter() - t0:.1f}s")
    man = load_manifest(root)
    table = man.table
    humans = sorted(table[table.species == "human"].subject.unique())
    test_subjects = humans[len(humans) // 2 :]
    train_names = tuple(
        n
        for n, sp, subj, st in zip(
            table.image_name, table.species, table.subject, table.tissue_state, strict=True
        )
        if not (sp == "human" and (subj in test_subjects or st != "physiological"))
    )
    test_phys = man.select(species="human", tissue_state="physiological", subject=test_subjects)
    test_mal = man.select(species="human", tissue_state="malperfused", subject=test_subjects)
    phys_imgs = load_images(man, test_phys.image_names)
    mal_imgs = load_images(man, test_mal.image_names)
    settings = RecipeSettings(
        epochs=args.epochs, seed=args.seed, image_names=train_names, num_threads=args.threads
    )
    print(f"test: {len(phys_imgs)} human physiological, {len(mal_imgs)} human malperfused")
    print(
        f"{'recipe':22s} {'images':>6s} {'wall s':>7s} {'cpu s':>7s} {'organ DSC':>9s} "
        f"{'kidney(mal)':>11s}"
    )
    total = 0.0
    for name in args.recipes.split(","):
        cpu0 = time.process_time()
        res = train_recipe(name, root, settings)
        cpu = time.process_time() - cpu0
        total += res.seconds
        print(
            f"{name:22s} {res.n_images:6d} {res.seconds:7.1f} {cpu:7.1f} "
            f"{class_mean_dsc(res.model, phys_imgs):9.3f} {kidney_dsc(res.model, mal_imgs):11.3f}",
            flush=True,
        )
    print(f"total training time {total:.1f}s wall; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
