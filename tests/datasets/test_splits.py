from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.manifest import subject_of
from datasets.splits import (
    DataSpecError,
    Fold,
    check_folds,
    data_spec_from_json,
    make_nested_folds,
    read_data_spec,
    validate_folds,
    write_data_spec,
)


def _images(n_subjects: int, per_subject: int = 3, prefix: str = "P") -> list[str]:
    return [
        f"{prefix}{s:03d}#2020_01_01_00_00_{i:02d}"
        for s in range(n_subjects)
        for i in range(per_subject)
    ]


def test_nested_folds_3x5_are_subject_disjoint() -> None:
    names = _images(12, prefix="P") + _images(12, prefix="R")
    groups = ["pig"] * 36 + ["rat"] * 36
    folds = make_nested_folds(names, groups, n_outer=3, n_inner=5, seed=1)
    assert len(folds) == 15
    assert validate_folds(folds, known_images=names) == []
    tests = {frozenset(f.names("test")) for f in folds}
    assert len(tests) == 3
    assert set().union(*tests) == set(names)  # every image is tested exactly once
    for fold in folds:
        assert set(fold.names("train")) | set(fold.names("val")) | set(fold.names("test")) == set(
            names
        )
        test_subjects = {subject_of(n) for n in fold.names("test")}
        assert any(s.startswith("P") for s in test_subjects)
        assert any(s.startswith("R") for s in test_subjects)
    assert make_nested_folds(names, groups, seed=1) == folds  # deterministic


def test_folds_without_val_and_too_few_subjects() -> None:
    folds = make_nested_folds(_images(4), n_outer=2, n_inner=1)
    assert len(folds) == 2 and all(not f.names("val") for f in folds)
    with pytest.raises(ValueError, match="too few"):
        make_nested_folds(_images(5), n_outer=3, n_inner=5)
    with pytest.raises(ValueError, match="groups"):
        make_nested_folds(_images(2, 1), ["pig", "rat"][:1])


def test_round_trip(tmp_path: Path) -> None:
    folds = make_nested_folds(_images(9), n_outer=3, n_inner=2)
    path = write_data_spec(tmp_path / "splits.json", folds)
    assert read_data_spec(path) == folds
    data = json.loads(path.read_text())
    assert set(data[0]) == {"fold_name", "train", "val", "test"}
    assert data[0]["train"] == {"image_names": list(folds[0].splits["train"])}


def test_reads_htc_style_spec_with_extra_keys() -> None:
    text = json.dumps(
        [
            {
                "fold_name": "fold_P041,P060",
                "train": {"image_names": ["P001#a", "P002#b"]},
                "val_semantic_unknown": {"image_names": ["P041#c"]},
                "test": {"image_names": ["P060#d"]},
                "notes": "kept",
            }
        ]
    )
    (fold,) = data_spec_from_json(text)
    assert fold.names("val") == ["P041#c"] and fold.extra == {"notes": "kept"}
    assert json.loads(json.dumps([fold.to_dict()])) == json.loads(text)
    assert validate_folds([fold]) == []


@pytest.mark.parametrize(
    "text,match",
    [
        ("{", "not valid JSON"),
        ('{"fold_name": "a"}', "JSON list"),
        ("[1]", "expected an object"),
        ('[{"train": {"image_names": []}}]', "fold_name"),
        ('[{"fold_name": "a"}]', "no train/val/test"),
        ('[{"fold_name": "a", "train": ["x"]}]', "image_names"),
        ('[{"fold_name": "a", "train": {"image_names": [1]}}]', "non-string"),
        (
            '[{"fold_name": "a", "train": {"image_names": []}},'
            ' {"fold_name": "a", "test": {"image_names": []}}]',
            "duplicate fold",
        ),
    ],
)
def test_malformed_specs(text: str, match: str) -> None:
    with pytest.raises(DataSpecError, match=match):
        data_spec_from_json(text)


def test_validation_finds_leaks() -> None:
    leak = Fold("f", {"train": ("P001#a", "P002#a"), "test": ("P001#b",)})
    problems = validate_folds([leak])
    assert any("not subject-disjoint" in p and "P001" in p for p in problems)
    with pytest.raises(DataSpecError, match="P001"):
        check_folds([leak])
    dup = Fold("g", {"train": ("P001#a", "P001#a"), "test": ("P002#a",)})
    assert any("twice" in p for p in validate_folds([dup]))
    assert any("unknown images" in p for p in validate_folds([dup], known_images=["P002#a"]))
    a = Fold("a", {"train": ("P003#a",), "test": ("P001#a", "P002#a")})
    b = Fold("b", {"train": ("P003#a",), "test": ("P002#b",)})
    assert any("share subjects" in p for p in validate_folds([a, b]))


@settings(max_examples=30, deadline=None)
@given(
    n_subjects=st.integers(4, 25),
    per_subject=st.integers(1, 3),
    n_outer=st.integers(1, 3),
    n_inner=st.integers(1, 4),
    seed=st.integers(0, 100),
)
def test_generated_folds_are_always_disjoint(
    n_subjects: int, per_subject: int, n_outer: int, n_inner: int, seed: int
) -> None:
    names = _images(n_subjects, per_subject)
    if n_outer == 1 and n_inner == 1:
        with pytest.raises(ValueError):
            make_nested_folds(names, n_outer=n_outer, n_inner=n_inner, seed=seed)
        return
    # Round-robin dealing leaves at least n - ceil(n / n_outer) subjects for the inner folds.
    enough = (
        n_subjects >= n_outer and n_subjects - -(-n_subjects // n_outer) * (n_outer > 1) >= n_inner
    )
    try:
        folds = make_nested_folds(names, n_outer=n_outer, n_inner=n_inner, seed=seed)
    except ValueError:
        assert not enough
        return
    assert enough
    assert validate_folds(folds, known_images=names) == []
    assert len(folds) == n_outer * n_inner
