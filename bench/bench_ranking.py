"""Benchmark of the ranking engine: time per stage and end to end.

    .venv/bin/python bench/bench_ranking.py            # both sizes
    .venv/bin/python bench/bench_ranking.py --small    # 20 methods x 500 cases x 50 subjects

Sizes from issue 5; goal for the small size: full ranking <= 3 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from scipy.special import expit, logit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluator.ranking import rank_methods  # noqa: E402
from evaluator.ranking.bootstrap import subject_bootstrap  # noqa: E402
from evaluator.ranking.data import prepare  # noqa: E402
from evaluator.ranking.engine import pairwise_contrasts  # noqa: E402
from evaluator.ranking.lmm import fit_lmm  # noqa: E402
from evaluator.ranking.schemes import run_schemes  # noqa: E402


def make_table(k: int, n_cases: int, n_subjects: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), n_cases // n_subjects)
    n = subj.size
    y = (
        1.0
        + rng.normal(0, 0.3, k)[:, None]
        + rng.normal(0, 0.5, n_subjects)[subj][None, :]
        + rng.normal(0, 0.5, n)[None, :]
        + rng.normal(0, 0.2, (n_subjects, k))[subj].T
        + rng.normal(0, 0.5, (k, n))
    )
    m, c = np.meshgrid(np.arange(k), np.arange(n), indexing="ij")
    return pd.DataFrame(
        {
            "method": [f"m{i:03d}" for i in m.ravel()],
            "case": [f"c{i:05d}" for i in c.ravel()],
            "subject": [f"s{i:04d}" for i in subj[c.ravel()]],
            "dsc": expit(y).ravel(),
        }
    )


def bench(k: int, n_cases: int, n_subjects: int) -> None:
    df = make_table(k, n_cases, n_subjects)
    print(f"\n{k} methods x {n_cases} cases x {n_subjects} subjects ({len(df)} rows)")
    stages = {}
    t = time.perf_counter()
    data = prepare(
        df, metric="dsc", higher_is_better=True, bounded=True, missing="worst", worst_value=None
    )
    stages["validate + complete matrix"] = time.perf_counter() - t
    y = logit(np.clip(data.values, 1e-3, 1 - 1e-3))
    t = time.perf_counter()
    fit = fit_lmm(y, data.case_subject)
    stages[f"LMM fit ({fit.model}, {fit.optimizer})"] = time.perf_counter() - t
    t = time.perf_counter()
    pairwise_contrasts(fit.means, fit.cov, 0.05)
    stages[f"{k * (k - 1) // 2} contrasts + Holm"] = time.perf_counter() - t
    t = time.perf_counter()
    run_schemes(data.values)
    stages[f"challengeR schemes ({k * (k - 1)} Wilcoxon + Holm)"] = time.perf_counter() - t
    t = time.perf_counter()
    subject_bootstrap(y, data.case_subject, 1000, 0)
    stages["1000 subject bootstraps + Kendall tau"] = time.perf_counter() - t
    for name, sec in stages.items():
        print(f"  {name:<48s} {sec:8.3f} s")
    print(f"  {'sum of stages':<48s} {sum(stages.values()):8.3f} s")
    t = time.perf_counter()
    res = rank_methods(df, n_bootstrap=1000, seed=0)
    total = time.perf_counter() - t
    print(f"  {'rank_methods end to end (incl. result object)':<48s} {total:8.3f} s")
    print(
        f"  model={res.model.model} converged={res.model.converged} "
        f"tiers={max(m.tier for m in res.methods)} "
        f"tau median={res.bootstrap.kendall_tau['median']:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="only 20 x 500 x 50")
    args = ap.parse_args()
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    bench(20, 500, 50)
    if not args.small:
        bench(50, 2000, 200)


if __name__ == "__main__":
    main()
