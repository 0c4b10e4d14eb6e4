"""Simulated case-level scores with the nesting of real data (cases within subjects)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit


def simulate_matrix(
    k: int = 4,
    n_subjects: int = 10,
    cases_per_subject: int = 3,
    seed: int = 0,
    effects=None,
    sd_subject: float = 0.5,
    sd_case: float = 0.5,
    sd_subject_method: float = 0.3,
    sd_resid: float = 0.5,
    mu: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the model scale, (k, n_cases), and the subject index of each case."""
    rng = np.random.default_rng(seed)
    eff = np.zeros(k) if effects is None else np.asarray(effects, dtype=float)
    n = n_subjects * cases_per_subject
    subj = np.repeat(np.arange(n_subjects), cases_per_subject)
    y = (
        mu
        + eff[:, None]
        + rng.normal(0, sd_subject, n_subjects)[subj][None, :]
        + rng.normal(0, sd_case, n)[None, :]
        + rng.normal(0, sd_subject_method, (n_subjects, k))[subj].T
        + rng.normal(0, sd_resid, (k, n))
    )
    return y, subj


def to_frame(values: np.ndarray, subj: np.ndarray, metric: str = "dsc") -> pd.DataFrame:
    k, n = values.shape
    m, c = np.meshgrid(np.arange(k), np.arange(n), indexing="ij")
    return pd.DataFrame(
        {
            "method": [f"method_{i}" for i in m.ravel()],
            "case": [f"case_{i:04d}" for i in c.ravel()],
            "subject": [f"subject_{i:03d}" for i in subj[c.ravel()]],
            metric: values.ravel(),
        }
    )


def simulate(bounded: bool = True, **kw) -> pd.DataFrame:
    y, subj = simulate_matrix(**kw)
    return to_frame(expit(y) if bounded else y, subj)
