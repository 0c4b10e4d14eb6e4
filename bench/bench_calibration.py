"""Calibration of the ranking engine under no true difference, and of test-set planning.

    .venv/bin/python bench/bench_calibration.py                  # 5, 6, 10, 15 subjects, 400 each
    .venv/bin/python bench/bench_calibration.py --n 100          # fewer datasets per size
    .venv/bin/python bench/bench_calibration.py --sizes 6 --n 60 --no-power

Every dataset goes through the engine's real code path (``rank_methods``, no bootstrap):
k methods with the same true mean, cases nested in subjects, variance components as in the
simulations of docs/statistics.md (logit scale: subject 0.5^2, image 0.5^2, subject x method
0.3^2, residual 0.5^2; three images per subject; scores transformed to DSC by the inverse
logit). Reported per size: the family-wise false-positive rate of the Holm-adjusted pairwise
contrasts (any pair declared different), the coverage of the methods' 95 % confidence
intervals of the true mean, both with Monte-Carlo standard errors, and how many datasets
fell back from the full mixed model, with the fallback's own rates, by model name.
The same datasets are then ranked with every mixed model made to fail, which calibrates
the engine's last-resort fallback (named in the output). The power check simulates two methods that differ by the planning margin at the size that
evaluator.ranking.power recommends, and prints the share declared different (goal ~0.8).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections import Counter, defaultdict
from multiprocessing import Pool
from typing import Any
from unittest import mock

import numpy as np
from scipy.special import expit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from evaluator.ranking import rank_methods  # noqa: E402
from evaluator.ranking.power import (  # noqa: E402
    VarianceComponents,
    margin_on_model_scale,
    power,
    required_subjects,
)
from tests.evaluator.ranking.simdata import simulate  # noqa: E402

SIZES = (5, 6, 10, 15)
N_DATASETS = 400
K_METHODS = 4
CASES_PER_SUBJECT = 3
MU = 1.0  # typical DSC expit(1) = 0.73
SD = {"sd_subject": 0.5, "sd_case": 0.5, "sd_subject_method": 0.3, "sd_resid": 0.5}
ALPHA = 0.05
MARGIN = 0.05


@contextlib.contextmanager
def mixed_models_fail():
    """Make every mixed-model fit of the engine fail, so that the engine's own last resort
    (method means, cluster-robust covariance) ranks the data: calibrates the fallback even
    when, as with the nested REML, real fallbacks are too rare to measure."""
    from evaluator.ranking import lmm

    def fail(*args, **kwargs):
        return {"outcome": "rejected", "error": "made to fail by the calibration bench"}, None

    with (
        mock.patch.object(lmm, "_nested", fail, create=True),
        mock.patch.object(lmm, "_try_fit", fail),
    ):
        yield


def null_outcome(job: tuple[int, int, int, int, bool]) -> dict[str, Any]:
    """Rank one null dataset; what the calibration counts from it."""
    n_subjects, seed, k, cases, force_fallback = job
    df = simulate(k=k, n_subjects=n_subjects, cases_per_subject=cases, seed=seed, mu=MU, **SD)
    with mixed_models_fail() if force_fallback else contextlib.nullcontext():
        res = rank_methods(df, metric="dsc", n_bootstrap=0, alpha=ALPHA)
    truth = float(expit(MU))
    covered = sum(
        m.ci_low is not None and m.ci_high is not None and m.ci_low <= truth <= m.ci_high
        for m in res.methods
    )
    return {
        "false_positive": any(c.p_holm is not None and c.p_holm < ALPHA for c in res.contrasts),
        "covered": covered,
        "n_ci": len(res.methods),
        "model": res.model.model,
        "reason": fallback_reason(res.model),
        "test": getattr(res.model, "test", ""),
        "df": [getattr(m, "df", None) for m in res.methods],
        # subject x method variance estimated on the boundary (0): the df then pool strata
        "sm_zero": res.model.model == "full"
        and not (res.model.variance_components.get("subject:method") or 0) > 1e-10,
    }


def fallback_reason(model: Any) -> str | None:
    """Why the full mixed model was not used (the engine's own reason when it records one)."""
    if model.model == "full":
        return None
    reason = getattr(model, "fallback_reason", None)
    if reason:
        return str(reason)
    return model.fallbacks[-1] if model.fallbacks else model.model


def _rates(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    if not n:
        return {"n": 0, "fwer": math.nan, "fwer_se": math.nan}
    fp = np.array([r["false_positive"] for r in rows], dtype=float)
    cov = np.array([r["covered"] / r["n_ci"] for r in rows])
    return {
        "n": n,
        "fwer": float(fp.mean()) if n else math.nan,
        "fwer_se": float(fp.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        # intervals of one dataset are correlated: the standard error is over datasets
        "coverage": float(cov.mean()) if n else math.nan,
        "coverage_se": float(cov.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
    }


def calibrate(
    n_subjects: int,
    n_datasets: int = N_DATASETS,
    *,
    seed: int = 0,
    processes: int = 2,
    k: int = K_METHODS,
    cases: int = CASES_PER_SUBJECT,
    force_fallback: bool = False,
) -> dict[str, Any]:
    """FWER and CI coverage at one size under no true difference, overall and by model;
    ``force_fallback``: the same datasets ranked by the engine's last-resort fallback."""
    jobs = [
        (n_subjects, seed + 100_003 * n_subjects + i, k, cases, force_fallback)
        for i in range(n_datasets)
    ]
    if processes > 1:
        with Pool(processes) as pool:
            rows = list(pool.imap_unordered(null_outcome, jobs, chunksize=8))
    else:
        rows = [null_outcome(j) for j in jobs]
    by_model: dict[str, list] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    dfs = [d for r in rows for d in r["df"] if d is not None]
    return {
        "n_subjects": n_subjects,
        **_rates(rows),
        "tests": sorted({r["test"] for r in rows}),
        "df_median": float(np.median(dfs)) if dfs else None,
        "n_fallback": sum(r["model"] != "full" for r in rows),
        "sm_zero": _rates([r for r in rows if r["sm_zero"]]),
        "by_model": {m: _rates(v) for m, v in sorted(by_model.items())},
        "reasons": Counter(r["reason"] for r in rows if r["reason"]),
    }


def _alt_outcome(job: tuple[int, int, float, int]) -> bool:
    """One dataset where the last of k methods is worse by ``delta``: is the pair (first,
    last) declared different, in the right direction?"""
    n_subjects, seed, delta, k = job
    df = simulate(
        k=k,
        n_subjects=n_subjects,
        cases_per_subject=CASES_PER_SUBJECT,
        seed=seed,
        mu=MU,
        effects=[0.0] * (k - 1) + [-delta],
        **SD,
    )
    res = rank_methods(df, metric="dsc", n_bootstrap=0, alpha=ALPHA)
    last = f"method_{k - 1}"
    for c in res.contrasts:
        if {c.method_a, c.method_b} == {"method_0", last}:
            return bool(c.significant and c.better == "method_0")
    return False


def power_check(
    n_datasets: int, *, seed: int = 7, processes: int = 2, k: int = 2
) -> dict[str, Any]:
    """Simulated power at the size evaluator.ranking.power recommends for MARGIN; with k > 2
    methods as the platform plans (Bonferroni over all pairs, df (n - 1)(k - 1)) while the
    engine applies Holm, so the simulated power should reach the target or exceed it."""
    vc = VarianceComponents(
        residual=SD["sd_resid"] ** 2,
        subject_method=SD["sd_subject_method"] ** 2,
        subject_case=SD["sd_case"] ** 2,
        subject=SD["sd_subject"] ** 2,
    )
    delta = margin_on_model_scale(MARGIN, float(expit(MU)))
    kw = {"alpha": ALPHA, "n_methods": k, "n_comparisons": k * (k - 1) // 2}
    n = required_subjects(delta, vc, CASES_PER_SUBJECT, **kw)
    jobs = [(n, seed * 1_000_003 + i, delta, k) for i in range(n_datasets)]
    if processes > 1:
        with Pool(processes) as pool:
            hits = list(pool.imap_unordered(_alt_outcome, jobs, chunksize=8))
    else:
        hits = [_alt_outcome(j) for j in jobs]
    p = float(np.mean(hits))
    return {
        "k": k,
        "margin": MARGIN,
        "baseline": float(expit(MU)),
        "delta": delta,
        "n_subjects": n,
        "analytic": power(delta, vc, n, CASES_PER_SUBJECT, **kw),
        "simulated": p,
        "se": math.sqrt(p * (1 - p) / n_datasets),
        "n": n_datasets,
    }


def _fmt(x: float, se: float) -> str:
    return f"{x:.3f} ({se:.3f})"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| subjects | datasets | FWER, Holm (MC SE) | 95% CI coverage (MC SE) | median df "
        "| subject x method variance at 0: n, FWER | fell back "
        "| fallback: model, n, FWER, coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fb = [
            f"{m}: {v['n']}, {v['fwer']:.2f}, {v['coverage']:.2f}"
            for m, v in r["by_model"].items()
            if m != "full"
        ]
        df = "-" if r["df_median"] is None else f"{r['df_median']:.1f}"
        lines.append(
            f"| {r['n_subjects']} | {r['n']} | {_fmt(r['fwer'], r['fwer_se'])} "
            f"| {_fmt(r['coverage'], r['coverage_se'])} | {df} "
            f"| {r['sm_zero']['n']}, {r['sm_zero']['fwer']:.3f} | {r['n_fallback']} "
            f"| {'; '.join(fb) or '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N_DATASETS, help="datasets per size")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--no-power", action="store_true", help="skip the power simulation")
    ap.add_argument(
        "--no-fallback", action="store_true", help="skip the forced-fallback calibration"
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = []
    for size in args.sizes:
        r = calibrate(size, args.n, seed=args.seed, processes=args.processes)
        results.append(r)
        print(
            f"{size} subjects: FWER {_fmt(r['fwer'], r['fwer_se'])}, coverage "
            f"{_fmt(r['coverage'], r['coverage_se'])}, fallbacks {r['n_fallback']}",
            flush=True,
        )
    forced = []
    if not args.no_fallback:
        for size in args.sizes:
            r = calibrate(
                size, args.n, seed=args.seed, processes=args.processes, force_fallback=True
            )
            forced.append(r)
            print(
                f"{size} subjects, fallback forced: FWER {_fmt(r['fwer'], r['fwer_se'])}, "
                f"coverage {_fmt(r['coverage'], r['coverage_se'])}, models {sorted(r['by_model'])}",
                flush=True,
            )
    tests = sorted({t for r in results for t in r["tests"]})
    print()
    print(
        f"{K_METHODS} methods with equal true means, {CASES_PER_SUBJECT} images per subject, "
        f"alpha {ALPHA}; tests: {'; '.join(tests)}"
    )
    print(table(results))
    reasons = Counter()
    for r in results:
        reasons.update(r["reasons"])
    if reasons:
        print("\nFallback reasons:")
        for why, n in reasons.most_common():
            print(f"  {n} x {why}")
    if forced:
        models = sorted({m for r in forced for m in r["by_model"]})
        print(
            f"\nThe same datasets with every mixed model made to fail: the engine's fallback "
            f"({', '.join(models)}); tests: {'; '.join(sorted({t for r in forced for t in r['tests']}))}"
        )
        print(table(forced))
    if not args.no_power:
        for k in (2, K_METHODS):
            p = power_check(args.n, seed=args.seed + 7, processes=args.processes, k=k)
            planned = "" if k == 2 else f", Bonferroni over {k * (k - 1) // 2} pairs (Holm applied)"
            print(
                f"\nPower check, {k} methods (one worse by {p['margin']} DSC below "
                f"{p['baseline']:.3f}, logit difference {p['delta']:.3f}{planned}), "
                f"{CASES_PER_SUBJECT} images per subject: recommended {p['n_subjects']} subjects; "
                f"analytic power {p['analytic']:.3f}, simulated {_fmt(p['simulated'], p['se'])} "
                f"over {p['n']} datasets",
                flush=True,
            )
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
