"""Read a full-size cube: compressed b2nd (the chosen format) vs np.load of raw float32 .npy.

Usage: .venv/bin/python bench/bench_cube_formats.py [--repeats 9] [--size 480x640] [--all]

All timings: medians over repeats, warm page cache; each format is timed alternately with the\nnp.load baseline and the ratio is the median of per-repeat ratios (robust to load changes).
``--all`` also times the candidate codec settings the default was chosen from.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blosc2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from datasets import cube_io  # noqa: E402
from datasets.cube_io import read_cube, write_cube  # noqa: E402
from datasets.simulate import simulate_image  # noqa: E402

CANDIDATES = [
    ("LZ4", 1, "SHUFFLE"),
    ("LZ4", 5, "SHUFFLE"),
    ("LZ4", 5, "BITSHUFFLE"),
    ("ZSTD", 1, "SHUFFLE"),
    ("ZSTD", 3, "SHUFFLE"),
    ("BLOSCLZ", 5, "SHUFFLE"),
]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm the page cache and allocator
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired(
    base: Callable[[], object], other: Callable[[], object], repeats: int
) -> tuple[float, float, float]:
    """Alternate baseline and candidate so load changes hit both: medians and median ratio."""
    base(), other()
    tb, to = [], []
    for _ in range(repeats):
        for fn, acc in ((base, tb), (other, to)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    ratios = [o / b for o, b in zip(to, tb, strict=True)]
    return statistics.median(tb), statistics.median(to), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--size", default="480x640")
    parser.add_argument("--all", action="store_true", help="also time candidate codecs")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    cube = simulate_image("pig", "physiological", h, w, seed=1).cube
    print(
        f"cube {cube.shape} float32, {cube.nbytes / 1e6:.1f} MB; cores {os.cpu_count()}, "
        f"blosc2 {blosc2.__version__} threads {blosc2.nthreads}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = {
            "npy float32 (baseline)": write_cube(d / "raw32.npy", cube),
            "npy float16": write_cube(d / "raw16.npy", cube, dtype="float16"),
            "tivita .dat float32": write_cube(d / "x_SpecCube.dat", cube),
            "b2nd float32": write_cube(d / "c32.b2nd", cube),
            "b2nd float16 (chosen)": write_cube(d / "c16.b2nd", cube, dtype="float16"),
        }
        base_file = files["npy float32 (baseline)"]
        base_size = base_file.stat().st_size

        def load_base() -> object:
            return np.load(base_file)

        print(
            f"\n{'format':32s} {'read ms':>8s} {'npy32 ms':>9s} {'x raw':>6s} {'MB':>7s} "
            f"{'smaller':>8s}"
        )
        c16 = files["b2nd float16 (chosen)"]
        rows = [
            (f"{label} read_cube", path, lambda p=path: read_cube(p, mmap=False))
            for label, path in files.items()
            if not label.startswith("npy float32")
        ]
        rows.append(("b2nd float16 -> float32", c16, lambda: read_cube(c16, dtype=np.float32)))
        for label, path, fn in rows:
            tb, t, ratio = paired(load_base, fn, args.repeats)
            size = path.stat().st_size
            print(
                f"{label:32s} {t * 1e3:8.1f} {tb * 1e3:9.1f} {ratio:6.2f} {size / 1e6:7.1f} "
                f"{base_size / size:7.2f}x"
            )
        _, _, ratio = paired(load_base, lambda: read_cube(c16), args.repeats)
        ratio_size = base_size / c16.stat().st_size
        print(
            f"\nchosen b2nd float16 ({cube_io.B2ND_CODEC} level {cube_io.B2ND_CLEVEL}, "
            f"{cube_io.B2ND_FILTER}, {cube_io.B2ND_CHUNK_ROWS}-row chunks): read "
            f"{ratio:.2f}x the raw float32 np.load time (goal <= 2), files {ratio_size:.2f}x "
            "smaller (goal >= 2)"
        )
        lazy = cube_io.open_cube(c16)
        t_band = median_time(lambda: lazy[200:232], args.repeats)
        print(f"lazy 32-row band from b2nd: {t_band * 1e3:.1f} ms")
        if args.all:
            print(
                f"\ncandidates (float16, 32-row chunks)\n{'codec':24s} {'read ms':>8s} "
                f"{'x raw':>6s} {'smaller':>8s} {'write 1 thread ms':>18s}"
            )
            c = cube.astype(np.float16)
            for codec, level, filt in CANDIDATES:
                path = d / f"{codec}{level}{filt}.b2nd"
                t0 = time.perf_counter()
                blosc2.asarray(
                    c,
                    urlpath=str(path),
                    mode="w",
                    chunks=(32, w, c.shape[2]),
                    cparams=blosc2.CParams(
                        codec=blosc2.Codec[codec],
                        clevel=level,
                        filters=[blosc2.Filter[filt]],
                        nthreads=1,
                    ),
                )
                tw = time.perf_counter() - t0
                _, t, ratio = paired(
                    load_base, lambda p=path: cube_io._b2nd_read(blosc2.open(str(p))), args.repeats
                )
                print(
                    f"{codec + ' ' + str(level) + ' ' + filt:24s} {t * 1e3:8.1f} "
                    f"{ratio:6.2f} {base_size / path.stat().st_size:7.2f}x {tw * 1e3:18.0f}"
                )


if __name__ == "__main__":
    main()
