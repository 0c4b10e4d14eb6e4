"""rank_methods: the full statistical ranking of one task and metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy
import statsmodels
from scipy.special import expit, logit
from scipy.stats import t as t_dist

from .bootstrap import rank_summary, subject_bootstrap, tau_summary
from .data import prepare
from .errors import RankingError
from .lmm import TESTS, fit_lmm
from .result import (
    ENGINE_VERSION,
    BootstrapInfo,
    Contrast,
    MethodResult,
    ModelInfo,
    RankingResult,
)
from .schemes import SCHEMES, holm, rank_desc, run_schemes
from .settings import DDF_METHODS, DEFAULT_ALPHA, DEFAULT_DDF, DEFAULT_N_BOOTSTRAP, DEFAULT_SEED

DEFAULT_EPS = 1e-3
#: Metrics whose scores lie in [0, 1]: modelled on the logit scale unless told otherwise.
BOUNDED_METRICS = frozenset({"dsc", "iou", "nsd"})


def metric_settings(
    metric: str, higher_is_better: bool | None = None, bounded: bool | None = None
) -> tuple[bool, bool]:
    """Direction and boundedness of ``metric``: the given values, else the metric's own
    (evaluator.metrics.HIGHER_IS_BETTER, BOUNDED_METRICS), so a caller that passes only a
    task's metric can never rank a lower-is-better metric upside down."""
    from evaluator.metrics import HIGHER_IS_BETTER

    if higher_is_better is None:
        if metric not in HIGHER_IS_BETTER:
            raise RankingError(
                f"direction of metric {metric!r} unknown: pass higher_is_better explicitly"
            )
        higher_is_better = HIGHER_IS_BETTER[metric]
    if bounded is None:
        bounded = metric in BOUNDED_METRICS
    return bool(higher_is_better), bool(bounded)


def _versions() -> dict[str, str]:
    return {
        "engine": ENGINE_VERSION,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "pandas": pd.__version__,
    }


def t_quantile(alpha: float, df) -> np.ndarray:
    """Two-sided critical value at level alpha with df degrees of freedom (inf = normal)."""
    return t_dist.ppf(1 - alpha / 2, np.asarray(df, dtype=float))


def pairwise_contrasts(
    means: np.ndarray, cov: np.ndarray, alpha: float, df: np.ndarray | float | None = None
) -> dict[str, np.ndarray]:
    """All i<j contrasts mean_i - mean_j (an L matrix over the means), t tests, Holm.

    ``df``: degrees of freedom per contrast (np.triu_indices order) or one for all, e.g.
    ``LmmFit.pairwise_df()``; None or inf is the Wald z test.
    """
    k = len(means)
    i, j = np.triu_indices(k, 1)
    est = means[i] - means[j]
    var = cov[i, i] + cov[j, j] - 2.0 * cov[i, j]
    se = np.sqrt(np.clip(var, 0.0, None))
    dfs = np.broadcast_to(np.asarray(np.inf if df is None else df, dtype=float), est.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = est / se
    zero_se = se == 0
    # identical methods (no spread in differences): nothing to test
    z = np.where(zero_se & (est == 0), 0.0, z)
    z = np.where(zero_se & (est != 0), np.copysign(np.inf, est), z)
    with np.errstate(invalid="ignore"):
        p = np.where(np.isnan(z) | np.isnan(dfs), np.nan, 2.0 * t_dist.sf(np.abs(z), dfs))
    q = t_quantile(alpha, dfs)
    return {
        "i": i,
        "j": j,
        "estimate": est,
        "se": se,
        "z": z,
        "df": dfs,
        "p_raw": p,
        "p_holm": holm(p),
        "ci_low": est - q * se,
        "ci_high": est + q * se,
    }


TIER_RULES = ("leader", "adjacent")


def assign_tiers(order: np.ndarray, sig: np.ndarray, rule: str = "leader") -> np.ndarray:
    """Tiers along the ranking (order = best first; sig[a, b] = Holm-significant difference).

    "leader": a method shares the current tier unless it differs significantly from the
    tier's first (best) method, in which case it opens the next tier and leads it.
    "adjacent": compare with the method directly above instead; this chains, so a gradual
    spread of methods with small steps can end up in a single tier.
    """
    tiers = np.zeros(len(order), dtype=int)
    tier, head = 1, None
    for pos, m in enumerate(order):
        ref = head if rule == "leader" else (order[pos - 1] if pos else None)
        if ref is not None and sig[ref, m]:
            tier += 1
            head = m
        if head is None:
            head = m
        tiers[m] = tier
    return tiers


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def rank_methods(
    df: pd.DataFrame,
    *,
    metric: str = "dsc",
    higher_is_better: bool | None = None,
    bounded: bool | None = None,
    missing: str = "worst",
    worst_value: float | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
    eps: float = DEFAULT_EPS,
    bootstrap_scale: str = "model",
    keep_bootstrap_ranks: bool = False,
    tier_rule: str = "leader",
    ddf: str = DEFAULT_DDF,
) -> RankingResult:
    """Rank methods on one metric: LMM + Holm contrasts, challengeR schemes, subject bootstrap.

    Raises RankingError for input that cannot be ranked; degenerate but rankable input
    (one method, one subject, identical scores, missing cases) gives a result with warnings.
    ``higher_is_better`` and ``bounded`` default to the metric's own (:func:`metric_settings`);
    the platform passes the task's primary metric and direction. ``ddf``: degrees of freedom
    of the LMM tests and intervals, "satterthwaite" (default) or "wald".
    """
    higher_is_better, bounded = metric_settings(metric, higher_is_better, bounded)
    if not 0 < alpha < 1:
        raise RankingError("alpha must lie in (0, 1)")
    if bounded and not 0 < eps < 0.5:
        raise RankingError("eps must lie in (0, 0.5)")
    if bootstrap_scale not in ("model", "metric"):
        raise RankingError("bootstrap_scale must be 'model' or 'metric'")
    if ddf not in DDF_METHODS:
        raise RankingError(f"ddf must be one of {DDF_METHODS}")
    if tier_rule not in TIER_RULES:
        raise RankingError(f"tier_rule must be one of {TIER_RULES}")
    if int(n_bootstrap) < 0:
        raise RankingError("n_bootstrap must be >= 0")
    n_bootstrap = int(n_bootstrap)
    data = prepare(
        df,
        metric=metric,
        higher_is_better=higher_is_better,
        bounded=bounded,
        missing=missing,
        worst_value=worst_value,
    )
    warnings = list(data.warnings)
    v = data.values
    k, n = v.shape
    sign = 1.0 if higher_is_better else -1.0

    # model scale
    if bounded:
        n_low = int((v < eps).sum())
        n_high = int((v > 1 - eps).sum())
        y = logit(np.clip(v, eps, 1 - eps))
        if n_low + n_high:
            warnings.append(
                f"{n_low + n_high} score(s) at or within eps={eps:g} of 0 or 1 were clipped "
                "before the logit; LMM estimates and CIs depend on eps for such scores"
            )
        back = expit
    else:
        n_low = n_high = 0
        y = v.copy()

        def back(a):
            return a

    fit = fit_lmm(y, data.case_subject, ddf=ddf)
    warnings.extend(fit.warnings)
    means = fit.means
    se_means = np.sqrt(np.clip(np.diag(fit.cov), 0, None))
    se_means = np.where(np.isfinite(np.diag(fit.cov)), se_means, np.nan)
    df_means = fit.df_means
    with np.errstate(invalid="ignore"):
        q = t_quantile(alpha, df_means)
    n_subj = len(data.subjects)
    if 1 < n_subj < 10 and fit.ddf == "wald":
        warnings.append(
            f"only {n_subj} subjects: Wald z tests and intervals are anti-conservative "
            "(too narrow) with few subjects; use ddf='satterthwaite'"
        )

    lmm_rank = rank_desc(sign * means)
    order = np.lexsort((np.arange(k), lmm_rank))
    con = pairwise_contrasts(means, fit.cov, alpha, df=fit.pairwise_df() if k > 1 else None)
    sig = np.zeros((k, k), dtype=int)
    p_mat = np.full((k, k), np.nan)
    for a, b, e, ph in zip(con["i"], con["j"], con["estimate"], con["p_holm"], strict=True):
        p_mat[a, b] = p_mat[b, a] = ph
        if np.isfinite(ph) and ph < alpha and e != 0:
            better, worse = (a, b) if sign * e > 0 else (b, a)
            sig[better, worse] = 1
            sig[worse, better] = -1
    tiers = assign_tiers(order, sig != 0, tier_rule)

    x = sign * v  # oriented metric scale for the challengeR schemes
    sch = run_schemes(x, alpha)
    boot_x = sign * y if bootstrap_scale == "model" else x
    boot = subject_bootstrap(boot_x, data.case_subject, n_bootstrap, seed)
    rs = rank_summary(boot.ranks, k)
    if n_bootstrap and len(data.subjects) < 2:
        warnings.append("subject bootstrap with one subject: every replicate is identical")

    n_missing = data.n_missing
    methods: list[MethodResult] = []
    for m in order:
        methods.append(
            MethodResult(
                method=data.methods[m],
                rank=int(lmm_rank[m]),
                tier=int(tiers[m]),
                estimate=_f(back(means[m])),
                ci_low=_f(back(means[m] - q[m] * se_means[m])),
                ci_high=_f(back(means[m] + q[m] * se_means[m])),
                estimate_model=_f(means[m]),
                se_model=_f(se_means[m]),
                df=_f(df_means[m]),
                mean=_f(v[m].mean()),
                median=_f(np.median(v[m])),
                sd=_f(v[m].std(ddof=1)) if n > 1 else None,
                n_cases=n,
                n_scored=int(n - n_missing[m]),
                n_missing=int(n_missing[m]),
                scheme_ranks={s: int(sch["ranks"][s][m]) for s in SCHEMES},
                scheme_scores={
                    s: _f(
                        sign * sch["scores"][s][m]
                        if s in ("mean_then_rank", "median_then_rank")
                        else sch["scores"][s][m]
                    )
                    for s in SCHEMES
                },
                boot_rank_median=_f(rs["median"][m]),
                boot_rank_low=None if not np.isfinite(rs["low"][m]) else int(rs["low"][m]),
                boot_rank_high=None if not np.isfinite(rs["high"][m]) else int(rs["high"][m]),
                boot_rank_counts=[int(c) for c in rs["counts"][m]],
            )
        )

    pos = {m: p for p, m in enumerate(order)}
    contrasts: list[Contrast] = []
    for t in np.argsort(
        [
            max(pos[a], pos[b]) * k + min(pos[a], pos[b])
            for a, b in zip(con["i"], con["j"], strict=True)
        ],
        kind="stable",
    ):
        a, b = int(con["i"][t]), int(con["j"][t])
        flip = pos[a] > pos[b]
        s = -1.0 if flip else 1.0
        if flip:
            a, b = b, a
        lo, hi = con["ci_low"][t], con["ci_high"][t]
        significant = bool(sig[a, b] != 0)
        contrasts.append(
            Contrast(
                method_a=data.methods[a],
                method_b=data.methods[b],
                estimate=_f(s * con["estimate"][t]),
                se=_f(con["se"][t]),
                ci_low=_f(-hi if flip else lo),
                ci_high=_f(-lo if flip else hi),
                z=_f(s * con["z"][t]),
                p_raw=_f(con["p_raw"][t]),
                p_holm=_f(con["p_holm"][t]),
                significant=significant,
                better=data.methods[a if sig[a, b] == 1 else b] if significant else None,
                df=_f(con["df"][t]),
            )
        )

    ix = np.ix_(order, order)
    edges = np.linspace(-1, 1, 21)
    finite_tau = boot.tau[np.isfinite(boot.tau)]
    hist = np.histogram(finite_tau, bins=edges)[0] if finite_tau.size else np.zeros(20, int)
    result = RankingResult(
        engine_version=ENGINE_VERSION,
        versions=_versions(),
        settings={
            "metric": metric,
            "higher_is_better": bool(higher_is_better),
            "bounded": bool(bounded),
            "missing": missing,
            "worst_value": data.worst_value,
            "n_bootstrap": n_bootstrap,
            "seed": int(seed),
            "alpha": float(alpha),
            "eps": float(eps) if bounded else None,
            "bootstrap_scale": bootstrap_scale,
            "p_adjust": "holm",
            "ties": "min",
            "tier_rule": tier_rule,
            "ci_level": 1 - float(alpha),
            "ddf": ddf,
        },
        metric=metric,
        higher_is_better=bool(higher_is_better),
        n_methods=k,
        n_cases=n,
        n_subjects=len(data.subjects),
        n_missing=int(n_missing.sum()),
        methods=methods,
        contrasts=contrasts,
        significance=sig[ix].tolist(),
        p_holm_matrix=p_mat[ix].tolist(),
        wilcoxon_p_holm=sch["wilcoxon_p_holm"][ix].tolist(),
        model=ModelInfo(
            model=fit.model,
            formula=fit.formula,
            optimizer=fit.optimizer,
            converged=fit.converged,
            reml=fit.model in ("full", "no_sm", "no_case", "case_only"),
            transform="logit" if bounded else "identity",
            eps=float(eps) if bounded else None,
            n_clipped_low=n_low,
            n_clipped_high=n_high,
            variance_components=fit.variance_components,
            log_likelihood=fit.log_likelihood,
            attempts=fit.attempts,
            fallbacks=fit.fallbacks,
            test=TESTS[fit.ddf],
            ddf=fit.ddf,
            fit_warnings=list(fit.fit_warnings),
            fallback_reason=fit.fallback_reason,
        ),
        bootstrap=BootstrapInfo(
            n_bootstrap=n_bootstrap,
            seed=int(seed),
            scale=bootstrap_scale,
            resampling="subjects with replacement (cluster bootstrap); mean-then-rank inside",
            kendall_tau=tau_summary(boot.tau),
            tau_histogram={"edges": edges.tolist(), "counts": [int(c) for c in hist]},
            full_ranks={data.methods[m]: int(boot.full_ranks[m]) for m in range(k)},
            ranks=boot.ranks[:, order].tolist() if keep_bootstrap_ranks else None,
        ),
        warnings=warnings,
    )
    # JSON-normalise once so that a fresh result equals its round trip
    return RankingResult.from_dict(result.to_dict())
