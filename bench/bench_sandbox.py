"""Sandbox overhead, like for like: the harness's own loop (prefetching the next cube on a
helper thread while the model runs) timed bare in this process and sandboxed, same model,
same cubes, same torch threads.

    .venv/bin/python bench/bench_sandbox.py [--cases 20] [--threads N] [--backend bwrap]

Generates random full-size cubes (480 x 640 x 100 float32) in a temp dir and exports a small
fully convolutional TorchScript model, then times, interleaved and best of --repeats:

- bare: evaluator.harness.main's inference loop in a plain process (read the memory-mapped
  cube, L1 preprocessing, model, argmax, np.save; timed after ``import torch``, the model
  load and the validation's dummy cube, as on the sandboxed side), with the sandbox's thread settings and, where one can be made, a cgroup with
  the same limits (a busy machine weighs a cgroup like one task, so both sides compete
  alike);
- sandboxed: run_inference on a warm sandbox, as the pipeline runs a submission: the model
  validation opens the sandbox (untimed), then the timed run feeds the cases one at a time
  (copy-out and trusted validation of every label map included);
- one-shot: the same through a fresh sandbox for the run (the loop before warm sandboxes).

Prints ``like-for-like overhead ratio: X`` (sandboxed / bare; goal <= 1.05), the cold-start
cost (sandbox, interpreter, ``import torch``, model load: what a submission pays once per
worker, in its validation) and the warm-start cost (what each further chunk pays on a warm
sandbox), each measured as a difference of one-cube runs, and the ratio with the cold start
added to the sandboxed side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.inference import Limits, run_inference, validate_model  # noqa: E402
from evaluator.sandbox import cgroup, warm  # noqa: E402

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


SANDBOX_CPU: list[float] = []  # CPU of bare and one-shot runs, reported by their processes


def cpu_now() -> float:
    """CPU seconds of this process, of finished one-shot runs and of ended warm sandboxes
    (their supervisors report it: the processes inside a pid namespace are not our children
    in getrusage's sense)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + sum(SANDBOX_CPU) + warm.POOL.cpu_seconds


def timed(label: str, fn, *args) -> float:
    """Wall time of fn(*args); its CPU time is recorded in CPU[label] (load-independent)."""
    cpu0 = cpu_now()
    wall = fn(*args)
    CPU.setdefault(label, []).append(cpu_now() - cpu0)
    return wall


BARE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import torch  # noqa: F401 - imported before the clock starts, as in the bench process
from evaluator.harness.loaders import load
from evaluator.harness.main import _infer, _validate
from evaluator.inference import DUMMY_HW

class Quiet:
    def emit(self, **event):
        pass

args = json.loads(sys.argv[1])
runner = load(args["model"], "torchscript", num_classes=args["k"], threads=args["threads"],
              gpu=False)
_validate({**args["job"], "dummy_hw": list(DUMMY_HW)}, runner, Quiet())  # as the pipeline
use = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = use.ru_utime + use.ru_stime
start = time.perf_counter()
_infer(args["job"], lambda: runner, Quiet())
wall = time.perf_counter() - start
use = resource.getrusage(resource.RUSAGE_SELF)
print("@@" + json.dumps([wall, use.ru_utime + use.ru_stime - cpu0]))
"""


def bare_loop(model_path: Path, cubes: Path, ids: list[str], out: Path, threads: int) -> float:
    """The harness's loop (prefetching included) without a sandbox: a plain process with the
    sandbox's thread settings, in a cgroup with the run's limits where one can be made (on a
    busy machine the kernel weighs a cgroup like one task: both sides compete alike)."""
    job = {
        "mode": "infer",
        "case_ids": ids,
        "cubes_dir": str(cubes),
        "output_dir": str(out),
        "preprocessing": "l1",
        "batch_size": 1,
        "prefetch": True,
        "channels": C,
    }
    args = {"job": job, "model": str(model_path), "k": K, "threads": threads}
    argv = [sys.executable, "-c", BARE, json.dumps(args), str(ROOT)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(OPENBLAS_NUM_THREADS=str(threads), MALLOC_ARENA_MAX="2")
    group = None
    try:
        group = cgroup.RunGroup.create(LIMITS(threads))
        argv = group.launcher(argv)
    except OSError:
        pass
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    finally:
        if group is not None:
            group.destroy()
    lines = [x for x in proc.stdout.splitlines() if x.startswith("@@")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"bare loop failed: {proc.stderr[-3000:]}")
    wall, cpu = json.loads(lines[-1][2:])
    SANDBOX_CPU.append(cpu)
    return wall


def LIMITS(threads: int) -> Limits:  # noqa: N802 - one definition for both sides
    return Limits(
        wall_seconds=3600, cpu_seconds=36000, memory_mb=16384, threads=threads, max_output_mb=8
    )


def sandboxed(model_path, cubes, ids, out, threads, backend, warm_key) -> float:
    """run_inference as the pipeline calls it; `warm_key` None: a fresh sandbox for the run."""
    limits = LIMITS(threads)
    out.mkdir(exist_ok=True)
    start = time.perf_counter()
    result = run_inference(
        model_path,
        cubes_dir=cubes,
        case_ids=ids,
        output_dir=out,
        num_classes=K,
        limits=limits,
        backend=backend,
        channels=C,
        warm_key=warm_key,
    )
    elapsed = time.perf_counter() - start
    if warm_key is None:
        SANDBOX_CPU.append(result.cpu_seconds)
    if not result.ok:
        raise SystemExit(
            f"sandboxed run failed: {result.error_kind}: {result.message}\n{result.log}"
        )
    return elapsed


def submission(model_path, cubes, ids, out, threads, backend) -> float:
    """One submission on a worker, as the pipeline runs it: the validation opens the warm
    sandbox (not timed: its start is the cold-start cost printed beside), then the timed run
    of every case on it. The sandbox is ended afterwards, so its CPU time is counted."""
    key = f"bench-{out.name}"
    report = validate_model(
        model_path, channels=C, num_classes=K, limits=LIMITS(threads), backend=backend,
        warm_key=key,
    )  # fmt: skip
    if not report.ok:
        raise SystemExit(f"validation failed: {report.message}\n{report.log}")
    try:
        return sandboxed(model_path, cubes, ids, out, threads, backend, key)
    finally:
        warm.POOL.close()


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
        common = (model_path, cubes, ids)
        engine = (args.threads, args.backend)
        times: dict[str, list[float]] = {"bare": [], "box": [], "oneshot": []}
        for r in range(args.repeats):  # interleaved, so drift affects every side alike
            (root / f"bare{r}").mkdir()
            times["bare"].append(timed("bare", bare_loop, *common, root / f"bare{r}", args.threads))
            times["box"].append(timed("box", submission, *common, root / f"box{r}", *engine))
            times["oneshot"].append(
                timed("oneshot", sandboxed, *common, root / f"one{r}", *engine, None)
            )
        for case_id in ids:  # same model, same cubes -> same labels
            a = np.load(root / "bare0" / f"{case_id}.npy")
            for side in ("box0", "one0"):
                assert np.array_equal(a, np.load(root / side / f"{case_id}.npy")), case_id

        # Start costs, as differences of one-cube runs: a fresh warm sandbox, then a further
        # run on it, against the bare loop on the same cube.
        one = ids[:1]
        cold, again, bare1 = [], [], []
        for r in range(max(3, args.repeats)):
            (root / f"b1-{r}").mkdir()
            bare1.append(bare_loop(*common[:2], one, root / f"b1-{r}", args.threads))
            key = f"start-{r}"
            cold.append(sandboxed(*common[:2], one, root / f"c1-{r}", *engine, key))
            again.append(sandboxed(*common[:2], one, root / f"w1-{r}", *engine, key))
            warm.POOL.close()
        cold_cost = min(cold) - min(again)
        warm_cost = min(again) - min(bare1)

        bare, box, oneshot = (min(times[k]) for k in ("bare", "box", "oneshot"))

        def runs(values: list[float]) -> str:
            return ", ".join(f"{t:.2f}" for t in values)

        print(
            f"threads={args.threads} backend={args.backend} cases={args.cases} (best of "
            f"{args.repeats}, interleaved)"
        )
        print(f"bare harness loop (prefetch)    : {bare:8.2f} s  (runs: {runs(times['bare'])})")
        print(f"sandboxed, warm sandbox         : {box:8.2f} s  (runs: {runs(times['box'])})")
        print(
            f"sandboxed, one-shot sandbox     : {oneshot:8.2f} s  (runs: {runs(times['oneshot'])})"
        )
        print(f"like-for-like overhead ratio: {box / bare:.3f}  (goal <= 1.05)")
        print(
            f"cold-start cost: {cold_cost:.2f} s  (sandbox + interpreter + import torch + model "
            "load: once per submission and worker, in its validation)"
        )
        print(f"warm-start cost: {warm_cost:.3f} s  (each further run on the warm sandbox)")
        print(f"ratio with the cold start added : {(box + cold_cost) / bare:8.3f}")
        print(f"one-shot overhead ratio        : {oneshot / bare:8.3f}")
        cpu = {k: min(v) for k, v in CPU.items()}
        print(
            f"CPU seconds (best)             : bare {cpu['bare']:.2f}, sandboxed "
            f"{cpu['box']:.2f}; ratio {cpu['box'] / cpu['bare']:.3f}"
        )
        print(f"load average at the end        : {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
