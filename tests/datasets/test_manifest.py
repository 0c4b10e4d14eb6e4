from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.cube_io import write_cube
from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
from datasets.manifest import (
    DatasetError,
    Problem,
    check_dataset,
    export_cases,
    load_manifest,
    validate_dataset,
    write_manifest,
)

NAMES = ("P001#2020_01_01_10_00_00", "SPACE_000001#2021_02_03_11_00_00")


def make_dataset(root: Path, h: int = 6, w: int = 8) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(NAMES):
        cube = rng.random((h, w, 100), dtype=np.float32) + 0.01
        write_cube(root / "cubes" / f"{name}.b2nd", cube)
        labels = np.full((h, w), 255, np.uint8)
        labels[: h // 2] = 0
        labels[h // 2 :, : w // 2] = 6
        (root / "labels").mkdir(parents=True, exist_ok=True)
        np.save(root / "labels" / f"{name}.npy", labels)
        rows.append(
            {
                "image_name": name,
                "species": ("pig", "human")[i],
                "subject": name.split("#")[0],
                "tissue_state": ("physiological", "malperfused")[i],
                "cube_path": f"cubes/{name}.b2nd",
                "label_path": f"labels/{name}.npy",
                "labels_present": "background;kidney",
                "clamped": i == 1,
                "sto2_mean": 0.5,
                "height": h,
                "width": w,
            }
        )
    write_manifest(root, rows)
    return root


def edit_manifest(root: Path, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
    df = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    out = fn(df)
    (out if out is not None else df).to_csv(root / "manifest.csv", index=False)


def codes(problems: list[Problem]) -> set[str]:
    return {p.code for p in problems}


def test_valid_dataset_has_no_problems(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    assert validate_dataset(root) == []
    man = check_dataset(root)
    assert man.image_names == list(NAMES)
    assert man.row(NAMES[1])["clamped"] is True
    assert man.row(NAMES[0])["sto2_mean"] == 0.5
    assert man.cube_path(NAMES[0]) == root / "cubes" / f"{NAMES[0]}.b2nd"
    assert man.read_cube(NAMES[0]).shape == (6, 8, 100)
    assert man.read_labels(NAMES[0]).dtype == np.uint8
    assert man.select(species="human").image_names == [NAMES[1]]
    with pytest.raises(KeyError):
        man.row("nope#1")


def _set(col: str, value: str, row: int = 0) -> Callable[[pd.DataFrame], None]:
    def fn(df: pd.DataFrame) -> None:
        df.loc[row, col] = value

    return fn


def _save(rel: str, arr: np.ndarray) -> Callable[[Path], None]:
    def fn(root: Path) -> None:
        np.save(root / rel, arr)

    return fn


def _cube(arr_fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def fn(root: Path) -> None:
        path = root / "cubes" / f"{NAMES[0]}.b2nd"
        from datasets.cube_io import read_cube

        write_cube(path, arr_fn(read_cube(path).copy()))

    return fn


def _nan(c: np.ndarray) -> np.ndarray:
    c[0, 0, 3] = np.nan
    c[1, 1, 1] = np.inf
    return c


def _neg(c: np.ndarray) -> np.ndarray:
    c[0, 0, :5] = -0.2
    return c


L0 = f"labels/{NAMES[0]}.npy"
MANIFEST_CASES = {
    "duplicate_image_name": lambda df: pd.concat([df, df.iloc[[0]]], ignore_index=True),
    "bad_image_name": _set("image_name", "../../etc/passwd"),
    "subject_mismatch": _set("subject", "P002"),
    "bad_species": _set("species", "mouse"),
    "bad_tissue_state": _set("tissue_state", "sick"),
    "bad_value": _set("sto2_mean", "1.7"),
    "unknown_label_name": _set("labels_present", "background;gallbladder"),
    "bad_path": _set("cube_path", "../outside.npy"),
    "missing_cube": _set("cube_path", "cubes/missing.npy"),
    "missing_labels": _set("label_path", "labels/missing.npy"),
    "wrong_shape": _set("height", "7"),
    "labels_present_mismatch": _set("labels_present", "background;liver"),
    "labels_present_mismatch/empty": _set("labels_present", ""),
}
DATA_CASES = {
    "wrong_channels": _cube(lambda c: c[:, :, :90]),
    "nonfinite": _cube(_nan),
    "negative_reflectance": _cube(_neg),
    "wrong_label_dtype": _save(L0, np.zeros((6, 8), np.int64)),
    "wrong_label_shape": _save(L0, np.zeros((6, 9), np.uint8)),
    "labels_outside_mapping": _save(L0, np.full((6, 8), 42, np.uint8)),
    "unreadable_labels": lambda root: (root / L0).write_bytes(b"garbage"),
    "unreadable_cube": lambda root: (root / "cubes" / f"{NAMES[0]}.b2nd").write_bytes(
        (root / "cubes" / f"{NAMES[0]}.b2nd").read_bytes()[:100]
    ),
}


@pytest.mark.parametrize("code", sorted(MANIFEST_CASES))
def test_manifest_errors(tmp_path: Path, code: str) -> None:
    root = make_dataset(tmp_path)
    edit_manifest(root, MANIFEST_CASES[code])
    problems = validate_dataset(root)
    assert code.split("/")[0] in codes(problems), problems
    with pytest.raises(DatasetError) as err:
        check_dataset(root)
    assert code.split("/")[0] in codes(err.value.problems)
    assert str(problems[0]) in str(err.value)


@pytest.mark.parametrize("code", sorted(DATA_CASES))
def test_data_errors(tmp_path: Path, code: str) -> None:
    root = make_dataset(tmp_path)
    DATA_CASES[code](root)
    problems = validate_dataset(root)
    assert code in codes(problems), problems
    assert all(p.image_name == NAMES[0] for p in problems)
    assert validate_dataset(root, check_data=False) == []


def test_aliases_in_labels_present_are_accepted(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    edit_manifest(root, _set("labels_present", "kidney;background"))
    assert validate_dataset(root) == []
    mapping = LabelMapping(DEFAULT_LABEL_MAPPING.class_names, aliases={"Niere": "kidney"})
    edit_manifest(root, _set("labels_present", "background;Niere"))
    assert validate_dataset(root, mapping=mapping) == []


def test_negative_values_can_be_allowed(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    DATA_CASES["negative_reflectance"](root)
    assert validate_dataset(root, allow_negative=True) == []


def test_messages_are_human_readable(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    edit_manifest(root, _set("species", "mouse"))
    DATA_CASES["negative_reflectance"](root)
    text = "\n".join(str(p) for p in validate_dataset(root))
    assert "species 'mouse' is not one of ('pig', 'rat', 'human')" in text
    assert "negative reflectance values" in text and NAMES[0] in text


def test_table_level_errors(tmp_path: Path) -> None:
    assert codes(validate_dataset(tmp_path)) == {"manifest_missing"}
    with pytest.raises(DatasetError, match="no manifest.csv"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("image_name,species\nA#1,pig\n")
    assert codes(validate_dataset(tmp_path)) == {"missing_column"}
    (tmp_path / "manifest.csv").write_text('a,b\n1,2,3,4\n"unterminated')
    assert codes(validate_dataset(tmp_path)) & {"manifest_unreadable", "missing_column"}
    make_dataset(tmp_path)
    edit_manifest(tmp_path, _set("clamped", "maybe"))
    man = load_manifest(tmp_path)
    assert codes(man.problems) == {"bad_value"}


def test_manifest_refuses_paths_outside_root(tmp_path: Path) -> None:
    man = load_manifest(make_dataset(tmp_path))
    with pytest.raises(DatasetError):
        man.resolve("../x.npy")
    with pytest.raises(DatasetError):
        man.resolve("/etc/passwd")


def test_export_cases_splits_cubes_and_labels(tmp_path: Path) -> None:
    man = load_manifest(make_dataset(tmp_path / "ds"))
    cubes, labels = tmp_path / "cubes", tmp_path / "truth"
    names = export_cases(man, cubes, labels)
    assert names == list(NAMES)
    assert sorted(p.name for p in cubes.iterdir()) == sorted(f"{n}.npy" for n in NAMES)
    assert sorted(p.name for p in labels.iterdir()) == sorted(f"{n}.npy" for n in NAMES)
    cube = np.load(cubes / f"{NAMES[0]}.npy", allow_pickle=False)
    assert cube.dtype == np.float32 and cube.shape == (6, 8, 100)
    np.testing.assert_allclose(cube.sum(-1), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(np.load(labels / f"{NAMES[0]}.npy"), man.read_labels(NAMES[0]))


def test_export_subset_raw_float16_without_labels(tmp_path: Path) -> None:
    man = load_manifest(make_dataset(tmp_path / "ds"))
    out = tmp_path / "cubes"
    assert export_cases(man, out, None, [NAMES[1]], preprocess=None, dtype="float16") == [NAMES[1]]
    assert [p.name for p in out.iterdir()] == [f"{NAMES[1]}.npy"]
    cube = np.load(out / f"{NAMES[1]}.npy")
    assert cube.dtype == np.float16
    np.testing.assert_allclose(cube, man.read_cube(NAMES[1]), rtol=1e-3)
    with pytest.raises(KeyError):
        export_cases(man, out, None, ["X#1"])
    with pytest.raises(ValueError):
        export_cases(man, out, None, preprocess="zscore")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sto2=st.one_of(st.none(), st.floats(0, 1)),
    clamped=st.one_of(st.none(), st.booleans()),
    icg=st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
    state=st.sampled_from(["physiological", "malperfused", "icg", "unclear"]),
)
def test_manifest_round_trip_types(
    tmp_path: Path, sto2: float | None, clamped: bool | None, icg: float | None, state: str
) -> None:
    root = make_dataset(tmp_path)
    edit_manifest(root, _set("tissue_state", state))
    df = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    df.loc[0, "sto2_mean"] = "" if sto2 is None else repr(sto2)
    df.loc[0, "clamped"] = "" if clamped is None else str(clamped)
    df["icg_seconds"] = "" if icg is None else repr(icg)
    write_manifest(root, df)
    row = load_manifest(root).row(NAMES[0])
    assert row["sto2_mean"] == sto2 and row["clamped"] == clamped and row["icg_seconds"] == icg
    assert row["tissue_state"] == state
    assert validate_dataset(root, check_data=False) == []
