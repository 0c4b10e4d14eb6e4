"""The calibration bench (bench/bench_calibration.py) at one size, fixed seed: the engine's
real code path under no true difference keeps the family-wise error and the CI coverage
within Monte-Carlo tolerance of the goals (FWER <= 0.05, coverage 0.93-0.97)."""

import importlib.util
import math
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_calibration.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_calibration", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_calibration_at_six_subjects():
    bench = load_bench()
    n = 60
    r = bench.calibrate(6, n, seed=2026, processes=1)
    assert r["n"] == n == sum(v["n"] for v in r["by_model"].values())
    assert r["n_fallback"] == n - r["by_model"].get("full", {"n": 0})["n"]
    # binomial Monte-Carlo error of a rate of 0.05 over n datasets, three standard errors
    assert r["fwer"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n), r
    tol = 3 * max(r["coverage_se"], 0.01)
    assert 0.93 - tol <= r["coverage"] <= 0.97 + tol, r
    assert "fell back" in bench.table([r]) and "| 6 | 60 |" in bench.table([r])
