import numpy as np
import pytest
from scipy.special import logit

from evaluator.ranking import lmm, rank_methods
from evaluator.ranking.engine import pairwise_contrasts

from .simdata import simulate, simulate_matrix


@pytest.mark.parametrize("bounded", [True, False])
def test_balanced_estimates_equal_mean_differences(bounded):
    df = simulate(
        bounded=bounded,
        k=5,
        n_subjects=8,
        cases_per_subject=4,
        seed=3,
        effects=[0, 0.3, -0.2, 0.5, 0.1],
    )
    res = rank_methods(df, bounded=bounded, n_bootstrap=0)
    assert res.model.model == "full" and res.model.converged
    wide = df.pivot(index="case", columns="method", values="dsc")
    y = logit(np.clip(wide, 1e-3, 1 - 1e-3)) if bounded else wide
    mean = y.mean(axis=0)
    est = {m.method: m.estimate_model for m in res.methods}
    ref = "method_0"
    for m in mean.index:
        assert abs((est[m] - est[ref]) - (mean[m] - mean[ref])) < 1e-8
    # LMM point ranking equals mean-then-rank on the model scale
    order = list(mean.sort_values(ascending=False).index)
    assert res.method_names == order


def test_contrasts_are_consistent_with_matrix_and_holm():
    df = simulate(k=4, n_subjects=12, cases_per_subject=3, seed=1, effects=[0, 0.6, 1.2, 0])
    res = rank_methods(df, n_bootstrap=0)
    assert len(res.contrasts) == 6
    names = res.method_names
    for c in res.contrasts:
        a, b = names.index(c.method_a), names.index(c.method_b)
        assert a < b  # method_a ranked above method_b
        assert res.p_holm_matrix[a][b] == pytest.approx(c.p_holm)
        assert c.p_holm >= c.p_raw
        assert c.ci_low <= c.estimate <= c.ci_high
        assert res.significance[a][b] == (1 if c.significant else 0)
        assert res.significance[b][a] == -res.significance[a][b]
    assert res.method_names[0] == "method_2"


def test_variance_components_recovered_roughly():
    y, subj = simulate_matrix(k=6, n_subjects=40, cases_per_subject=6, seed=2)
    fit = lmm.fit_lmm(y, subj)
    vc = fit.variance_components
    assert fit.model == "full"
    assert vc["residual"] == pytest.approx(0.25, rel=0.2)
    assert vc["subject:method"] == pytest.approx(0.09, rel=0.5)


def _nested_fails(monkeypatch):
    def boom(*a, **k):
        raise lmm.RemlError("boom")

    monkeypatch.setattr(lmm, "fit_reml", boom)


def test_fallback_chain_is_recorded(monkeypatch):
    _nested_fails(monkeypatch)
    real = lmm._try_fit

    def failing_full(y, cs, model, opt):
        if model == "full":
            return {"model": model, "optimizer": opt, "outcome": "error", "error": "boom"}, None
        return real(y, cs, model, opt)

    monkeypatch.setattr(lmm, "_try_fit", failing_full)
    df = simulate(k=3, n_subjects=6, cases_per_subject=3, seed=0)
    res = rank_methods(df, n_bootstrap=0)
    assert res.model.model == "no_sm"
    assert len(res.model.fallbacks) == 1 + len(lmm.OPTIMISERS)
    assert [a["model"] for a in res.model.attempts][:4] == ["full"] * 4
    assert res.model.attempts[0]["optimizer"] == "nested REML"
    assert res.model.fallback_reason.startswith("full/nested REML: RemlError: boom")
    assert any("fallback" in w for w in res.warnings)
    # the statsmodels fallback still gets Satterthwaite df, at its own estimates
    assert res.model.ddf == "satterthwaite"
    assert all(c.df is not None and 0 < c.df < 1000 for c in res.contrasts)


def test_fallback_fit_matches_nested_fit(monkeypatch):
    """statsmodels (the fallback) and the nested REML fit give the same model."""
    y, subj = simulate_matrix(k=4, n_subjects=7, cases_per_subject=3, seed=4)
    nested = lmm.fit_lmm(y, subj)
    _nested_fails(monkeypatch)
    fallback = lmm.fit_lmm(y, subj)
    assert fallback.model == nested.model == "full"
    # same REML log-likelihood scale; the nested fit is never worse
    assert nested.log_likelihood - 1e-4 <= fallback.log_likelihood <= nested.log_likelihood + 1e-6
    np.testing.assert_allclose(fallback.means, nested.means, rtol=1e-4)
    np.testing.assert_allclose(np.diag(fallback.cov), np.diag(nested.cov), rtol=1e-2)
    np.testing.assert_allclose(fallback.pairwise_df(), nested.pairwise_df(), rtol=2e-2)


def test_last_resort_paired_means(monkeypatch):
    _nested_fails(monkeypatch)
    monkeypatch.setattr(
        lmm, "_try_fit", lambda y, cs, model, opt: ({"model": model, "outcome": "error"}, None)
    )
    y, subj = simulate_matrix(k=3, n_subjects=6, cases_per_subject=2, seed=0)
    fit = lmm.fit_lmm(y, subj)
    assert fit.model == "paired_means"
    np.testing.assert_allclose(fit.means, y.mean(axis=1))
    # cluster-robust t with n_subjects - 1 df, reason named
    assert fit.ddf == "cluster"
    np.testing.assert_array_equal(fit.pairwise_df(), 5.0)
    assert fit.fallback_reason.startswith("every mixed model failed")
    c = pairwise_contrasts(fit.means, fit.cov, 0.05, df=fit.pairwise_df())
    assert np.all(np.isfinite(c["p_holm"]))


def test_statsmodels_errors_do_not_leak(monkeypatch):
    def boom(self, *a, **k):
        raise np.linalg.LinAlgError("Singular matrix")

    _nested_fails(monkeypatch)
    monkeypatch.setattr(lmm.MixedLM, "fit", boom)
    res = rank_methods(simulate(k=3, n_subjects=5, seed=0), n_bootstrap=10)
    assert res.model.model == "paired_means"
    assert res.model.fallback_reason.startswith("every mixed model failed")
    assert all(a["outcome"] == "error" for a in res.model.attempts)
    assert all(c.df == 4 for c in res.contrasts)
