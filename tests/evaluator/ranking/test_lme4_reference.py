"""The nested REML fit and its Satterthwaite df against lme4 + lmerTest (values committed).

Expected values: scripts/reference/lme4_ranking.R on the CSVs written by
scripts/reference/lme4_datasets.py (balanced, unbalanced, 5 and 6 subjects, a boundary fit
with a zero variance component, missing cells). No R is needed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as t_dist

from evaluator.ranking import lmm
from evaluator.ranking.reml import fit_reml

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "lme4_expected.json").read_text())["datasets"]
NAMES = sorted(EXPECTED)


def load(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(k, n) matrix (NaN = missing cell), subject index per case, method names."""
    d = pd.read_csv(DATA / "lme4" / f"{name}.csv", dtype={"method": str, "case": str})
    wide = d.pivot(index="method", columns="case", values="y").sort_index()
    subj = d.drop_duplicates("case").set_index("case")["subject"].loc[wide.columns]
    return wide.to_numpy(float), pd.factorize(subj, sort=True)[0], list(wide.index)


def _L(k: int, rows: list[list[float]]) -> np.ndarray:
    """lmerTest's L over treatment-coded fixed effects -> L over the method means."""
    out = []
    for L in rows:
        L = np.asarray(L, dtype=float)
        m = np.zeros(k)
        m[0] = L[0] - L[1:].sum()  # intercept = mean_0, beta_j = mean_j - mean_0
        m[1:] = L[1:]
        out.append(m)
    return np.array(out)


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    name = request.param
    y, subj, methods = load(name)
    exp = EXPECTED[name]
    assert methods == exp["methods"]
    return name, fit_reml(y, subj), exp, y, subj


def test_reml_loglik_never_below_lme4(case):
    name, fit, exp, *_ = case
    assert fit.log_likelihood >= exp["reml_loglik"] - 1e-3, name
    assert fit.log_likelihood <= exp["reml_loglik"] + 1e-2, name
    assert fit.log_likelihood >= exp["reml_loglik_default_control"] - 1e-3, name


def test_fixed_effects_and_ses(case):
    name, fit, exp, *_ = case
    k = len(fit.means)
    T = np.eye(k)
    T[1:, 0] = -1.0  # treatment coding: (mean_0, mean_j - mean_0)
    fe = T @ fit.means
    se = np.sqrt(np.diag(T @ fit.cov @ T.T))
    scale = np.abs(exp["fixef"]).max()
    np.testing.assert_allclose(fe, exp["fixef"], rtol=1e-4, atol=1e-6 * scale, err_msg=name)
    np.testing.assert_allclose(se, exp["fixef_se"], rtol=1e-4, err_msg=name)


def test_variance_components(case):
    name, fit, exp, *_ = case
    vc = fit.variance_components()
    want = exp["variance_components"]
    assert vc["residual"] == pytest.approx(want["Residual"], rel=1e-3)
    total = sum(want.values())
    for key in ("subject", "subject:case", "subject:method"):
        assert vc[key] == pytest.approx(want[key], rel=1e-3, abs=1e-6 * total), (name, key)
    if exp["singular"]:
        assert fit.boundary and all(vc[b] == 0.0 for b in fit.boundary)


def _contests(exp: dict) -> list[dict]:
    return list(exp["method_means"].values()) + [exp["grand_mean"]] + list(exp["pairs"].values())


def test_satterthwaite_df_and_p_equal_lmertest(case):
    name, fit, exp, *_ = case
    rows = _contests(exp)
    L = _L(len(fit.means), [r["L"] for r in rows])
    df, _ = fit.satterthwaite_df(L)
    est = L @ fit.means
    se = np.sqrt(np.einsum("mi,ij,mj->m", L, fit.cov, L))
    p = 2 * t_dist.sf(np.abs(est / se), df)
    want = {key: np.array([r[key] for r in rows]) for key in ("estimate", "se", "df", "p")}
    scale = np.abs(want["estimate"]).max()
    np.testing.assert_allclose(est, want["estimate"], rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_allclose(se, want["se"], rtol=1e-4)
    np.testing.assert_allclose(df, want["df"], rtol=1e-2, err_msg=name)
    np.testing.assert_allclose(p, want["p"], atol=1e-3, err_msg=name)


def test_engine_path_equals_lmertest(case):
    """fit_lmm (what rank_methods uses) gives lmerTest's pairwise df and method-mean df."""
    name, _, exp, y, subj = case
    if not np.isfinite(y).all():
        pytest.skip("the engine completes missing cells with the worst value first")
    fit = lmm.fit_lmm(y, subj)
    assert fit.model == "full" and fit.ddf == "satterthwaite"
    assert fit.log_likelihood >= exp["reml_loglik"] - 1e-3
    np.testing.assert_allclose(
        fit.pairwise_df(), [r["df"] for r in exp["pairs"].values()], rtol=1e-2
    )
    np.testing.assert_allclose(
        fit.df_means, [r["df"] for r in exp["method_means"].values()], rtol=1e-2
    )
    if exp["singular"]:
        assert any("boundary" in w for w in fit.fit_warnings)
