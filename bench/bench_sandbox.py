"""Sandbox overhead: sandboxed evaluation vs a bare in-process loop, same model, same cubes.

    .venv/bin/python bench/bench_sandbox.py [--cases 20] [--threads N] [--backend bwrap]

Generates random full-size cubes (480 x 640 x 100 float32) in a temp dir, exports a small
fully convolutional TorchScript model, then times (a) a bare loop in this process (load the
memory-mapped cube, L1 preprocessing, model, argmax, np.save) and (b) run_inference through
the sandbox (startup, model load, same work, copy-out and trusted validation), once with the
harness's sequential loop (pure sandbox overhead) and once as deployed (the next cube is
preprocessed on a helper thread while the model runs). All sides use the same torch threads.
Prints the wall times and the ratios (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.spectral import preprocess  # noqa: E402
from evaluator.inference import Limits, run_inference  # noqa: E402

H, W, C, K = 480, 640, 100, 12


class SmallFCN(torch.nn.Module):
    """1x1 spectral mixing, one 3x3 spatial layer, 1x1 classifier: ~8 GFLOP per cube."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(C, 32, 1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, K, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_cubes(folder: Path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    ids = [f"SPACE_{i:06d}#2021_01_01_10_00_{i % 60:02d}" for i in range(n)]
    for case_id in ids:
        np.save(folder / f"{case_id}.npy", rng.random((H, W, C), dtype=np.float32))
    return ids


CPU: dict[str, list[float]] = {}


SANDBOX_CPU: list[float] = []  # CPU of the sandboxed processes, reported by the supervisor


def cpu_now() -> float:
    """CPU seconds of this process, plus those of finished sandboxed runs."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + sum(SANDBOX_CPU)


def timed(label: str, fn, *args) -> float:
    """Wall time of fn(*args); its CPU time is recorded in CPU[label] (load-independent)."""
    cpu0 = cpu_now()
    wall = fn(*args)
    CPU.setdefault(label, []).append(cpu_now() - cpu0)
    return wall


def bare_loop(model_path: Path, cubes: Path, ids: list[str], out: Path, threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = torch.jit.load(str(model_path)).eval()
    with torch.inference_mode():
        for case_id in ids:
            cube = np.load(cubes / f"{case_id}.npy", mmap_mode="r", allow_pickle=False)
            x = torch.from_numpy(preprocess(cube, "l1", channels_first=True)[None])
            labels = model(x).argmax(dim=1).to(torch.uint8).numpy()[0]
            np.save(out / f"{case_id}.npy", labels)
    return time.perf_counter() - start


def sandboxed(model_path, cubes, ids, out, threads, backend, prefetch) -> float:
    limits = Limits(
        wall_seconds=3600, cpu_seconds=36000, memory_mb=16384, threads=threads, max_output_mb=8
    )
    start = time.perf_counter()
    result = run_inference(
        model_path,
        cubes_dir=cubes,
        case_ids=ids,
        output_dir=out,
        num_classes=K,
        limits=limits,
        backend=backend,
        prefetch=prefetch,
    )
    elapsed = time.perf_counter() - start
    SANDBOX_CPU.append(result.cpu_seconds)
    if not result.ok:
        raise SystemExit(
            f"sandboxed run failed: {result.error_kind}: {result.message}\n{result.log}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--backend", default="bwrap")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xb-bench-") as tmp:
        root = Path(tmp)
        cubes = root / "cubes"
        cubes.mkdir()
        t0 = time.perf_counter()
        ids = make_cubes(cubes, args.cases)
        print(
            f"generated {args.cases} cubes {H}x{W}x{C} float32 in {time.perf_counter() - t0:.1f} s"
        )
        model_path = root / "fcn.pt"
        torch.jit.save(torch.jit.script(SmallFCN().eval()), str(model_path))
        bare_times, plain_times, box_times = [], [], []
        for r in range(args.repeats):  # interleaved, so drift affects every side alike
            (root / f"bare{r}").mkdir()
            common = (model_path, cubes, ids)
            engine = (args.threads, args.backend)
            bare_times.append(timed("bare", bare_loop, *common, root / f"bare{r}", args.threads))
            plain_times.append(
                timed("plain", sandboxed, *common, root / f"plain{r}", *engine, False)
            )
            box_times.append(timed("box", sandboxed, *common, root / f"box{r}", *engine, True))
        for case_id in ids:  # same model, same cubes -> same labels
            a = np.load(root / "bare0" / f"{case_id}.npy")
            for side in ("plain0", "box0"):
                assert np.array_equal(a, np.load(root / side / f"{case_id}.npy")), case_id
        bare, plain, box = min(bare_times), min(plain_times), min(box_times)

        def runs(times: list[float]) -> str:
            return ", ".join(f"{t:.2f}" for t in times)

        print(
            f"threads={args.threads} backend={args.backend} cases={args.cases} (best of "
            f"{args.repeats}, interleaved)"
        )
        print(f"bare in-process loop           : {bare:8.2f} s  (runs: {runs(bare_times)})")
        print(f"sandboxed, harness no prefetch : {plain:8.2f} s  (runs: {runs(plain_times)})")
        print(f"sandboxed, harness as deployed : {box:8.2f} s  (runs: {runs(box_times)})")
        print(f"pure sandbox overhead ratio    : {plain / bare:8.3f}  (same sequential loop)")
        print(f"overhead ratio (deployed)      : {box / bare:8.3f}  (goal <= 1.10)")
        cpu = {k: min(v) for k, v in CPU.items()}
        print(
            f"CPU seconds (best)             : bare {cpu['bare']:.2f}, sandboxed no prefetch "
            f"{cpu['plain']:.2f}, deployed {cpu['box']:.2f}; ratio "
            f"{cpu['plain'] / cpu['bare']:.3f} / {cpu['box'] / cpu['bare']:.3f}"
        )
        print(f"load average at the end        : {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
