"""Small deterministic datasets for the lme4/lmerTest cross-check of the ranking model.

Writes one CSV per dataset (columns method, case, subject, y; y on the model scale) to
tests/evaluator/ranking/data/lme4/. scripts/reference/lme4_ranking.R then fits each with lme4
+ lmerTest and writes tests/evaluator/ranking/data/lme4_expected.json, which
tests/evaluator/ranking/test_lme4_reference.py compares with the engine's own REML fit
(no R needed in the tests).

Regenerate (from the repository root; R with lme4, lmerTest and jsonlite installed):

    .venv/bin/python scripts/reference/lme4_datasets.py
    Rscript scripts/reference/lme4_ranking.R

The datasets are deterministic (fixed seeds): rerunning rewrites the same files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "tests" / "evaluator" / "ranking" / "data" / "lme4"

#: name -> (methods, cases per subject, seed, sd (subject, case, subject:method, residual),
#: method effects, number of missing cells)
DATASETS: dict[str, dict] = {
    "balanced_6subj": dict(k=4, cases=[3] * 6, seed=1, sd=(0.5, 0.5, 0.3, 0.5)),
    "balanced_5subj": dict(
        k=3, cases=[4] * 5, seed=2, sd=(0.4, 0.3, 0.3, 0.4), effects=[0.0, 0.4, 0.9]
    ),
    "unbalanced_5subj": dict(k=5, cases=[2, 3, 4, 2, 5], seed=3, sd=(0.5, 0.4, 0.25, 0.5)),
    "unbalanced_6subj": dict(
        k=6,
        cases=[1, 2, 3, 2, 4, 2],
        seed=4,
        sd=(0.6, 0.3, 0.2, 0.4),
        effects=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
    ),
    "boundary_6subj": dict(k=4, cases=[3] * 6, seed=5, sd=(0.5, 0.5, 0.0, 0.5)),
    "missing_cells_6subj": dict(
        k=4, cases=[3, 3, 4, 3, 2, 3], seed=6, sd=(0.5, 0.4, 0.3, 0.5), missing=6
    ),
    "larger_10subj": dict(
        k=5,
        cases=[5] * 10,
        seed=7,
        sd=(0.8, 0.6, 0.3, 0.7),
        mu=1.5,
        effects=[0.0, 0.2, 0.3, -0.4, 0.1],
    ),
}


def make(
    k: int,
    cases: list[int],
    seed: int,
    sd: tuple[float, float, float, float],
    effects: list[float] | None = None,
    missing: int = 0,
    mu: float = 1.0,
):
    """(k, n) scores on the model scale (NaN = missing cell) and the subject of every case."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(len(cases)), cases)
    n, s = subj.size, len(cases)
    eff = np.zeros(k) if effects is None else np.asarray(effects, dtype=float)
    y = (
        mu
        + eff[:, None]
        + rng.normal(0, sd[0], s)[subj][None, :]
        + rng.normal(0, sd[1], n)[None, :]
        + rng.normal(0, sd[2], (s, k))[subj].T
        + rng.normal(0, sd[3], (k, n))
    )
    if missing:
        cells = rng.choice(k * n, size=missing, replace=False)
        y.ravel()[cells] = np.nan
    return np.round(y, 6), subj


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, spec in DATASETS.items():
        y, subj = make(**spec)
        with open(OUT / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["method", "case", "subject", "y"])
            for m in range(y.shape[0]):
                for c in range(y.shape[1]):
                    if np.isfinite(y[m, c]):
                        w.writerow([f"m{m}", f"c{c:03d}", f"s{subj[c]:02d}", f"{y[m, c]:.6f}"])
        print(f"wrote {OUT / name}.csv")


if __name__ == "__main__":
    main()
