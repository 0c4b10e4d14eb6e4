"""The ranking settings a task may choose, and the one set of defaults.

Every caller of the ranking engine (the engine's own keyword defaults, the platform's ranking
snapshots, the demo) takes its defaults from here, so a change of default is made once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .errors import RankingError

#: Subject-bootstrap replicates (0 switches the bootstrap off).
DEFAULT_N_BOOTSTRAP = 1000
#: Significance level of the pairwise tests; confidence intervals are at 1 - alpha.
DEFAULT_ALPHA = 0.05
#: Seed of the bootstrap's random generator (a ranking is reproducible bit for bit).
DEFAULT_SEED = 0
#: Degrees of freedom of the LMM tests and intervals: "satterthwaite" (lmerTest's default;
#: needed because test sets have few subjects) or "wald" (normal reference, z).
DEFAULT_DDF = "satterthwaite"
DDF_METHODS: tuple[str, ...] = ("satterthwaite", "wald")

RANKING_KEYS: tuple[str, ...] = ("n_bootstrap", "alpha", "seed")


def _is_int(value: Any) -> bool:
    # bool is an int subclass, and a JSON 1000.0 is what a spreadsheet export may write
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def ranking_problems(n_bootstrap: Any, alpha: Any, seed: Any) -> list[str]:
    """Every problem of these settings in plain words (empty list: valid)."""
    problems: list[str] = []
    if not _is_int(n_bootstrap) or n_bootstrap < 0:
        problems.append(f"n_bootstrap must be a whole number >= 0, got {n_bootstrap!r}")
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float)
        or not math.isfinite(alpha)
        or not 0 < alpha < 1
    ):
        problems.append(f"alpha must lie in (0, 1), got {alpha!r}")
    if not _is_int(seed) or seed < 0:
        problems.append(f"seed must be a whole number >= 0, got {seed!r}")
    return problems


class RankingSettingsError(RankingError):
    """Invalid ranking settings; ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class RankingSettings:
    """n_bootstrap, alpha and seed of a task's ranking, validated on construction."""

    n_bootstrap: int = DEFAULT_N_BOOTSTRAP
    alpha: float = DEFAULT_ALPHA
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        problems = ranking_problems(self.n_bootstrap, self.alpha, self.seed)
        if problems:
            raise RankingSettingsError(problems)
        object.__setattr__(self, "n_bootstrap", int(self.n_bootstrap))
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "seed", int(self.seed))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RankingSettings:
        """Settings from a JSON object; missing keys take the defaults, unknown keys (typos such
        as ``n_boostrap``) are refused instead of being silently ignored."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise RankingSettingsError(
                [f"ranking settings must be an object with keys {list(RANKING_KEYS)}"]
            )
        unknown = sorted(str(k) for k in data if k not in RANKING_KEYS)
        problems = [
            f"unknown ranking setting {k!r} (known: {', '.join(RANKING_KEYS)})" for k in unknown
        ]
        values = {k: data[k] for k in RANKING_KEYS if k in data}
        full = {**asdict(cls()), **values}
        problems += ranking_problems(full["n_bootstrap"], full["alpha"], full["seed"])
        if problems:
            raise RankingSettingsError(problems)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
