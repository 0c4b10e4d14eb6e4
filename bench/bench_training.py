"""The study's table on simulated data: train every starter-kit recipe side by side and score
it on hidden human subjects with the platform's scoring path.

Simulates pig, rat and human subjects (physiological, kidney-clamped and ICG images), trains
each recipe on the training subjects (human training images physiological only, as in the
study) and prints, per recipe: training seconds, images, and the hierarchical class-level DSC
(image -> subject -> label, over the classes of each reference: htc's convention) on held-out
human physiological images (organ task), kidney DSC on human malperfused images and DSC on
human ICG images, next to the study's number for the same setting.

    .venv/bin/python bench/bench_training.py [--size 48x64] [--epochs 75] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.recipes import RECIPES, RecipeSettings, load_images, train_recipe  # noqa: E402
from baselines.train import predict  # noqa: E402
from datasets.labels import DEFAULT_LABEL_MAPPING  # noqa: E402
from datasets.manifest import Manifest, load_manifest, subject_of  # noqa: E402
from datasets.simulate import simulate_dataset  # noqa: E402
from evaluator.aggregation import by_label, submission_score  # noqa: E402
from evaluator.metrics.scoring import score_image  # noqa: E402

KIDNEY = DEFAULT_LABEL_MAPPING.index_of("kidney")
N_CLASSES = len(DEFAULT_LABEL_MAPPING.class_names)
ANIMAL_STATES = ("physiological", "physiological", "malperfused", "malperfused", "icg", "icg")
HUMAN_STATES = ("physiological", "physiological", "malperfused", "physiological", "icg", "icg")
# The study's class-level DSC for the setting each recipe stands for (docs/starter-kit.md).
STUDY = {
    "human_physiological": "human->human 0.78; kidney 0.95",
    "pig_physiological": "pig->human 0.44; kidney 0.40",
    "rat_physiological": "rat->human 0.34; kidney 0.002",
    "joint_animals_human": "human+pig+rat->human 0.79",
    "human_xeno_kidney": "xeno kidney (malperfusion) gain",
    "human_xeno_kidney_rat": "xeno kidney (malperfusion) gain",
    "human_xeno_icg": "ICG 0.56->0.91 (pig target)",
}


def scores(model, images, names) -> pd.DataFrame:
    """Per-(image, label) score rows of ``model`` on ``images``, as the scorer writes them."""
    rows = []
    for (cube, labels), name in zip(images, names, strict=True):
        scored = score_image(predict(model, cube), labels, num_classes=N_CLASSES, case_id=name)
        rows += scored.records(subject=subject_of(name))
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="48x64")
    ap.add_argument("--epochs", type=int, default=75)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="reuse a simulated dataset")
    ap.add_argument("--recipes", default=",".join(STUDY))
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    root = args.data or Path(tempfile.mkdtemp(prefix="xb-bench-")) / "data"
    if not (root / "manifest.csv").is_file():
        t0 = time.perf_counter()
        simulate_dataset(
            root,
            species=("pig", "rat", "human"),
            subjects_per_species={"pig": 6, "rat": 6, "human": 16},
            images_per_subject=6,
            height=h,
            width=w,
            seed=args.seed,
            progress=False,
            tissue_states={"pig": ANIMAL_STATES, "rat": ANIMAL_STATES, "human": HUMAN_STATES},
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

    def test_set(state: str) -> tuple[list, list[str]]:
        sel: Manifest = man.select(species="human", tissue_state=state, subject=test_subjects)
        return load_images(man, sel.image_names), list(sel.image_names)

    tests = {state: test_set(state) for state in ("physiological", "malperfused", "icg")}
    settings = RecipeSettings(
        epochs=args.epochs, seed=args.seed, image_names=train_names, num_threads=args.threads
    )
    print(
        f"{h}x{w} cubes; test: {len(test_subjects)} human subjects, "
        + ", ".join(f"{len(v[0])} {k}" for k, v in tests.items())
    )
    print(
        f"{'recipe':22s} {'images':>6s} {'wall s':>7s} {'organ DSC':>9s} {'kidney':>6s} "
        f"{'kidney(mal)':>11s} {'ICG DSC':>7s}  study"
    )
    total = 0.0
    for name in args.recipes.split(","):
        res = train_recipe(name, root, settings)
        total += res.seconds
        phys = scores(res.model, *tests["physiological"])
        mal = scores(res.model, *tests["malperfused"])
        icg = scores(res.model, *tests["icg"])
        print(
            f"{name:22s} {res.n_images:6d} {res.seconds:7.1f} "
            f"{submission_score(phys, 'dsc'):9.3f} {by_label(phys, 'dsc').get(KIDNEY, np.nan):6.3f} "
            f"{by_label(mal, 'dsc').get(KIDNEY, np.nan):11.3f} {submission_score(icg, 'dsc'):7.3f}"
            f"  {STUDY.get(name, RECIPES[name].title)}",
            flush=True,
        )
    print(f"total training time {total:.1f}s wall; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
