"""Time tissue parameter images and RGB reconstruction on a full-size cube, and check StO2.

Usage: .venv/bin/python bench/bench_parameters.py [--repeats 7] [--size 480x640]

Prints the median time of ``parameter_images`` (all six indices), ``rgb_image`` and the
``l1+tpi`` preprocessing on a simulated 480 x 640 x 100 float32 cube next to the ``l1``
preprocessing (the baseline every task pays), and the StO2 error per organ of simulated
cubes (median over each organ's pixels against the organ's true saturation).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from datasets.labels import DEFAULT_LABEL_MAPPING  # noqa: E402
from datasets.parameters import parameter_images, rgb_image  # noqa: E402
from datasets.simulate import simulate_image  # noqa: E402
from datasets.spectral import preprocess  # noqa: E402


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sto2_errors(n_seeds: int = 3) -> list[float]:
    errors = []
    for seed in range(n_seeds):
        for species in ("human", "pig", "rat"):
            im = simulate_image(species, height=96, width=128, seed=seed)
            sto2 = parameter_images(im.cube)["sto2"]
            for organ, params in im.meta["organ_params"].items():
                mask = im.labels == DEFAULT_LABEL_MAPPING.index_of(organ)
                if mask.sum() >= 50 and 0.03 <= params.blood <= 0.12:
                    errors.append(float(np.nanmedian(sto2[mask])) - params.sto2)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", default="480x640")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    cube = simulate_image("pig", height=h, width=w, seed=1).cube.astype(np.float32)
    print(f"{h}x{w}x{cube.shape[-1]} float32 cube, median of {args.repeats} runs")
    base = median_time(lambda: preprocess(cube, "l1"), args.repeats)
    print(f"{'preprocess l1 (baseline)':32s} {1e3 * base:7.1f} ms")
    for label, fn in (
        ("parameter_images (6 indices)", lambda: parameter_images(cube)),
        ("rgb_image", lambda: rgb_image(cube)),
        ("preprocess l1+tpi", lambda: preprocess(cube, "l1+tpi", channels_first=True)),
    ):
        t = median_time(fn, args.repeats)
        print(f"{label:32s} {1e3 * t:7.1f} ms  ({t / base:4.1f} x l1)  goal < 1000 ms")
    errors = np.array(sto2_errors())
    print(
        f"StO2 per organ (blood 3-12 %, {errors.size} organs): bias {errors.mean():+.3f}, "
        f"median |error| {np.median(np.abs(errors)):.3f}, max |error| {np.abs(errors).max():.3f}"
    )


if __name__ == "__main__":
    main()
