"""Benchmark: evaluator.metrics.score_image against MONAI on 480x640, 12-class masks.

    .venv/bin/pip install --no-deps -r requirements-bench.txt   # once
    .venv/bin/python bench/bench_metrics.py [--images 10] [--pool-images 40]

Prints ms per image for DSC+NSD+HD95+MASD (ours: all metrics in one call;
MONAI: one-hot conversion + DSC + NSD + HD95 + symmetric ASD, one thread),
the speed ratio, the maximum absolute difference per metric over all
(image, class) pairs scored by both, and images/second on a 2-process pool.
Without MONAI it compares against a slow per-class EDT reference instead.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from evaluator.metrics import score_image  # noqa: E402

H, W, K, IGNORE = 480, 640, 12, 255
TOL = [1.0] * K


def _field(rng: np.random.Generator, cell: int, sigma: float) -> np.ndarray:
    low = rng.standard_normal((K, H // cell + 2, W // cell + 2)).astype(np.float32)
    low = ndi.gaussian_filter(low, sigma=(0, sigma, sigma))
    low /= low.std()
    return ndi.zoom(low, (1, cell, cell), order=1)[:, :H, :W]


def make_pair(
    rng: np.random.Generator, noise: float, ignore_frac: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Organ-like blobs (~15 per class), unlabelled margins, perturbed prediction."""
    fields = _field(rng, 16, 1.5)
    ref = fields.argmax(axis=0).astype(np.uint8)
    top2 = np.partition(fields, K - 2, axis=0)[K - 2 :]
    margin = top2[1] - top2[0]
    ref[margin < np.quantile(margin, ignore_frac)] = IGNORE  # thin unlabelled seams
    pred = (fields + noise * _field(rng, 4, 1.5)).argmax(axis=0).astype(np.uint8)
    return pred, ref


def _now() -> np.ndarray:
    """(wall, process CPU) seconds: CPU time stays honest on a shared machine."""
    return np.array([time.perf_counter(), time.process_time()])


def ours(pred: np.ndarray, ref: np.ndarray) -> dict[int, dict]:
    rows = score_image(pred, ref, num_classes=K, nsd_tolerance=TOL).rows
    return {r["label"]: r for r in rows if r["status"] == "ok"}


def _score_pair(pair: tuple[np.ndarray, np.ndarray]) -> float:
    """Score one pair in a worker; returns the CPU seconds it took there."""
    t0 = time.process_time()
    score_image(pair[0], pair[1], num_classes=K, nsd_tolerance=TOL)
    return time.process_time() - t0


def monai_scores(
    pred: np.ndarray, ref: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    import torch
    from monai import metrics as mm

    times: dict[str, np.ndarray] = {}
    t0 = _now()
    valid = ref != IGNORE
    p = torch.from_numpy(np.stack([(pred == c) & valid for c in range(K)])[None].astype(np.float32))
    r = torch.from_numpy(np.stack([(ref == c) & valid for c in range(K)])[None].astype(np.float32))
    times["one-hot"] = _now() - t0
    calls = {
        "dsc": lambda: mm.compute_dice(p, r, include_background=True),
        "nsd": lambda: mm.compute_surface_dice(p, r, TOL, include_background=True),
        "hd95": lambda: mm.compute_hausdorff_distance(p, r, include_background=True, percentile=95),
        "assd": lambda: mm.compute_average_surface_distance(
            p, r, include_background=True, symmetric=True
        ),
    }
    values = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, call in calls.items():
            t0 = _now()
            values[name] = call()[0].numpy().astype(np.float64)
            times[name] = _now() - t0
        # MASD (Metrics Reloaded) = mean of the two directed ASDs: untimed extra check.
        a = mm.compute_average_surface_distance(p, r, include_background=True)[0].numpy()
        b = mm.compute_average_surface_distance(r, p, include_background=True)[0].numpy()
    values["masd"] = (a.astype(np.float64) + b) / 2
    return values, times


def slow_reference(
    pred: np.ndarray, ref: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fallback when MONAI is missing: one class at a time, full-image EDTs."""
    t0 = _now()
    valid = ref != IGNORE
    out = {m: np.full(K, np.nan) for m in ("dsc", "nsd", "hd95", "assd", "masd")}
    for c in range(K):
        pm, rm = (pred == c) & valid, (ref == c) & valid
        if not (pm.any() and rm.any()):
            continue
        bp = pm & ~ndi.binary_erosion(pm, border_value=0)
        br = rm & ~ndi.binary_erosion(rm, border_value=0)
        dp = ndi.distance_transform_edt(~br)[bp]
        dr = ndi.distance_transform_edt(~bp)[br]
        both = np.concatenate([dp, dr])
        out["dsc"][c] = 2 * (pm & rm).sum() / (pm.sum() + rm.sum())
        out["nsd"][c] = np.mean(both <= TOL[c])
        out["hd95"][c] = max(np.percentile(dp, 95), np.percentile(dr, 95))
        out["assd"][c] = both.mean()
        out["masd"][c] = (dp.mean() + dr.mean()) / 2
    return out, {"reference total": _now() - t0}


def run_scenario(name: str, noise: float, n_images: int, seed: int, other) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [make_pair(rng, noise) for _ in range(n_images)]
    ours(*pairs[0])  # warm caches
    acc = np.mean([(p == r)[r != IGNORE].mean() for p, r in pairs])
    t_ours, t_other, max_diff = [], {}, {}
    n_compared = 0
    for pred, ref in pairs:
        t0 = _now()
        got = ours(pred, ref)
        t_ours.append(_now() - t0)
        values, times = other(pred, ref)
        for key, t in times.items():
            t_other.setdefault(key, []).append(t)
        for label, row in got.items():
            n_compared += 1
            for metric, arr in values.items():
                diff = abs(row[metric] - arr[label])
                max_diff[metric] = max(max_diff.get(metric, 0.0), diff)
    ms_ours = 1000 * np.mean(t_ours, axis=0)
    ms_other = {k: 1000 * np.mean(v, axis=0) for k, v in t_other.items()}
    total_other = np.sum(list(ms_other.values()), axis=0)
    print(f"\n== {name}: {n_images} images, pixel accuracy {acc:.2f}, noise {noise} ==")
    print(f"{'ms per image (wall / process CPU)':<50s} {'wall':>8s} {'cpu':>8s}")
    print(f"{'ours: all metrics, one score_image call':<50s} {ms_ours[0]:8.1f} {ms_ours[1]:8.1f}")
    for key, ms in ms_other.items():
        print(f"{'other: ' + key:<50s} {ms[0]:8.1f} {ms[1]:8.1f}")
    print(
        f"{'other: total (one-hot+DSC+NSD+HD95+ASSD)':<50s} {total_other[0]:8.1f} {total_other[1]:8.1f}"
    )
    ratio = total_other / ms_ours
    print(f"speed ratio other/ours: {ratio[0]:.1f}x wall, {ratio[1]:.1f}x CPU")
    print(f"max |ours - other| over {n_compared} (image, class) pairs:")
    for metric, diff in max_diff.items():
        print(f"  {metric:5s} {diff:.3g}")
    return [p for pair in pairs for p in pair]


def pool_throughput(n_images: int, seed: int, noise: float) -> None:
    rng = np.random.default_rng(seed)
    pairs = [make_pair(rng, noise) for _ in range(n_images)]
    t0 = time.perf_counter()
    for pair in pairs:
        _score_pair(pair)
    serial = n_images / (time.perf_counter() - t0)
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_score_pair, pairs[:2]))  # start workers
        t0 = time.perf_counter()
        cpu = sum(pool.map(_score_pair, pairs, chunksize=4))
        pooled = n_images / (time.perf_counter() - t0)
    print(f"\n== throughput, {n_images} images (noise {noise}) ==")
    print(f"1 process:   {serial:6.1f} images/s")
    print(f"2 processes: {pooled:6.1f} images/s (load average now {os.getloadavg()[0]:.2f})")
    ms = 1000 * cpu / n_images
    print(
        f"CPU per image inside the workers {ms:.1f} ms: on 2 otherwise idle cores "
        f"that is at most {2000 / ms:.0f} images/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--pool-images", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import monai
        import torch

        torch.set_num_threads(1)
        other, label = monai_scores, f"MONAI {monai.__version__} (torch {torch.__version__})"
    except ImportError as err:
        other, label = slow_reference, f"slow EDT reference (MONAI unavailable: {err})"
    print(f"{H}x{W} masks, {K} classes, NSD tolerance {TOL[0]} px; other = {label}")
    print(f"image diagonal (worst distance) = {math.hypot(H, W):.0f} px")
    print(f"cpu_count={os.cpu_count()}, load average at start {os.getloadavg()[0]:.2f}")
    for name, noise in (("good prediction", 0.15), ("poor prediction", 0.35)):
        run_scenario(name, noise, args.images, args.seed, other)
    pool_throughput(args.pool_images, args.seed + 1, 0.15)


if __name__ == "__main__":
    main()
