from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from datasets.cube_io import read_cube, write_cube
from datasets.importer import import_tivita_folder
from datasets.manifest import DatasetError, validate_dataset

H, W = 6, 8


def make_raw(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    raw = tmp_path / "raw"
    rng = np.random.default_rng(3)
    cubes = {}
    # htc layout: RAW/<subject>/<timestamp>/<timestamp>_SpecCube.dat with a png mask.
    t1 = "2019_12_20_12_38_35"
    folder = raw / "P043" / t1
    cubes["P043#" + t1] = rng.random((H, W, 100), dtype=np.float32)
    write_cube(folder / f"{t1}_SpecCube.dat", cubes["P043#" + t1])
    mask = np.full((H, W), 255, np.uint8)
    mask[:3] = 6
    mask[3:, :4] = 0
    mask[5, 7] = 150  # unlabelled
    Image.fromarray(mask, mode="L").save(folder / f"{t1}_labels.png")
    # Custom folder, npy mask with source-specific label values.
    t2 = "2020_01_02_03_04_05"
    folder2 = raw / "misc" / "rec2"
    cubes["SPACE_000007#" + t2] = rng.random((H, W, 100), dtype=np.float32)
    write_cube(folder2 / f"{t2}_SpecCube.dat", cubes["SPACE_000007#" + t2])
    np.save(folder2 / "labels.npy", np.array([[1] * W, [2] * W] * (H // 2), dtype=np.int32))
    # An image without labels.
    t3 = "2021_05_05_05_05_05"
    cubes["R002#" + t3] = rng.random((H, W, 100), dtype=np.float32)
    write_cube(raw / t3 / f"{t3}_SpecCube.dat", cubes["R002#" + t3])
    meta = pd.DataFrame(
        [
            {
                "image_name": "P043#" + t1,
                "species": "pig",
                "tissue_state": "physiological",
                "folder": "",
                "sto2_mean": "0.61",
            },
            {
                "image_name": "SPACE_000007#" + t2,
                "species": "human",
                "tissue_state": "malperfused",
                "folder": "misc/rec2",
                "sto2_mean": "",
            },
            {
                "image_name": "R002#" + t3,
                "species": "rat",
                "tissue_state": "icg",
                "folder": "",
                "sto2_mean": "",
            },
        ]
    )
    meta_path = tmp_path / "meta.csv"
    meta.to_csv(meta_path, index=False)
    return raw, meta_path, cubes


def test_import_folder(tmp_path: Path) -> None:
    raw, meta, cubes = make_raw(tmp_path)
    names_json = tmp_path / "names.json"
    names_json.write_text(json.dumps({"0": "background", "1": "kidney", "2": "gallbladder"}))
    # P043's png holds class indices already, so use per-run names only for the second image:
    # map 6 -> kidney too so the first image is unchanged.
    names = json.loads(names_json.read_text()) | {"6": "kidney"}
    man = import_tivita_folder(raw, meta, tmp_path / "ds", raw_label_names=names)
    assert validate_dataset(tmp_path / "ds") == []
    assert man.image_names == list(cubes)
    for name, cube in cubes.items():
        np.testing.assert_allclose(man.read_cube(name), cube, rtol=1e-3, atol=1e-4)
    p = man.read_labels("P043#2019_12_20_12_38_35")
    assert p.dtype == np.uint8 and p.shape == (H, W)
    assert (p[:3] == 6).all() and (p[3:, :4] == 0).all() and p[5, 7] == 255
    h = man.read_labels("SPACE_000007#2020_01_02_03_04_05")
    assert (h[0] == 6).all() and (h[1] == 255).all()  # gallbladder is not a class -> ignore
    assert man.read_labels("R002#2021_05_05_05_05_05") is None
    row = man.row("P043#2019_12_20_12_38_35")
    assert row["subject"] == "P043" and row["sto2_mean"] == 0.61
    assert row["labels_present"] == "background;kidney"


def test_import_to_npy_float32(tmp_path: Path) -> None:
    raw, meta, cubes = make_raw(tmp_path)
    man = import_tivita_folder(raw, meta, tmp_path / "ds", cube_format="npy", cube_dtype="float32")
    name = "R002#2021_05_05_05_05_05"
    assert man.cube_path(name).suffix == ".npy"
    np.testing.assert_array_equal(read_cube(man.cube_path(name)), cubes[name])


def test_import_reports_all_problems_and_writes_nothing(tmp_path: Path) -> None:
    raw, meta, _ = make_raw(tmp_path)
    df = pd.read_csv(meta, dtype=str, keep_default_na=False)
    df.loc[len(df)] = ["P099#2020_01_01_00_00_00", "pig", "physiological", "", ""]
    # Mask of the wrong size for the first image.
    t1 = "2019_12_20_12_38_35"
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(raw / "P043" / t1 / f"{t1}_labels.png")
    # Truncated cube for the third.
    t3 = "2021_05_05_05_05_05"
    cube_file = raw / t3 / f"{t3}_SpecCube.dat"
    cube_file.write_bytes(cube_file.read_bytes()[:-8])
    with pytest.raises(DatasetError) as err:
        import_tivita_folder(raw, df, tmp_path / "ds")
    got = {(p.code, p.image_name) for p in err.value.problems}
    assert got == {
        ("wrong_label_shape", "P043#" + t1),
        ("unreadable_cube", "R002#" + t3),
        ("missing_cube", "P099#2020_01_01_00_00_00"),
    }
    assert "truncated" in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_import_rejects_bad_metadata(tmp_path: Path) -> None:
    raw, _, _ = make_raw(tmp_path)
    with pytest.raises(DatasetError, match="species"):
        import_tivita_folder(raw, pd.DataFrame([{"image_name": "a#b"}]), tmp_path / "ds")
    bad = pd.DataFrame(
        [{"image_name": "P1#t", "species": "pig", "tissue_state": "icg", "folder": "../.."}]
    )
    with pytest.raises(DatasetError, match="no folder"):
        import_tivita_folder(raw, bad, tmp_path / "ds")
