"""Simulator throughput at full size (480 x 640 x 100) on one core.

Usage: .venv/bin/python bench/bench_simulator.py [--cubes 10] [--size 480x640]

The process is pinned to one CPU (sched_setaffinity) and BLAS/blosc2 use one thread. Prints
cubes per second for simulation alone and for simulation + writing each format.
"""

from __future__ import annotations

import os

# One core: BLAS reads these at import time; the process is also pinned to one CPU below.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import blosc2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from datasets.cube_io import write_cube  # noqa: E402
from datasets.simulate import draw_subject, simulate_image  # noqa: E402

STATES = ("physiological", "malperfused", "icg")


def run(n: int, h: int, w: int, write: str | None, out: Path) -> float:
    subject = draw_subject(np.random.default_rng(0))
    species = ("pig", "rat", "human")
    simulate_image("pig", "physiological", h, w, 0, subject)  # warm up
    t0 = time.perf_counter()
    for i in range(n):
        img = simulate_image(species[i % 3], STATES[i % 3], h, w, i, subject)
        if write == "b2nd float16":
            write_cube(out / "c.b2nd", img.cube, dtype="float16", nthreads=1)
        elif write == "npy float32":
            write_cube(out / "c.npy", img.cube)
        np.save(out / "l.npy", img.labels) if write else None
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cubes", type=int, default=10)
    parser.add_argument("--size", default="480x640")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    blosc2.set_nthreads(1)
    print(f"simulator, {h}x{w}x100 cubes, {args.cubes} per run, one core")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"pinned to CPUs {cpus}, blosc2 threads {blosc2.nthreads}")
    with tempfile.TemporaryDirectory() as tmp:
        for write in (None, "b2nd float16", "npy float32"):
            rate = run(args.cubes, h, w, write, Path(tmp))
            label = "simulate only" if write is None else f"simulate + write {write}"
            print(f"{label:34s} {rate:6.2f} cubes/s  ({1e3 / rate:6.0f} ms/cube)  goal >= 2")


if __name__ == "__main__":
    main()
