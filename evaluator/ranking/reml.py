"""Purpose-built REML fit of the nested ranking model, with Satterthwaite degrees of freedom.

Model (lme4 notation): ``y ~ method + (1|subject) + (1|subject:case) + (1|subject:method)``.
Every random effect is nested in a subject, so the covariance V is block diagonal per subject.

* Complete method x case grid within every subject (what the engine always has, missing
  scores being filled with the worst value): each block ``V_s / sigma^2 = I + l_s J +
  l_c (I_n (x) J_k) + l_m (J_n (x) I_k)`` has four eigen-spaces (subject mean, method
  contrasts, case contrasts, interaction) with eigenvalues ``d1 = 1 + l_s k n + l_c k + l_m n``,
  ``dM = 1 + l_m n``, ``dC = 1 + l_c k`` and 1. The REML criterion, the fixed effects and their
  covariance are then closed-form sums over subjects of a few sufficient statistics, O(S k)
  per evaluation, independent of the number of cases.
* Incomplete grids (missing cells): per-subject Woodbury identity with a Cholesky factor of the
  small (1 + n_s + k) random-effect system.

The residual variance is profiled out in closed form; the optimiser works on the log variance
ratios (BFGS), and is polished on the relative standard deviations theta = sigma_j / sigma with
bounds theta >= 0 (L-BFGS-B) so that a component on the boundary is exactly 0; a Nelder-Mead
run from another start is added when the two disagree. The best REML criterion wins and every
run is recorded.

Satterthwaite degrees of freedom follow lmerTest: with varpar = (theta, sigma), A = 2 H^-1
(H the Hessian of the REML deviance at the optimum, a pseudo-inverse over its positive
eigenvalues, as lmerTest does), C(varpar) = sigma^2 (X' V_theta^-1 X)^-1 and, for a contrast
L, ``df = 2 (L C L')^2 / (g' A g)`` with g the gradient of L C L'. Derivatives are central
differences with one Richardson step (lmerTest uses numDeriv on the same scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

#: Names of the three variance ratios, in parameter order.
COMPONENTS: tuple[str, ...] = ("subject", "subject:case", "subject:method")
#: A relative standard deviation below this is reported as a boundary fit (component 0).
BOUNDARY_THETA = 1e-4
LOG2PI = math.log(2.0 * math.pi)


class RemlError(ValueError):
    """The nested REML fit is not possible for these data (e.g. no residual variance)."""


# --------------------------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------------------------


@dataclass
class GridStats:
    """Sufficient statistics of complete per-subject grids (y is k x n, no missing cell)."""

    k: int
    n_s: np.ndarray  # (S,) cases per group
    r: np.ndarray  # (S, k) within-group method means, centred on the grand mean
    ss_c: np.ndarray  # (S,) between-case sum of squares within group
    ss_i: float  # method x case interaction sum of squares (all groups)
    n_obs: int
    offset: float  # grand mean removed before the sums (numerical accuracy)

    @classmethod
    def from_matrix(cls, y: np.ndarray, group: np.ndarray) -> GridStats:
        y = np.asarray(y, dtype=float)
        k, n = y.shape
        offset = float(y.mean())
        yc = y - offset
        labels, inv = np.unique(group, return_inverse=True)
        s = len(labels)
        n_s = np.bincount(inv, minlength=s).astype(float)
        sums = np.zeros((s, k))
        np.add.at(sums, inv, yc.T)
        r = sums / n_s[:, None]
        rbar = r.mean(axis=1)
        case_mean = yc.mean(axis=0)  # (n,)
        ss_c = k * np.bincount(inv, weights=(case_mean - rbar[inv]) ** 2, minlength=s)
        resid = yc - r[inv].T - case_mean[None, :] + rbar[inv][None, :]
        return cls(k, n_s, r, ss_c, float((resid**2).sum()), k * n, offset)

    @property
    def n_groups(self) -> int:
        return len(self.n_s)

    def parts(self, lam: np.ndarray) -> tuple[float, float, float, np.ndarray, np.ndarray]:
        """(log|V|, log|X'V^-1X|, Q, mu, (X'V^-1X)^-1) at variance ratios lam (sigma^2 = 1)."""
        k, n = self.k, self.n_s
        ls, lc, lm = lam
        d1 = 1.0 + ls * k * n + lc * k + lm * n
        dm = 1.0 + lm * n
        dc = 1.0 + lc * k
        rbar = self.r.mean(axis=1)
        dev_r = self.r - rbar[:, None]
        ss1 = k * n * rbar**2
        ss_m = n * (dev_r**2).sum(axis=1)
        logdet_v = np.log(d1).sum() + (k - 1) * np.log(dm).sum() + ((n - 1) * np.log(dc)).sum()
        yvy = (ss1 / d1).sum() + (ss_m / dm).sum() + (self.ss_c / dc).sum() + self.ss_i
        alpha = (n / d1).sum()
        beta = (n / dm).sum()
        u = (n * rbar / d1).sum()
        w = ((n / dm)[:, None] * dev_r).sum(axis=0)
        mu = u / alpha + w / beta
        q = yvy - k * u * u / alpha - (w @ w) / beta
        logdet_a = math.log(alpha) + (k - 1) * math.log(beta)
        ainv = np.full((k, k), 1.0 / (k * alpha)) + (np.eye(k) - 1.0 / k) / beta
        return float(logdet_v), float(logdet_a), float(q), mu + self.offset, ainv


@dataclass
class MaskedStats:
    """Per-subject cross-products for incomplete grids (y with NaN where a cell is missing)."""

    k: int
    blocks: list[dict[str, np.ndarray]]
    xtx: np.ndarray
    xty: np.ndarray
    yty: float
    n_obs: int
    offset: float

    @classmethod
    def from_matrix(cls, y: np.ndarray, group: np.ndarray) -> MaskedStats:
        y = np.asarray(y, dtype=float)
        k, n = y.shape
        obs = np.isfinite(y)
        offset = float(y[obs].mean())
        blocks = []
        xtx = np.zeros((k, k))
        xty = np.zeros(k)
        yty = 0.0
        for g in np.unique(group):
            cols = np.flatnonzero(group == g)
            m_idx, c_loc = np.nonzero(obs[:, cols])
            if m_idx.size == 0:
                continue
            yy = y[m_idx, cols[c_loc]] - offset
            nc = len(cols)
            z = np.zeros((yy.size, 1 + nc + k))
            z[:, 0] = 1.0
            z[np.arange(yy.size), 1 + c_loc] = 1.0
            z[np.arange(yy.size), 1 + nc + m_idx] = 1.0
            x = np.zeros((yy.size, k))
            x[np.arange(yy.size), m_idx] = 1.0
            blocks.append({"ztz": z.T @ z, "ztx": z.T @ x, "zty": z.T @ yy, "nc": np.array(nc)})
            xtx += x.T @ x
            xty += x.T @ yy
            yty += float(yy @ yy)
        return cls(k, blocks, xtx, xty, yty, int(obs.sum()), offset)

    @property
    def n_groups(self) -> int:
        return len(self.blocks)

    def parts(self, lam: np.ndarray) -> tuple[float, float, float, np.ndarray, np.ndarray]:
        theta = np.sqrt(np.clip(lam, 0.0, None))
        logdet_v = 0.0
        a = self.xtx.copy()
        b = self.xty.copy()
        yvy = self.yty
        for blk in self.blocks:
            nc = int(blk["nc"])
            t = np.concatenate([[theta[0]], np.full(nc, theta[1]), np.full(self.k, theta[2])])
            m = np.eye(len(t)) + t[:, None] * blk["ztz"] * t[None, :]
            chol = np.linalg.cholesky(m)
            logdet_v += 2.0 * np.log(np.diag(chol)).sum()
            zx = np.linalg.solve(chol, t[:, None] * blk["ztx"])
            zy = np.linalg.solve(chol, t * blk["zty"])
            a -= zx.T @ zx
            b -= zx.T @ zy
            yvy -= float(zy @ zy)
        ca = np.linalg.cholesky(a)
        ainv = np.linalg.inv(a)
        mu = ainv @ b
        q = yvy - float(b @ mu)
        logdet_a = 2.0 * np.log(np.diag(ca)).sum()
        return float(logdet_v), float(logdet_a), float(q), mu + self.offset, ainv


Stats = GridStats | MaskedStats


def reml_deviance(stats: Stats, lam: np.ndarray, sigma: float | None = None) -> float:
    """REML deviance (-2 log restricted likelihood, lme4's REMLcrit); sigma profiled if None."""
    logdet_v, logdet_a, q, _, _ = stats.parts(lam)
    dof = stats.n_obs - stats.k
    if sigma is None:
        if not q > 0:
            return math.inf
        return dof * (1.0 + LOG2PI + math.log(q / dof)) + logdet_v + logdet_a
    s2 = sigma * sigma
    return dof * (LOG2PI + math.log(s2)) + logdet_v + logdet_a + q / s2


# --------------------------------------------------------------------------------------------
# Fit
# --------------------------------------------------------------------------------------------


@dataclass
class RemlFit:
    """Result of :func:`fit_reml`: method means and everything Satterthwaite needs."""

    stats: Any
    active: tuple[bool, bool, bool]
    lam: np.ndarray  # (3,) variance ratios sigma_j^2 / sigma^2 (0 where inactive)
    sigma2: float
    means: np.ndarray
    cov: np.ndarray
    deviance: float  # REML criterion at the optimum
    optimizer: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    fit_warnings: list[str] = field(default_factory=list)
    boundary: list[str] = field(default_factory=list)
    _sat: tuple | None = field(default=None, repr=False)

    @property
    def log_likelihood(self) -> float:
        """REML log-likelihood as lme4's ``logLik(fit)`` reports it."""
        return -0.5 * self.deviance

    def variance_components(self, names: tuple[str, ...] = COMPONENTS) -> dict[str, float]:
        out = {"residual": float(self.sigma2)}
        for name, on, lam in zip(names, self.active, self.lam, strict=True):
            if on:
                out[name] = float(lam * self.sigma2)
        return out

    # Satterthwaite ------------------------------------------------------------------------
    def _varpar(self) -> np.ndarray:
        theta = np.sqrt(self.lam[list(np.flatnonzero(self.active))])
        return np.concatenate([theta, [math.sqrt(self.sigma2)]])

    def _unpack(self, vp: np.ndarray) -> tuple[np.ndarray, float]:
        lam = np.zeros(3)
        lam[np.flatnonzero(self.active)] = vp[:-1] ** 2
        return lam, float(vp[-1])

    def _dev_vp(self, vp: np.ndarray) -> float:
        lam, sigma = self._unpack(vp)
        return reml_deviance(self.stats, lam, abs(sigma))

    def _cov_vp(self, vp: np.ndarray) -> np.ndarray:
        lam, sigma = self._unpack(vp)
        return sigma * sigma * self.stats.parts(lam)[4]

    def varpar_covariance(self) -> tuple[np.ndarray, list[str]]:
        """Asymptotic covariance of (theta, sigma): 2 H^-1 over H's positive eigenvalues."""
        vp = self._varpar()
        h = _hessian(self._dev_vp, vp)
        evals, evecs = np.linalg.eigh((h + h.T) / 2.0)
        notes = []
        tol = 1e-8
        if (evals < -tol).any():
            notes.append(
                f"Hessian of the REML deviance has {int((evals < -tol).sum())} negative "
                "eigenvalue(s): Satterthwaite df use its positive part only"
            )
        pos = evals > tol
        inv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
        return 2.0 * inv, notes

    def satterthwaite_df(self, L: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Satterthwaite df for every row of L (linear combinations of the method means)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if self._sat is None:
            a_vp, notes = self.varpar_covariance()
            self._sat = (a_vp, _jacobian(self._cov_vp, self._varpar()), notes)  # jac (P, k, k)
        a_vp, jac, notes = self._sat
        var = np.einsum("mi,ij,mj->m", L, self.cov, L)
        grad = np.einsum("mi,pij,mj->mp", L, jac, L)
        denom = np.einsum("mp,pq,mq->m", grad, a_vp, grad)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = 2.0 * var**2 / denom
        df = np.where(np.isfinite(df) & (df > 0), df, np.nan)
        return df, notes


def _steps(x: np.ndarray) -> np.ndarray:
    return 1e-3 * np.maximum(np.abs(x), 0.05)


def _hessian(f, x: np.ndarray) -> np.ndarray:
    """Central-difference Hessian with one Richardson extrapolation step."""

    def central(h: np.ndarray) -> np.ndarray:
        p = len(x)
        out = np.zeros((p, p))
        f0 = f(x)
        for i in range(p):
            ei = np.zeros(p)
            ei[i] = h[i]
            out[i, i] = (f(x + ei) - 2.0 * f0 + f(x - ei)) / h[i] ** 2
            for j in range(i):
                ej = np.zeros(p)
                ej[j] = h[j]
                val = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                    4.0 * h[i] * h[j]
                )
                out[i, j] = out[j, i] = val
        return out

    h = _steps(x)
    return (4.0 * central(h / 2.0) - central(h)) / 3.0


def _jacobian(f, x: np.ndarray) -> np.ndarray:
    """Central-difference derivative of an array-valued f, one Richardson step; (P, ...)."""

    def central(h: np.ndarray) -> np.ndarray:
        out = []
        for i in range(len(x)):
            e = np.zeros(len(x))
            e[i] = h[i]
            out.append((f(x + e) - f(x - e)) / (2.0 * h[i]))
        return np.stack(out)

    h = _steps(x)
    return (4.0 * central(h / 2.0) - central(h)) / 3.0


def _expand(x: np.ndarray, active: np.ndarray) -> np.ndarray:
    lam = np.zeros(3)
    lam[active] = x
    return lam


def fit_reml(
    y: np.ndarray,
    group: np.ndarray,
    active: tuple[bool, bool, bool] = (True, True, True),
) -> RemlFit:
    """REML fit of the nested model on y (k methods x n cases; NaN = missing cell).

    ``group``: subject index of every case. ``active``: which of the (subject, subject:case,
    subject:method) terms are in the model. Raises RemlError when no fit is possible.
    """
    y = np.asarray(y, dtype=float)
    k, n = y.shape
    stats: Stats
    if np.isfinite(y).all():
        stats = GridStats.from_matrix(y, group)
    else:
        stats = MaskedStats.from_matrix(y, group)
    if stats.n_obs - k < 1:
        raise RemlError("no residual degrees of freedom")
    act = np.array(active, dtype=bool)
    n_par = int(act.sum())

    def prof(lam_active: np.ndarray) -> float:
        try:
            return reml_deviance(stats, _expand(lam_active, act))
        except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError):
            return math.inf

    runs: list[dict[str, Any]] = []
    candidates: list[tuple[float, np.ndarray, str]] = []
    fit_warnings: list[str] = []

    def record(name: str, res, lam_active: np.ndarray) -> None:
        dev = prof(lam_active)
        runs.append(
            {
                "optimizer": name,
                "converged": bool(res.success),
                "message": str(res.message)[:200],
                "nfev": int(getattr(res, "nfev", 0)),
                "reml_deviance": dev if math.isfinite(dev) else None,
            }
        )
        if math.isfinite(dev):
            candidates.append((dev, lam_active, name))

    with np.errstate(all="ignore"):
        if n_par == 0:
            lam0 = np.zeros(0)
            dev0 = prof(lam0)
            if not math.isfinite(dev0):
                raise RemlError("REML criterion not finite (no residual variance)")
            candidates.append((dev0, lam0, "none"))
        else:
            # 1. BFGS on the log variance ratios (unconstrained)
            x0 = np.zeros(n_par)
            res = minimize(
                lambda x: prof(np.exp(x)),
                x0,
                method="BFGS",
                jac="3-point",
                options={"gtol": 1e-7, "maxiter": 500},
            )
            lam_bfgs = np.exp(np.clip(res.x, -700, 700))
            record("bfgs", res, lam_bfgs)

            # 2. L-BFGS-B on theta >= 0 from the BFGS point (boundary fits become exact 0)
            def prof_theta(t: np.ndarray) -> float:
                return prof(t * t)

            t0 = np.sqrt(lam_bfgs)
            t0 = np.where(t0 < BOUNDARY_THETA, 0.0, t0)
            t0 = np.where(np.isfinite(t0), np.minimum(t0, 1e3), 1.0)
            res = minimize(
                prof_theta,
                t0,
                method="L-BFGS-B",
                jac="3-point",
                bounds=[(0.0, None)] * n_par,
                options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000},
            )
            record("l-bfgs-b", res, res.x**2)
            # 3. Nelder-Mead on theta from a different start when the two disagree
            devs = [c[0] for c in candidates]
            if len(devs) < 2 or max(devs) - min(devs) > 1e-6:
                res = minimize(
                    lambda t: prof_theta(np.abs(t)),
                    np.full(n_par, 0.5),
                    method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
                )
                record("nelder-mead", res, res.x**2)
    if not candidates:
        raise RemlError("REML criterion not finite at any optimiser's result")
    best_dev, best_lam, best_name = min(candidates, key=lambda c: c[0])
    if n_par and not any(
        r["converged"] and r["reml_deviance"] is not None and r["reml_deviance"] - best_dev <= 1e-3
        for r in runs
    ):
        # Gradient methods often stop at the optimum with "precision loss" / ABNORMAL line
        # searches (finite-difference noise near a flat minimum). A derivative-free polish
        # from the best point either confirms it (converged) or finds a lower criterion.
        with np.errstate(all="ignore"):
            res = minimize(
                lambda t: prof(t * t),
                np.sqrt(best_lam),
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
            )
            record("nelder-mead-polish", res, res.x**2)
        best_dev, best_lam, best_name = min(candidates, key=lambda c: c[0])
    for r in runs:
        if r["reml_deviance"] is not None and r["reml_deviance"] - best_dev > 1e-3:
            fit_warnings.append(
                f"optimiser {r['optimizer']} stopped {r['reml_deviance'] - best_dev:.3g} "
                "above the best REML criterion (kept the best)"
            )
    best_run = next((r for r in runs if r["optimizer"] == best_name), None)
    if best_run is not None and not best_run["converged"]:
        agreeing = [
            r
            for r in runs
            if r["converged"]
            and r["reml_deviance"] is not None
            and r["reml_deviance"] - best_dev <= 1e-3
        ]
        if not agreeing:
            raise RemlError(
                f"no optimiser converged to the best REML criterion ({best_name}: "
                f"{best_run['message']}); the REML surface has no interior optimum"
            )
        fit_warnings.append(f"best optimiser {best_name} reported: {best_run['message']}")
    lam = _expand(best_lam, act)
    theta = np.sqrt(lam)
    boundary = [
        name
        for name, on, t in zip(COMPONENTS, act, theta, strict=True)
        if on and t < BOUNDARY_THETA
    ]
    lam = np.where(theta < BOUNDARY_THETA, 0.0, lam)
    best_dev = reml_deviance(stats, lam)
    logdet_v, logdet_a, q, mu, ainv = stats.parts(lam)
    sigma2 = q / (stats.n_obs - k)
    if not (np.isfinite(sigma2) and sigma2 > 0 and np.all(np.isfinite(mu))):
        raise RemlError("REML fit gave no positive residual variance")
    return RemlFit(
        stats=stats,
        active=tuple(bool(a) for a in act),
        lam=lam,
        sigma2=float(sigma2),
        means=mu,
        cov=sigma2 * ainv,
        deviance=float(best_dev),
        optimizer=best_name,
        runs=runs,
        fit_warnings=fit_warnings,
        boundary=boundary,
    )
