"""Monte-Carlo checks of the LMM tests and intervals with their Satterthwaite df (small sizes
to keep them quick; bench/bench_calibration.py runs the full calibration)."""

import numpy as np
import pytest

from evaluator.ranking.engine import pairwise_contrasts
from evaluator.ranking.lmm import fit_lmm

from .simdata import simulate_matrix


@pytest.mark.slow
def test_null_familywise_false_positive_rate():
    n_sim, k = 120, 4
    hits = 0
    for seed in range(n_sim):
        y, subj = simulate_matrix(k=k, n_subjects=20, cases_per_subject=2, seed=seed)
        fit = fit_lmm(y, subj)
        c = pairwise_contrasts(fit.means, fit.cov, 0.05, df=fit.pairwise_df())
        hits += bool(np.any(c["p_holm"] < 0.05))
    fwer = hits / n_sim
    mc_error = 3 * np.sqrt(0.05 * 0.95 / n_sim)
    assert fwer <= 0.05 + mc_error, fwer


@pytest.mark.slow
def test_known_effects_ci_coverage():
    n_sim, effects = 80, np.array([0.0, 0.2, 0.5, 0.9])
    covered = total = 0
    for seed in range(n_sim):
        y, subj = simulate_matrix(
            k=4, n_subjects=20, cases_per_subject=2, seed=10_000 + seed, effects=effects
        )
        fit = fit_lmm(y, subj)
        c = pairwise_contrasts(fit.means, fit.cov, 0.05, df=fit.pairwise_df())
        truth = effects[c["i"]] - effects[c["j"]]
        covered += int(((c["ci_low"] <= truth) & (truth <= c["ci_high"])).sum())
        total += len(truth)
    coverage = covered / total
    assert 0.92 <= coverage <= 0.98, coverage
