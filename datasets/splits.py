"""Subject-disjoint folds and the htc "data specification" JSON.

A data specification is a JSON list of folds::

    [{"fold_name": "outer0_inner0",
      "train": {"image_names": [...]}, "val": {"image_names": [...]},
      "test": {"image_names": [...]}}, ...]

Split keys start with ``train``, ``val`` or ``test`` (htc uses e.g. ``val_semantic_unknown``).
The study uses nested cross-validation: 3 outer subject-disjoint test folds x 5 inner folds.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets.manifest import subject_of

SPLIT_KINDS = ("train", "val", "test")


class DataSpecError(ValueError):
    """A data specification is malformed or its folds are not subject-disjoint."""


def split_kind(key: str) -> str | None:
    """``"train"``, ``"val"`` or ``"test"`` for a split key (``val_unknown`` -> ``val``)."""
    for kind in SPLIT_KINDS:
        if key == kind or key.startswith(kind):
            return kind
    return None


@dataclass(frozen=True)
class Fold:
    """One fold: split name -> image names (e.g. ``{"train": [...], "test": [...]}``)."""

    fold_name: str
    splits: Mapping[str, tuple[str, ...]]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def names(self, kind: str) -> list[str]:
        """All image names of the splits of one kind (``"train"``, ``"val"``, ``"test"``)."""
        out: list[str] = []
        for key, names in self.splits.items():
            if split_kind(key) == kind:
                out.extend(names)
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"fold_name": self.fold_name}
        for key, names in self.splits.items():
            data[key] = {"image_names": list(names)}
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Any, position: int = 0) -> Fold:
        if not isinstance(data, dict):
            raise DataSpecError(f"fold {position} is a {type(data).__name__}, expected an object")
        name = data.get("fold_name")
        if not isinstance(name, str) or not name:
            raise DataSpecError(f"fold {position} has no 'fold_name' string")
        splits: dict[str, tuple[str, ...]] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key == "fold_name":
                continue
            if split_kind(key) is None:
                extra[key] = value
                continue
            if not isinstance(value, dict) or not isinstance(value.get("image_names"), list):
                raise DataSpecError(
                    f"fold {name!r}: split {key!r} must be an object with an 'image_names' list"
                )
            names = value["image_names"]
            if not all(isinstance(n, str) for n in names):
                raise DataSpecError(f"fold {name!r}: split {key!r} has non-string image names")
            splits[key] = tuple(names)
        if not splits:
            raise DataSpecError(f"fold {name!r} has no train/val/test split")
        return cls(name, splits, extra)


def data_spec_to_json(folds: Sequence[Fold]) -> str:
    return json.dumps([f.to_dict() for f in folds], indent=2)


def data_spec_from_json(text: str) -> list[Fold]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataSpecError(f"data specification is not valid JSON: {e}") from e
    if not isinstance(data, list):
        raise DataSpecError("a data specification is a JSON list of folds")
    folds = [Fold.from_dict(d, i) for i, d in enumerate(data)]
    names = [f.fold_name for f in folds]
    if len(set(names)) != len(names):
        raise DataSpecError(f"duplicate fold names in {names}")
    return folds


def read_data_spec(path: str | Path) -> list[Fold]:
    return data_spec_from_json(Path(path).read_text(encoding="utf-8"))


def write_data_spec(path: str | Path, folds: Sequence[Fold]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data_spec_to_json(folds) + "\n", encoding="utf-8")
    return p


def validate_folds(
    folds: Sequence[Fold],
    subject_fn: Callable[[str], str] = subject_of,
    known_images: Iterable[str] | None = None,
) -> list[str]:
    """Human-readable problems: subject overlap between train/val/test of a fold, duplicate
    images, unknown image names and outer test sets that share subjects."""
    problems: list[str] = []
    known = set(known_images) if known_images is not None else None
    for fold in folds:
        subjects: dict[str, set[str]] = {}
        for kind in SPLIT_KINDS:
            names = fold.names(kind)
            dups = sorted(n for n, k in Counter(names).items() if k > 1)
            if dups:
                problems.append(f"fold {fold.fold_name!r}: {kind} lists {dups[:5]} twice")
            if known is not None:
                unknown = sorted(set(names) - known)
                if unknown:
                    problems.append(
                        f"fold {fold.fold_name!r}: {kind} names unknown images {unknown[:5]}"
                    )
            subjects[kind] = {subject_fn(n) for n in names}
        for i, a in enumerate(SPLIT_KINDS):
            for b in SPLIT_KINDS[i + 1 :]:
                shared = sorted(subjects[a] & subjects[b])
                if shared:
                    problems.append(
                        f"fold {fold.fold_name!r} is not subject-disjoint: subjects {shared[:5]} "
                        f"are in both {a} and {b}"
                    )
    tests: dict[frozenset[str], str] = {}
    for fold in folds:
        test = frozenset(subject_fn(n) for n in fold.names("test"))
        if test and test not in tests:
            for other_set, other_name in tests.items():
                shared = sorted(test & other_set)
                if shared:
                    problems.append(
                        f"test sets of folds {other_name!r} and {fold.fold_name!r} differ but "
                        f"share subjects {shared[:5]}"
                    )
            tests[test] = fold.fold_name
    return problems


def check_folds(folds: Sequence[Fold], **kwargs: Any) -> None:
    problems = validate_folds(folds, **kwargs)
    if problems:
        raise DataSpecError("invalid folds:\n" + "\n".join(f"  - {p}" for p in problems))


def make_nested_folds(
    image_names: Sequence[str],
    groups: Sequence[str] | None = None,
    n_outer: int = 3,
    n_inner: int = 5,
    seed: int = 0,
    subject_fn: Callable[[str], str] = subject_of,
) -> list[Fold]:
    """Nested subject-disjoint folds: ``n_outer`` test folds x ``n_inner`` train/val folds.

    Subjects are shuffled (by ``seed``) and dealt round-robin within each group (e.g. species,
    given per image in ``groups``) so every test and val set mixes the groups. ``n_inner=1``
    gives folds without a val split, ``n_outer=1`` folds without a test split. Raises ``ValueError`` if there are too few subjects.
    """
    if n_outer < 1 or n_inner < 1:
        raise ValueError("n_outer and n_inner must be >= 1")
    if groups is not None and len(groups) != len(image_names):
        raise ValueError("groups needs one entry per image")
    group_of = dict(zip(image_names, groups, strict=True)) if groups is not None else {}
    by_subject: dict[str, list[str]] = defaultdict(list)
    subject_group: dict[str, str] = {}
    for name in image_names:
        subj = subject_fn(name)
        by_subject[subj].append(name)
        g = group_of.get(name, "")
        if subject_group.setdefault(subj, g) != g:
            raise ValueError(
                f"subject {subj!r} appears in groups {subject_group[subj]!r} and {g!r}"
            )
    if n_outer == 1 and n_inner == 1:
        raise ValueError("n_outer=1 and n_inner=1 leave nothing to validate or test")
    n = len(by_subject)
    largest_test = -(-n // n_outer) if n_outer > 1 else 0  # dealing keeps bins within 1
    if n < n_outer or n - largest_test < n_inner:
        raise ValueError(f"{n} subjects are too few for {n_outer} outer x {n_inner} inner folds")
    rng = np.random.default_rng(seed)

    def deal(subjects: Sequence[str], n: int, offset: int) -> list[list[str]]:
        """Round-robin per group, continuing the count across groups to balance sizes."""
        bins: list[list[str]] = [[] for _ in range(n)]
        per_group: dict[str, list[str]] = defaultdict(list)
        for s in subjects:
            per_group[subject_group[s]].append(s)
        k = offset
        for g in sorted(per_group):
            members = sorted(per_group[g])
            for s in (members[i] for i in rng.permutation(len(members))):
                bins[k % n].append(s)
                k += 1
        return bins

    outer_bins = deal(sorted(by_subject), n_outer, 0) if n_outer > 1 else [[]]
    folds: list[Fold] = []
    for o, test_subjects in enumerate(outer_bins):
        rest = sorted(set(by_subject) - set(test_subjects))
        inner_bins = deal(rest, n_inner, o) if n_inner > 1 else [[]]
        for i, val_subjects in enumerate(inner_bins):
            train_subjects = sorted(set(rest) - set(val_subjects))

            def images(subjs: Iterable[str]) -> tuple[str, ...]:
                return tuple(sorted(n for s in subjs for n in by_subject[s]))

            splits = {"train": images(train_subjects)}
            if n_inner > 1:
                splits["val"] = images(val_subjects)
            if n_outer > 1:
                splits["test"] = images(test_subjects)
            if not all(splits.values()):
                raise ValueError("too few subjects: a fold would get an empty split")
            folds.append(Fold(f"outer{o}_inner{i}", splits))
    return folds
