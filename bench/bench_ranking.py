"""Benchmark of the ranking engine: time per stage and end to end, and the ratio to lme4.

    .venv/bin/python bench/bench_ranking.py            # both sizes
    .venv/bin/python bench/bench_ranking.py --small    # 20 methods x 500 cases x 50 subjects
    .venv/bin/python bench/bench_ranking.py --no-r     # skip the lme4 comparison

Sizes from issue 5; goals for the small size: full ranking (model, contrasts, 1000 subject
bootstraps) <= 3 s, and the model fit with all Satterthwaite df at least as fast as lme4 +
lmerTest on the same data (ratio <= 1). When Rscript with lme4 and lmerTest is installed
(bench-only: `apt-get install r-base-core r-cran-lme4 r-cran-lmertest`), the same data are
written to a temporary CSV and fitted in R; R's own start-up and CSV reading are not counted
(system.time around lmer() and contest() only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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


R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
d <- read.csv(commandArgs(trailingOnly = TRUE)[1])
d$method <- factor(d$method)
d$y <- qlogis(pmin(pmax(d$dsc, 1e-3), 1 - 1e-3))
k <- nlevels(d$method)
f <- y ~ method + (1|subject) + (1|subject:case) + (1|subject:method)
t_fit <- system.time(fit <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
pairs <- t(combn(k, 2))
Lm <- cbind(1, diag(k)[, -1, drop = FALSE])  # method means in treatment coding
L <- Lm[pairs[, 1], , drop = FALSE] - Lm[pairs[, 2], , drop = FALSE]
t_con <- system.time({
  ct <- contest(fit, L, joint = FALSE)
  cm <- contest(fit, Lm, joint = FALSE)
})[["elapsed"]]
cat(sprintf("RESULT %.6f %.6f %.6f %.6f\n", t_fit, t_con, as.numeric(logLik(fit)), median(ct$df)))
"""


def lme4_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(
        ["Rscript", "-e", "library(lme4); library(lmerTest)"], capture_output=True, timeout=120
    )
    return probe.returncode == 0


def lme4_time(df: pd.DataFrame) -> tuple[float, float, float, float] | None:
    """(fit s, contrasts s, REML log-likelihood, median pairwise df) from lme4 + lmerTest."""
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "scores.csv")
        script = os.path.join(tmp, "bench.R")
        df.to_csv(csv, index=False)
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        out = subprocess.run(["Rscript", script, csv], capture_output=True, text=True, timeout=3600)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            a, b, ll, dfm = (float(x) for x in line.split()[1:])
            return a, b, ll, dfm
    print(f"  lme4 failed: {out.stderr.strip()[-300:]}")
    return None


def bench(k: int, n_cases: int, n_subjects: int, with_r: bool) -> None:
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
    fit = fit_lmm(y, data.case_subject)  # includes the Satterthwaite df of the method means
    stages[f"LMM fit ({fit.model}, {fit.optimizer})"] = time.perf_counter() - t
    t = time.perf_counter()
    pair_df = fit.pairwise_df()
    pairwise_contrasts(fit.means, fit.cov, 0.05, df=pair_df)
    stages[f"{k * (k - 1) // 2} contrasts (Satterthwaite t) + Holm"] = time.perf_counter() - t
    ours = sum(v for name, v in stages.items() if "LMM" in name or "contrasts" in name)
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
    if not with_r:
        return
    r = lme4_time(df)
    if r is None:
        return
    r_fit, r_con, r_ll, r_df = r
    print(f"  {'lme4 lmer() fit (R, system.time)':<48s} {r_fit:8.3f} s")
    print(f"  {'lmerTest contest() means + contrasts':<48s} {r_con:8.3f} s")
    print(
        f"  ratio to lme4 (ours: fit + df + contrasts {ours:.3f} s / lme4 + lmerTest "
        f"{r_fit + r_con:.3f} s) = {ours / (r_fit + r_con):.3f}; "
        f"fit alone {stages_fit(stages) / r_fit:.3f}"
    )
    print(
        f"  REML log-likelihood ours {fit.log_likelihood:.4f}, lme4 {r_ll:.4f} "
        f"(difference {fit.log_likelihood - r_ll:+.2e}); median pairwise df ours "
        f"{np.median(pair_df):.3f}, lmerTest {r_df:.3f}"
    )


def stages_fit(stages: dict[str, float]) -> float:
    return sum(v for name, v in stages.items() if name.startswith("LMM fit"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="only 20 x 500 x 50")
    ap.add_argument("--no-r", action="store_true", help="skip the lme4 comparison")
    args = ap.parse_args()
    with_r = not args.no_r and lme4_available()
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} lme4={'yes' if with_r else 'no'}")
    bench(20, 500, 50, with_r)
    if not args.small:
        bench(50, 2000, 200, with_r)


if __name__ == "__main__":
    main()
