"""Validate the long case-level table and turn it into a complete method x case matrix.

Missing (method, case) pairs are made explicit first (challengeR convention), then either
filled with the worst value or rejected, so that every later stage sees complete data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import RankingError

MISSING_POLICIES = ("worst", "error")


@dataclass
class PreparedData:
    """Complete, validated data; rows of ``values`` follow ``methods``, columns ``cases``."""

    methods: list[str]
    cases: list[str]
    subjects: list[str]
    case_subject: np.ndarray  # subject index of every case
    values: np.ndarray  # (k, n) metric scale, missing already filled
    observed: np.ndarray  # (k, n) bool, True where a finite score was submitted
    worst_value: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_missing(self) -> np.ndarray:
        return (~self.observed).sum(axis=1)


def prepare(
    df: pd.DataFrame,
    *,
    metric: str,
    higher_is_better: bool,
    bounded: bool,
    missing: str,
    worst_value: float | None,
) -> PreparedData:
    """Check the table and build the complete matrix; raise RankingError on bad input."""
    if not isinstance(df, pd.DataFrame):
        raise RankingError("input must be a pandas DataFrame (long table)")
    if missing not in MISSING_POLICIES:
        raise RankingError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    needed = ["method", "case", "subject", metric]
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise RankingError(f"input table lacks column(s) {absent}; needs {needed}")
    if len(df) == 0:
        raise RankingError("input table is empty")
    tab = df[needed].copy()
    for col in ("method", "case", "subject"):
        if tab[col].isna().any():
            raise RankingError(f"column {col!r} has empty values")
        tab[col] = tab[col].astype(str)
    try:
        vals = pd.to_numeric(tab[metric], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise RankingError(f"metric column {metric!r} is not numeric: {exc}") from None
    tab[metric] = vals
    warnings: list[str] = []

    dup = tab.duplicated(["method", "case"], keep=False)
    if dup.any():
        ex = tab.loc[dup, ["method", "case"]].iloc[0].tolist()
        raise RankingError(
            f"{int(dup.sum())} rows share a (method, case) pair, e.g. {ex}; "
            "expected one case-level score per method and case"
        )
    subj_per_case = tab.groupby("case")["subject"].nunique()
    bad = subj_per_case[subj_per_case > 1]
    if len(bad):
        raise RankingError(
            f"{len(bad)} case(s) belong to several subjects, e.g. {bad.index[0]!r}; "
            "cases must be nested in subjects"
        )

    finite = np.isfinite(tab[metric].to_numpy())
    n_nonfinite = int((~finite).sum())
    if n_nonfinite:
        warnings.append(f"{n_nonfinite} score(s) were NaN or infinite and were treated as missing")
    if bounded:
        v = tab.loc[finite, metric]
        if ((v < 0) | (v > 1)).any():
            raise RankingError(
                f"bounded metric {metric!r} has values outside [0, 1] "
                f"(min {v.min():.6g}, max {v.max():.6g}); pass bounded=False"
            )

    methods = sorted(tab["method"].unique())
    cases = sorted(tab["case"].unique())
    case_to_subj = tab.drop_duplicates("case").set_index("case")["subject"]
    subjects = sorted(case_to_subj.unique())
    s_index = {s: i for i, s in enumerate(subjects)}
    case_subject = np.array([s_index[case_to_subj[c]] for c in cases], dtype=np.intp)

    m_idx = pd.Categorical(tab["method"], categories=methods).codes
    c_idx = pd.Categorical(tab["case"], categories=cases).codes
    values = np.full((len(methods), len(cases)), np.nan)
    values[m_idx, c_idx] = tab[metric].to_numpy()
    observed = np.isfinite(values)
    n_missing = int((~observed).sum())

    if not observed.any():
        raise RankingError(f"no finite {metric!r} score in the input")
    if n_missing and missing == "error":
        raise RankingError(
            f"{n_missing} (method, case) pair(s) have no finite score and "
            "missing='error'; pass missing='worst' to score them with the worst value"
        )
    if n_missing:
        if worst_value is None:
            if bounded:
                worst_value = 0.0 if higher_is_better else 1.0
            else:
                obs = values[observed]
                worst_value = float(obs.min() if higher_is_better else obs.max())
                warnings.append(
                    f"worst_value not given for an unbounded metric; missing scores set "
                    f"to the worst observed value {worst_value:.6g}"
                )
        elif not np.isfinite(worst_value):
            raise RankingError("worst_value must be a finite number")
        elif bounded and not 0 <= worst_value <= 1:
            raise RankingError("worst_value must lie in [0, 1] for a bounded metric")
        values = np.where(observed, values, float(worst_value))
        per_method = (~observed).sum(axis=1)
        detail = ", ".join(f"{m}: {int(n)}" for m, n in zip(methods, per_method, strict=True) if n)
        warnings.append(
            f"{n_missing} missing (method, case) pair(s) scored with the worst value "
            f"{float(worst_value):.6g} ({detail})"
        )
        empty = ~observed.any(axis=0)
        if empty.any():
            warnings.append(
                f"{int(empty.sum())} case(s) have no score from any method; they add "
                "no information about differences"
            )
        dead = ~observed.any(axis=1)
        for m in np.asarray(methods)[dead]:
            warnings.append(f"method {m!r} has no finite score; all its cases are worst value")

    if len(methods) == 1:
        warnings.append("only one method: no comparisons, rank 1 by definition")
    if len(subjects) == 1:
        warnings.append(
            "only one subject: uncertainty reflects case-to-case variation only and does "
            "not generalise to new subjects; the subject bootstrap is degenerate"
        )
    elif len(subjects) < 10:
        warnings.append(
            f"only {len(subjects)} subjects: intervals are wide and tests have little power; "
            "conclusions about new subjects rest on very few"
        )
    return PreparedData(
        methods=list(methods),
        cases=list(cases),
        subjects=list(subjects),
        case_subject=case_subject,
        values=values,
        observed=observed,
        worst_value=None if worst_value is None else float(worst_value),
        warnings=warnings,
    )
