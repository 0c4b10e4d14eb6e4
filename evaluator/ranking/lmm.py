"""Linear mixed model for case-level scores, fitted robustly with recorded fallbacks.

Model (lme4 notation): y ~ method + (1|subject) + (1|subject:case) + (1|subject:method),
fitted by REML with statsmodels MixedLM. The design is built directly as numpy arrays
(equivalent to the formula below) because patsy per-group evaluation is slow and resolves
names in the caller's namespace.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

FULL_FORMULA = (
    'smf.mixedlm("y ~ C(method)", groups="subject", re_formula="1", '
    'vc_formula={"case": "0 + C(case)", "sm": "0 + C(method)"})'
)
MODELS: dict[str, str] = {
    "full": FULL_FORMULA
    + "  # lme4: y ~ method + (1|subject) + (1|subject:case) + (1|subject:method)",
    "no_sm": 'smf.mixedlm("y ~ C(method)", groups="subject", re_formula="1", '
    'vc_formula={"case": "0 + C(case)"})  # lme4: y ~ method + (1|subject) + (1|subject:case)',
    "no_case": 'smf.mixedlm("y ~ C(method)", groups="subject", re_formula="1")'
    "  # lme4: y ~ method + (1|subject)",
    "case_only": 'smf.mixedlm("y ~ C(method)", groups="case", re_formula="1")'
    "  # one subject: lme4 y ~ method + (1|case)",
    "paired_means": "method means with cluster-robust (sandwich) covariance, clusters = "
    "subjects (cases if only one subject); no model fit",
    "identical": "no fit: every method has the same score on every case",
    "none": "no fit: a single case leaves no replication to estimate uncertainty",
}
OPTIMISERS: tuple[str, ...] = ("lbfgs", "bfgs", "cg")
MAXITER = 2000


def blas_single_thread() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread: MixedLM does many small solves, and multi-threaded BLAS
    made them 2-4x slower on a busy 2-core machine (measured). threadpoolctl comes with
    blosc2; without it this is a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class LmmFit:
    """Method means and their covariance on the model (transformed) scale."""

    means: np.ndarray
    cov: np.ndarray
    model: str
    formula: str
    optimizer: str | None
    converged: bool
    variance_components: dict[str, float | None]
    log_likelihood: float | None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _long_design(y: np.ndarray, case_subject: np.ndarray, model: str):
    """Long arrays sorted by group (MixedLM needs group rows in sorted group order)."""
    k, n = y.shape
    if model == "case_only":
        order = np.arange(n)
        group_of_case = np.arange(n)
    else:
        order = np.lexsort((np.arange(n), case_subject))
        group_of_case = case_subject
    case_l = np.repeat(order, k)
    method_l = np.tile(np.arange(k), n)
    endog = y[method_l, case_l]
    exog = np.zeros((n * k, k))
    exog[:, 0] = 1.0
    exog[np.arange(n * k), method_l] = 1.0  # method 0 (reference) sets the intercept again
    groups = group_of_case[case_l]
    return endog, exog, groups, order, group_of_case


def _vc_spec(k: int, order: np.ndarray, group_of_case: np.ndarray, terms: list[str]) -> VCSpec:
    names, colnames, mats = [], [], []
    labels = np.unique(group_of_case)
    sorted_groups = group_of_case[order]
    for term in sorted(terms):
        t_cols, t_mats = [], []
        for g in labels:
            cases_g = order[sorted_groups == g]
            ng = len(cases_g)
            if term == "case":
                mat = np.kron(np.eye(ng), np.ones((k, 1)))
                cols = [f"case[{c}]" for c in cases_g]
            else:  # subject x method
                mat = np.tile(np.eye(k), (ng, 1))
                cols = [f"method[{m}]" for m in range(k)]
            t_mats.append(mat)
            t_cols.append(cols)
        names.append(term)
        colnames.append(t_cols)
        mats.append(t_mats)
    return VCSpec(names, colnames, mats)


def _means_cov(fe: np.ndarray, cov_fe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Method means = L @ fe with L rows [1, e_j]; treatment coding, first method reference."""
    k = len(fe)
    L = np.zeros((k, k))
    L[:, 0] = 1.0
    L[np.arange(1, k), np.arange(1, k)] = 1.0
    return L @ fe, L @ cov_fe @ L.T


def _classify(messages: list[str]) -> tuple[bool, list[str]]:
    """Return (fatal, notes): Hessian/convergence trouble is fatal, boundary is a note."""
    fatal = False
    notes = []
    for msg in messages:
        low = msg.lower()
        if "hessian" in low or "converge" in low or "singular matrix" in low:
            fatal = True
        notes.append(msg.splitlines()[0][:200])
    return fatal, sorted(set(notes))


def _try_fit(y, case_subject, model: str, optimizer: str) -> tuple[dict, LmmFit | None]:
    k, _ = y.shape
    endog, exog, groups, order, group_of_case = _long_design(y, case_subject, model)
    terms = {"full": ["case", "sm"], "no_sm": ["case"]}.get(model, [])
    if k == 1:
        terms = [t for t in terms if t != "sm"]
    attempt: dict[str, Any] = {"model": model, "optimizer": optimizer}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mod = MixedLM(
                endog,
                exog,
                groups,
                exog_re=np.ones((len(endog), 1)),
                exog_vc=_vc_spec(k, order, group_of_case, terms) if terms else None,
            )
            res = mod.fit(reml=True, method=[optimizer], maxiter=MAXITER)
        except Exception as exc:  # statsmodels raises many types; never let them leak
            attempt.update(outcome="error", error=f"{type(exc).__name__}: {exc}"[:300])
            return attempt, None
    fatal, notes = _classify([str(w.message) for w in caught])
    attempt["warnings"] = notes
    converged = bool(getattr(res, "converged", False))
    attempt["converged"] = converged
    fe = np.asarray(res.fe_params, dtype=float)
    try:
        cov_fe = np.asarray(res.cov_params(), dtype=float)[:k, :k]
    except Exception as exc:
        attempt.update(outcome="error", error=f"cov_params: {exc}"[:300])
        return attempt, None
    means, cov = _means_cov(fe, cov_fe)
    ok_cov = np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0)
    if ok_cov and k > 1:
        ev = np.linalg.eigvalsh((cov + cov.T) / 2)
        ok_cov = ev.min() > -1e-10 * max(ev.max(), 1e-300)
    if not converged or fatal or not np.all(np.isfinite(fe)) or not ok_cov:
        why = []
        if not converged:
            why.append("not converged")
        if fatal:
            why.append("optimiser warnings")
        if not ok_cov:
            why.append("covariance of estimates not positive definite")
        attempt.update(outcome="rejected", error="; ".join(why) or "non-finite estimates")
        return attempt, None
    vcomp = {"residual": float(res.scale)}
    re_name = "case" if model == "case_only" else "subject"
    vcomp[re_name] = float(np.asarray(res.cov_re)[0, 0])  # already scaled by statsmodels
    names = getattr(mod.exog_vc, "names", [])
    for nm, val in zip(names, np.asarray(res.vcomp, dtype=float), strict=False):
        vcomp["subject:case" if nm == "case" else "subject:method"] = float(val)
    attempt["outcome"] = "accepted"
    boundary = [n for n in notes if "boundary" in n.lower()]
    fit = LmmFit(
        means=means,
        cov=cov,
        model=model,
        formula=MODELS[model],
        optimizer=optimizer,
        converged=True,
        variance_components=vcomp,
        log_likelihood=float(res.llf) if np.isfinite(res.llf) else None,
        warnings=[f"LMM: {b}" for b in boundary],
    )
    return attempt, fit


def paired_means(y: np.ndarray, case_subject: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Method means with a cluster-robust covariance (clusters = subjects, else cases)."""
    k, n = y.shape
    means = y.mean(axis=1)
    clusters = case_subject if len(np.unique(case_subject)) > 1 else np.arange(n)
    labels, inv = np.unique(clusters, return_inverse=True)
    g = len(labels)
    if g < 2:
        return means, np.full((k, k), np.nan)
    resid = (y - means[:, None]) / n
    u = np.zeros((g, k))
    np.add.at(u, inv, resid.T)
    cov = g / (g - 1) * (u.T @ u)
    return means, cov


def fit_lmm(y: np.ndarray, case_subject: np.ndarray) -> LmmFit:
    """Fit the ladder of models; the first acceptable fit wins, every try is recorded."""
    with blas_single_thread():
        return _fit_lmm(y, case_subject)


def _fit_lmm(y: np.ndarray, case_subject: np.ndarray) -> LmmFit:
    k, n = y.shape
    n_subj = len(np.unique(case_subject))
    within = y - y.mean(axis=0, keepdims=True)
    scale = max(float(np.abs(y).max()), 1.0)
    if k > 1 and np.all(np.abs(within) <= 1e-12 * scale):
        means, cov = paired_means(y, case_subject)
        cov = np.where(np.isfinite(cov), cov, 0.0)
        return LmmFit(
            means=means,
            cov=cov,
            model="identical",
            formula=MODELS["identical"],
            optimizer=None,
            converged=False,
            variance_components={},
            log_likelihood=None,
            warnings=["all methods have identical scores on every case: no differences"],
        )
    if n < 2:
        return LmmFit(
            means=y[:, 0].copy(),
            cov=np.full((k, k), np.nan),
            model="none",
            formula=MODELS["none"],
            optimizer=None,
            converged=False,
            variance_components={},
            log_likelihood=None,
            warnings=["only one case: no uncertainty can be estimated, no tests"],
        )
    if n_subj >= 2:
        ladder = (["full"] if k > 1 else []) + ["no_sm", "no_case"]
    else:
        ladder = ["case_only"]
    attempts: list[dict[str, Any]] = []
    fallbacks: list[str] = []
    for model in ladder:
        for opt in OPTIMISERS:
            attempt, fit = _try_fit(y, case_subject, model, opt)
            attempts.append(attempt)
            if fit is not None:
                fit.attempts = attempts
                fit.fallbacks = fallbacks
                if fallbacks:
                    fit.warnings.append(
                        f"LMM fallback: used model {model!r} with optimiser {opt!r} after "
                        f"{len(attempts) - 1} failed attempt(s)"
                    )
                return fit
            fallbacks.append(f"{model}/{opt}: {attempt.get('error', 'failed')}")
    means, cov = paired_means(y, case_subject)
    return LmmFit(
        means=means,
        cov=cov,
        model="paired_means",
        formula=MODELS["paired_means"],
        optimizer=None,
        converged=False,
        variance_components={},
        log_likelihood=None,
        attempts=attempts,
        fallbacks=fallbacks,
        warnings=[
            "LMM fallback: every mixed model failed; used method means with "
            "cluster-robust covariance"
        ],
    )
