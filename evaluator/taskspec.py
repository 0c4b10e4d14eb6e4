"""TaskSpec: the validated settings of one species-transfer task, as the evaluator needs them.

The platform stores a task's settings as editable fields; a typo there (an unknown metric, one
NSD tolerance too few) would otherwise surface only while a participant's submission is being
scored. Building a TaskSpec checks every rule at once and names each problem per field, so the
organizer sees it when saving and the pipeline can refuse to evaluate against a broken task
without charging the participant. Pure Python: the starter kit and notebooks use it as well.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from datasets.manifest import SPECIES, TISSUE_STATES
from datasets.spectral import PREPROCESSINGS, preprocessed_channels
from evaluator.metrics import (
    CASE_METRICS,
    DEFAULT_NSD_TOLERANCE,
    DEFAULT_SCORED_CLASSES,
    HIGHER_IS_BETTER,
    SCORED_CLASSES,
)
from evaluator.ranking.settings import RankingSettings, RankingSettingsError

#: Label maps cross the sandbox wall as uint8, so class indices and the ignore index fit there.
MAX_CLASSES = 255
#: Longest class name the platform stores per (case, label) score.
MAX_LABEL_NAME = 50


class TaskSpecError(ValueError):
    """A task's settings are invalid; ``errors`` maps each field name to its problems."""

    def __init__(self, errors: Mapping[str, Iterable[str]]) -> None:
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in errors.items() if v}
        lines = [f"{name}: {msg}" for name, msgs in self.errors.items() for msg in msgs]
        super().__init__("invalid task settings: " + "; ".join(lines))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    """A JSON array (list or tuple); a string is a sequence but never a list of names."""
    return isinstance(value, list | tuple)


def _vocabulary_problems(
    value: Any, allowed: tuple[str, ...], what: str, field_name: str
) -> list[str]:
    if not _is_list(value):
        return [f"{field_name} must be a list of {what} names, got {value!r}"]
    if not value:
        return [f"choose at least one {what} (one of {', '.join(allowed)})"]
    unknown = list(dict.fromkeys(repr(v) for v in value if v not in allowed))
    problems = [f"unknown {what} {v}; use one of {', '.join(allowed)}" for v in unknown]
    dups = sorted({str(v) for v in value if value.count(v) > 1})
    if dups:
        problems.append(f"{what} listed twice: {', '.join(dups)}")
    return problems


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """Settings of one task; constructing one validates it (:class:`TaskSpecError`).

    ``nsd_tolerances`` given empty takes :data:`DEFAULT_NSD_TOLERANCE` for every class; an
    empty ``scored_labels`` scores every class. ``scored_classes`` says which classes an image
    is scored on: ``reference`` (those in its reference, htc's and the study's convention) or
    ``union`` (reference or prediction: a class only predicted counts with the worst values).
    """

    label_names: tuple[str, ...] = ()
    ignore_index: int = 255
    preprocessing: str = "l1"
    nsd_tolerances: tuple[float, ...] = ()
    scored_labels: tuple[str, ...] = ()
    primary_metric: str = "dsc"
    scored_classes: str = DEFAULT_SCORED_CLASSES
    ranking: RankingSettings = field(default_factory=RankingSettings)
    source_species: tuple[str, ...] = ()
    source_states: tuple[str, ...] = ()
    target_species: tuple[str, ...] = ()
    target_states: tuple[str, ...] = ()
    #: Input channels the model receives; follows ``preprocessing`` (None: derived from it).
    n_channels: int | None = None

    def __post_init__(self) -> None:
        if self.n_channels is None and self.preprocessing in PREPROCESSINGS:
            object.__setattr__(self, "n_channels", preprocessed_channels(self.preprocessing))
        errors = self.problems()
        if errors:
            raise TaskSpecError(errors)
        tolerances = self.nsd_tolerances or (DEFAULT_NSD_TOLERANCE,) * len(self.label_names)
        for name, value in (
            ("label_names", tuple(self.label_names)),
            ("nsd_tolerances", tuple(float(t) for t in tolerances)),
            ("scored_labels", tuple(self.scored_labels)),
            ("source_species", tuple(self.source_species)),
            ("source_states", tuple(self.source_states)),
            ("target_species", tuple(self.target_species)),
            ("target_states", tuple(self.target_states)),
        ):
            object.__setattr__(self, name, value)

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """A spec from JSON-like settings (missing keys take the defaults; ``None`` counts as
        missing). ``ranking`` may be a RankingSettings or its JSON object. Every problem,
        including unknown keys, is reported at once."""
        known = {f.name for f in fields(cls)}
        errors: dict[str, list[str]] = {
            str(k): [f"unknown task setting {k!r}"] for k in data if k not in known
        }
        values = {k: v for k, v in data.items() if k in known and v is not None}
        ranking = values.get("ranking")
        if ranking is not None and not isinstance(ranking, RankingSettings):
            try:
                values["ranking"] = RankingSettings.from_dict(ranking)
            except RankingSettingsError as exc:
                errors["ranking"] = exc.problems
                values.pop("ranking")
        try:
            spec = cls(**values)
        except TaskSpecError as exc:
            errors = {**exc.errors, **errors}
            raise TaskSpecError(errors) from None
        if errors:
            raise TaskSpecError(errors)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings; ``TaskSpec.from_dict(spec.to_dict()) == spec``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, RankingSettings):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    # --- validation ----------------------------------------------------------------------------
    def problems(self) -> dict[str, list[str]]:
        """Every problem of these settings by field name (empty: valid)."""
        errors: dict[str, list[str]] = {}

        def add(name: str, msgs: Iterable[str]) -> None:
            msgs = list(msgs)
            if msgs:
                errors.setdefault(name, []).extend(msgs)

        names_ok = self._check_label_names(add)
        n = len(self.label_names) if names_ok else None
        if not _is_int(self.ignore_index) or not 0 <= self.ignore_index <= 255:
            add(
                "ignore_index",
                [f"ignore_index must be an integer in 0..255, got {self.ignore_index!r}"],
            )
        elif n is not None and self.ignore_index < n:
            add(
                "ignore_index",
                [
                    f"ignore_index {self.ignore_index} collides with the class of that index "
                    f"({self.label_names[self.ignore_index]!r}); use a value >= {n}, e.g. 255"
                ],
            )
        if self.preprocessing not in PREPROCESSINGS:
            add(
                "preprocessing",
                [
                    f"unknown preprocessing {self.preprocessing!r}; use one of {', '.join(PREPROCESSINGS)}"
                ],
            )
        self._check_tolerances(add, n)
        self._check_scored_labels(add, names_ok)
        if self.primary_metric not in CASE_METRICS:
            add(
                "primary_metric",
                [
                    f"primary metric {self.primary_metric!r} is not one the platform stores per "
                    f"case; use one of {', '.join(CASE_METRICS)}"
                ],
            )
        if self.scored_classes not in SCORED_CLASSES:
            add(
                "scored_classes",
                [
                    f"scored_classes {self.scored_classes!r} is unknown; use one of "
                    f"{', '.join(SCORED_CLASSES)}"
                ],
            )
        if not isinstance(self.ranking, RankingSettings):
            add("ranking", [f"ranking must be RankingSettings, got {type(self.ranking).__name__}"])
        add(
            "source_species",
            _vocabulary_problems(self.source_species, SPECIES, "species", "source_species"),
        )
        add(
            "source_states",
            _vocabulary_problems(
                self.source_states, TISSUE_STATES, "tissue state", "source_states"
            ),
        )
        add(
            "target_species",
            _vocabulary_problems(self.target_species, SPECIES, "species", "target_species"),
        )
        add(
            "target_states",
            _vocabulary_problems(
                self.target_states, TISSUE_STATES, "tissue state", "target_states"
            ),
        )
        if self.n_channels is None:
            pass  # no known preprocessing to derive it from: reported there
        elif not _is_int(self.n_channels) or self.n_channels < 1:
            add("n_channels", [f"n_channels must be a positive integer, got {self.n_channels!r}"])
        elif self.preprocessing in PREPROCESSINGS:
            expected = preprocessed_channels(self.preprocessing)
            if self.n_channels != expected:
                add(
                    "n_channels",
                    [
                        f"n_channels follows the preprocessing: {self.preprocessing!r} gives "
                        f"{expected} input channels, got {self.n_channels}"
                    ],
                )
        return errors

    def _check_label_names(self, add) -> bool:
        """Check the class names; True when they are a non-empty list that the other checks
        (tolerance count, scored labels, ignore index) can be compared against."""
        names = self.label_names
        if not _is_list(names):
            add(
                "label_names",
                [f"label_names must be a list of class names in index order, got {names!r}"],
            )
            return False
        if not names:
            add("label_names", ["give at least one class name (in index order)"])
            return False
        problems = []
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            problems.append(f"class names must be non-empty text, got {bad[:5]!r}")
        long = [n for n in names if isinstance(n, str) and len(n) > MAX_LABEL_NAME]
        if long:
            problems.append(
                f"class names may have at most {MAX_LABEL_NAME} characters: {long[:3]!r}"
            )
        dups = sorted({str(n) for n in names if names.count(n) > 1})
        if dups:
            problems.append(f"class names listed twice: {', '.join(dups)}")
        if len(names) > MAX_CLASSES:
            problems.append(
                f"at most {MAX_CLASSES} classes (label maps are uint8), got {len(names)}"
            )
        add("label_names", problems)
        return True

    def _check_tolerances(self, add, n: int | None) -> None:
        tol = self.nsd_tolerances
        if not _is_list(tol):
            add(
                "nsd_tolerances",
                [f"nsd_tolerances must be a list of numbers (pixels), got {tol!r}"],
            )
            return
        problems = []
        if tol and n is not None and len(tol) != n:
            problems.append(
                f"give one tolerance per class: {len(tol)} value(s) for {n} classes "
                f"(or leave empty for {DEFAULT_NSD_TOLERANCE:g} pixel per class)"
            )
        bad = [t for t in tol if not _is_number(t) or not math.isfinite(t) or t < 0]
        if bad:
            problems.append(f"tolerances must be finite numbers of pixels >= 0, got {bad[:5]!r}")
        add("nsd_tolerances", problems)

    def _check_scored_labels(self, add, names_ok: bool) -> None:
        scored = self.scored_labels
        if not _is_list(scored):
            add("scored_labels", [f"scored_labels must be a list of class names, got {scored!r}"])
            return
        problems = []
        if names_ok:
            unknown = [s for s in scored if s not in self.label_names]
            if unknown:
                problems.append(f"not among the label names: {', '.join(map(repr, unknown))}")
        dups = sorted({str(s) for s in scored if scored.count(s) > 1})
        if dups:
            problems.append(f"listed twice: {', '.join(dups)}")
        add("scored_labels", problems)

    # --- derived -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def scored_indices(self) -> tuple[int, ...]:
        """Class indices that are scored, ascending (every class when scored_labels is empty)."""
        if not self.scored_labels:
            return tuple(range(self.num_classes))
        keep = set(self.scored_labels)
        return tuple(i for i, name in enumerate(self.label_names) if name in keep)

    @property
    def higher_is_better(self) -> bool:
        """Direction of the primary metric (evaluator.metrics.HIGHER_IS_BETTER)."""
        return HIGHER_IS_BETTER[self.primary_metric]
