"""Satterthwaite degrees of freedom against designs with a known answer, and their use."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import t as t_dist

from evaluator.ranking import RankingResult, lmm, rank_methods
from evaluator.ranking.reml import fit_reml

from .simdata import simulate, simulate_matrix


def _balanced(k, s, n, seed):
    return simulate_matrix(
        k=k,
        n_subjects=s,
        cases_per_subject=n,
        seed=seed,
        sd_subject=1.0,
        sd_case=0.6,
        sd_subject_method=0.6,
        sd_resid=0.4,
    )


@pytest.mark.parametrize("k,s,n,seed", [(4, 6, 3, 0), (3, 5, 4, 1), (6, 10, 2, 2)])
def test_balanced_design_df_equal_anova_df(k, s, n, seed):
    """Balanced, interior fit: the grand mean is estimated from the subject mean square
    (df = S - 1) and a within-subject contrast from the subject x method mean square
    (df = (S - 1)(k - 1)), exactly."""
    y, subj = _balanced(k, s, n, seed)
    fit = fit_reml(y, subj)
    assert not fit.boundary
    pair = np.zeros(k)
    pair[[0, 1]] = [1.0, -1.0]
    df, notes = fit.satterthwaite_df(np.vstack([np.full(k, 1.0 / k), pair]))
    assert notes == []
    np.testing.assert_allclose(df, [s - 1, (s - 1) * (k - 1)], rtol=1e-6)
    # every pairwise contrast has the same df; a method mean lies between the two
    lf = lmm.fit_lmm(y, subj)
    np.testing.assert_allclose(lf.pairwise_df(), (s - 1) * (k - 1), rtol=1e-6)
    assert np.all((lf.df_means > s - 1) & (lf.df_means < (s - 1) * (k - 1)))


def test_one_way_random_effects_mean_has_groups_minus_one_df():
    """y_ij = mu + a_i + e_ij (one method, balanced): df of mu = n_groups - 1."""
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(7), 5)
    y = (2.0 + rng.normal(0, 1.0, 7)[groups] + rng.normal(0, 0.5, 35))[None, :]
    fit = fit_reml(y, groups, active=(True, False, False))
    df, _ = fit.satterthwaite_df(np.ones((1, 1)))
    assert df[0] == pytest.approx(6.0, rel=1e-6)
    # and the REML variance estimates are the ANOVA ones (interior solution)
    means = y[0].reshape(7, 5).mean(axis=1)
    msb = 5 * means.var(ddof=1)
    msw = ((y[0].reshape(7, 5) - means[:, None]) ** 2).sum() / (35 - 7)
    vc = fit.variance_components(("group", "", ""))
    assert vc["residual"] == pytest.approx(msw, rel=1e-6)
    assert vc["group"] == pytest.approx((msb - msw) / 5, rel=1e-5)


def test_boundary_component_drops_out():
    """A variance component at 0 is reported as a boundary fit and adds no df term."""
    y, subj = simulate_matrix(k=4, n_subjects=6, cases_per_subject=3, seed=5, sd_subject_method=0.0)
    full = fit_reml(y, subj)
    if not full.boundary:
        pytest.skip("this draw is interior")
    reduced = fit_reml(y, subj, active=(True, True, False))
    assert full.log_likelihood == pytest.approx(reduced.log_likelihood, abs=1e-8)
    L = np.eye(4)
    np.testing.assert_allclose(
        full.satterthwaite_df(L)[0], reduced.satterthwaite_df(L)[0], rtol=1e-5
    )


def test_results_use_t_with_satterthwaite_df():
    df = simulate(k=4, n_subjects=5, cases_per_subject=3, seed=7, effects=[0, 0.4, 0.8, 0])
    res = rank_methods(df, n_bootstrap=0, bounded=True)
    assert res.model.ddf == "satterthwaite" and "Satterthwaite" in res.model.test
    assert res.settings["ddf"] == "satterthwaite"
    for m in res.methods:
        assert m.df is not None and 1 < m.df < 5 * 3 * 4
        q = t_dist.ppf(0.975, m.df)
        lo = m.estimate_model - q * m.se_model
        assert m.ci_low == pytest.approx(1 / (1 + np.exp(-lo)), rel=1e-9)
    for c in res.contrasts:
        assert c.df == pytest.approx(4 * 3, rel=1e-3)  # near-balanced: (S-1)(k-1)
        assert c.p_raw == pytest.approx(2 * t_dist.sf(abs(c.z), c.df), rel=1e-9)
        q = t_dist.ppf(0.975, c.df)
        assert c.ci_high - c.ci_low == pytest.approx(2 * q * c.se, rel=1e-9)
    wald = rank_methods(df, n_bootstrap=0, bounded=True, ddf="wald")
    assert wald.model.ddf == "wald" and all(c.df is None for c in wald.contrasts)
    # t intervals are wider than z intervals, p-values larger
    for a, b in zip(res.contrasts, wald.contrasts, strict=True):
        assert a.ci_high - a.ci_low > b.ci_high - b.ci_low
        assert a.p_raw >= b.p_raw


def test_old_snapshots_without_df_still_load():
    res = rank_methods(simulate(k=3, n_subjects=4, seed=0), n_bootstrap=5)
    d = res.to_dict()
    for m in d["methods"]:
        del m["df"]
    for c in d["contrasts"]:
        del c["df"]
    for key in ("ddf", "fit_warnings", "fallback_reason"):
        del d["model"][key]
    del d["model"]["test"]
    old = RankingResult.from_dict(d)
    assert all(m.df is None for m in old.methods) and old.model.ddf is None
    assert "Wald z" in old.model.test
    assert dataclasses.asdict(old.methods[0])["method"] == res.methods[0].method


def test_fit_records_optimiser_runs():
    y, subj = simulate_matrix(k=5, n_subjects=6, cases_per_subject=2, seed=11)
    fit = lmm.fit_lmm(y, subj)
    runs = fit.attempts[0]["runs"]
    assert [r["optimizer"] for r in runs][:2] == ["bfgs", "l-bfgs-b"]
    best = min(r["reml_deviance"] for r in runs)
    assert fit.log_likelihood == pytest.approx(-0.5 * best, abs=1e-9)
