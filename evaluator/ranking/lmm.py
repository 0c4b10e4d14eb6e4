"""Linear mixed model for case-level scores, fitted robustly with recorded fallbacks.

Model (lme4 notation): y ~ method + (1|subject) + (1|subject:case) + (1|subject:method),
fitted by REML with the purpose-built nested fit of :mod:`.reml` (closed form per subject,
several optimisers, Satterthwaite degrees of freedom as lmerTest). statsmodels MixedLM is
kept only as the fallback when that fit fails; its design is built directly as numpy arrays
(equivalent to the formula below) because patsy per-group evaluation is slow and resolves
names in the caller's namespace. When no mixed model can be fitted, method means with a
cluster-robust covariance are used, and the reason is recorded.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

from .reml import RemlError, RemlFit, fit_reml
from .settings import DDF_METHODS, DEFAULT_DDF

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
#: Optimisers of the statsmodels fallback, in order (BFGS first: L-BFGS stopped short of the
#: REML optimum in 3 of 40 simulated datasets).
OPTIMISERS: tuple[str, ...] = ("bfgs", "lbfgs", "cg")
#: Random-effect terms (subject, subject:case, subject:method) of each model of the ladder.
ACTIVE: dict[str, tuple[bool, bool, bool]] = {
    "full": (True, True, True),
    "no_sm": (True, True, False),
    "no_case": (True, False, False),
    "case_only": (True, False, False),
}
TESTS: dict[str, str] = {
    "satterthwaite": "t tests and t intervals with Satterthwaite degrees of freedom (as lmerTest)",
    "wald": "Wald z (normal reference, no small-sample df correction)",
    "cluster": "t with n_clusters - 1 df on a cluster-robust (sandwich) covariance",
    "none": "no tests",
}
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
    #: how the degrees of freedom are obtained: "satterthwaite", "wald", "cluster" or "none"
    ddf: str = "wald"
    #: optimiser and convergence notes of the accepted fit (runs that stopped short, boundary)
    fit_warnings: list[str] = field(default_factory=list)
    #: why the primary model (the full nested REML fit) was not used; None when it was
    fallback_reason: str | None = None
    #: df for rows of L over the method means (set by fit_lmm)
    df_function: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    def contrast_df(self, L: np.ndarray) -> np.ndarray:
        """Degrees of freedom of every row of L (linear combinations of the method means);
        inf (normal reference) for Wald z and where no df apply (no test possible)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if self.df_function is None:
            return np.full(L.shape[0], np.inf)
        return self.df_function(L)

    @property
    def df_means(self) -> np.ndarray:
        """Degrees of freedom of each method mean."""
        return self.contrast_df(np.eye(len(self.means)))

    def pairwise_df(self) -> np.ndarray:
        """Degrees of freedom of every i<j contrast, in np.triu_indices order."""
        k = len(self.means)
        i, j = np.triu_indices(k, 1)
        L = np.zeros((len(i), k))
        L[np.arange(len(i)), i] = 1.0
        L[np.arange(len(i)), j] = -1.0
        return self.contrast_df(L)


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


def _sat_df_function(rf: RemlFit, n_groups: int, notes: list[str]):
    """df(L) from a REML fit; where Satterthwaite is undefined, n_groups - 1 (noted)."""

    def df_fn(L: np.ndarray) -> np.ndarray:
        df, msgs = rf.satterthwaite_df(L)
        for m in msgs:
            if m not in notes:
                notes.append(m)
        bad = ~np.isfinite(df)
        if bad.any():
            msg = (
                "Satterthwaite df undefined for some estimates (flat REML surface): "
                f"used n_groups - 1 = {n_groups - 1}"
            )
            if msg not in notes:
                notes.append(msg)
            df = np.where(bad, max(n_groups - 1, 1), df)
        return df

    return df_fn


def _cluster_df_function(n_clusters: int):
    def df_fn(L: np.ndarray) -> np.ndarray:
        return np.full(np.atleast_2d(L).shape[0], float(max(n_clusters - 1, 1)))

    return df_fn


def _groups(case_subject: np.ndarray, model: str) -> np.ndarray:
    return np.arange(len(case_subject)) if model == "case_only" else np.asarray(case_subject)


def _vc_names(model: str) -> tuple[str, str, str]:
    return (
        ("case", "", "") if model == "case_only" else ("subject", "subject:case", "subject:method")
    )


def fit_lmm(y: np.ndarray, case_subject: np.ndarray, ddf: str = DEFAULT_DDF) -> LmmFit:
    """Fit the ladder of models; the first acceptable fit wins, every try is recorded.

    ``ddf``: "satterthwaite" (default, lmerTest's small-sample degrees of freedom) or "wald"
    (normal reference). The fallback of method means uses n_clusters - 1 df either way.
    """
    if ddf not in DDF_METHODS:
        raise ValueError(f"ddf must be one of {DDF_METHODS}, got {ddf!r}")
    with blas_single_thread():
        fit = _fit_lmm(y, case_subject, ddf)
    if fit.df_function is not None:
        fit.df_means  # noqa: B018 - computes and caches the df, collecting their notes
    return fit


def _nested(y, case_subject, model: str, ddf: str) -> tuple[dict, LmmFit | None]:
    """The purpose-built nested REML fit (closed form per subject)."""
    groups = _groups(case_subject, model)
    attempt: dict[str, Any] = {"model": model, "optimizer": "nested REML"}
    try:
        rf = fit_reml(y, groups, ACTIVE[model])
    except (RemlError, np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        attempt.update(outcome="error", error=f"{type(exc).__name__}: {exc}"[:300])
        return attempt, None
    attempt.update(
        optimizer=f"nested REML ({rf.optimizer})",
        outcome="accepted",
        converged=True,
        runs=rf.runs,
        warnings=list(rf.fit_warnings),
    )
    ev = np.linalg.eigvalsh(rf.cov)
    if not (np.all(np.isfinite(rf.cov)) and ev.min() > 0):
        attempt.update(outcome="rejected", error="covariance of estimates not positive definite")
        return attempt, None
    names = _vc_names(model)
    vcomp = rf.variance_components(names)
    notes = list(rf.fit_warnings)
    warn = []
    if rf.boundary:
        shown = [names[("subject", "subject:case", "subject:method").index(b)] for b in rf.boundary]
        note = f"variance component(s) estimated at the boundary 0: {', '.join(shown)}"
        notes.append(note)
        warn.append(f"LMM: {note}")
    fit = LmmFit(
        means=rf.means,
        cov=rf.cov,
        model=model,
        formula=MODELS[model],
        optimizer=f"nested REML ({rf.optimizer})",
        converged=True,
        variance_components=vcomp,
        log_likelihood=rf.log_likelihood,
        warnings=warn,
        ddf=ddf,
        fit_warnings=notes,
    )
    if ddf == "satterthwaite":
        fit.df_function = _sat_df_function(rf, len(np.unique(groups)), fit.fit_warnings)
    return attempt, fit


def _statsmodels_df(fit: LmmFit, y, case_subject, ddf: str) -> None:
    """Satterthwaite df at the statsmodels estimates (same nested model, same formulas)."""
    if ddf != "satterthwaite":
        return
    from .reml import GridStats

    groups = _groups(case_subject, fit.model)
    names = _vc_names(fit.model)
    s2 = fit.variance_components.get("residual") or 0.0
    if not s2 > 0:
        fit.df_function = _cluster_df_function(len(np.unique(groups)))
        fit.fit_warnings.append("no residual variance: df = n_groups - 1")
        return
    active = ACTIVE[fit.model]
    lam = np.array(
        [
            (fit.variance_components.get(nm) or 0.0) / s2 if on else 0.0
            for nm, on in zip(names, active, strict=True)
        ]
    )
    stats = GridStats.from_matrix(y, groups)
    rf = RemlFit(
        stats=stats,
        active=active,
        lam=lam,
        sigma2=s2,
        means=fit.means,
        cov=s2 * stats.parts(lam)[4],
        deviance=np.nan,
        optimizer=str(fit.optimizer),
    )
    fit.df_function = _sat_df_function(rf, len(np.unique(groups)), fit.fit_warnings)


def _fit_lmm(y: np.ndarray, case_subject: np.ndarray, ddf: str) -> LmmFit:
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
            ddf="none",
            fallback_reason="every method has the same score on every case: nothing to fit",
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
            ddf="none",
            fallback_reason="only one case: no replication to estimate uncertainty",
        )
    if n_subj >= 2:
        primary = "full" if k > 1 else "no_sm"
        ladder = (["full"] if k > 1 else []) + ["no_sm", "no_case"]
    else:
        primary = "case_only"
        ladder = ["case_only"]
    attempts: list[dict[str, Any]] = []
    fallbacks: list[str] = []
    attempt, fit = _nested(y, case_subject, primary, ddf)
    attempts.append(attempt)
    if fit is not None:
        fit.attempts = attempts
        return fit
    fallbacks.append(f"{primary}/nested REML: {attempt.get('error', 'failed')}")
    for model in ladder:
        for opt in OPTIMISERS:
            attempt, fit = _try_fit(y, case_subject, model, opt)
            attempts.append(attempt)
            if fit is not None:
                fit.attempts = attempts
                fit.fallbacks = fallbacks
                fit.ddf = ddf
                fit.fallback_reason = fallbacks[0]
                _statsmodels_df(fit, y, case_subject, ddf)
                fit.warnings.append(
                    f"LMM fallback: used model {model!r} with statsmodels optimiser {opt!r} "
                    f"after {len(attempts) - 1} failed attempt(s); first reason: {fallbacks[0]}"
                )
                return fit
            fallbacks.append(f"{model}/{opt}: {attempt.get('error', 'failed')}")
    means, cov = paired_means(y, case_subject)
    n_clusters = n_subj if n_subj > 1 else n
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
            f"cluster-robust covariance and t with {n_clusters - 1} df "
            f"(first reason: {fallbacks[0]})"
        ],
        ddf="cluster",
        fallback_reason="every mixed model failed: " + fallbacks[0],
        df_function=_cluster_df_function(n_clusters),
    )
