"""Importing htc-layout datasets (``python -m datasets.htc``), and agreement with imsy-htc.

The datasets are built by tests/datasets/htc_layout.py the way htc writes its files. The
values htc itself computes on the same dataset (label mapping, L1-normalised spectra, DSC per
image) were written by scripts/reference/htc_reference.py into data/htc_expected.json; the last
test recomputes them where imsy-htc is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from datasets import htc
from datasets.cube_io import read_cube
from datasets.htc_blosc import HtcBloscError, read_htc_blosc, read_htc_blosc_dict
from datasets.labels import BACKGROUND_MATERIALS, DEFAULT_LABEL_MAPPING, STUDY_CLASSES
from datasets.manifest import DatasetError, check_dataset, load_manifest
from datasets.spectral import WAVELENGTHS_NM, preprocess
from evaluator.metrics import score_image
from tests.datasets import htc_layout

EXPECTED_FILE = Path(__file__).parent / "data" / "htc_expected.json"
LAYOUT = {"seed": 0, "height": 12, "width": 16}
P1, P2, R1 = list(htc_layout.IMAGES)

#: What each raw name of the synthetic dataset means under the study's mapping, written out
#: by hand from htc's settings_species.label_mapping (None: invalid -> ignore).
STUDY_MEANING = {
    "background": "background",
    "stomach": "stomach",
    "small_bowel": "small_bowel",
    "meso": "small_bowel",
    "metal": "background",
    "blue_cloth": "background",
    "heart": None,
    "kidney": "kidney",
    "liver": "liver",
    "gallbladder": None,
    "silicone_gloves_light_blue": "background",
    "white_compress_dry": "background",
    "overlap": None,
    "unlabeled": None,
}


def digest(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def expected_mask(raw: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    for name, value in htc_layout.LABEL_MAPPING.items():
        meaning = STUDY_MEANING[name]
        if meaning is not None:
            lut[value] = STUDY_CLASSES.index(meaning)
    return lut[raw]


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "htc"
    return root, htc_layout.build_htc_dataset(root, **LAYOUT)


def run(source_root: Path, dest: Path, **kwargs) -> htc.ImportReport:
    kwargs.setdefault("cube_dtype", "float32")
    return htc.import_htc_dataset(source_root, dest, **kwargs)


# --- the safe dict reader ---------------------------------------------------------------------
def test_dict_reader_reads_htc_dicts_and_refuses_everything_else(tmp_path: Path) -> None:
    arrays = {"semantic#primary": np.arange(12, dtype=np.uint8).reshape(3, 4)}
    good = tmp_path / "good.blosc"
    htc_layout.write_blosc_dict(good, arrays)
    out = read_htc_blosc_dict(good)
    assert list(out) == ["semantic#primary"]
    np.testing.assert_array_equal(out["semantic#primary"], arrays["semantic#primary"])

    single = tmp_path / "single.blosc"
    a = np.ones((2, 2), np.float32)
    single.write_bytes(pickle.dumps((a.shape, a.dtype)) + htc_layout._compress(a))
    assert read_htc_blosc(single).shape == (2, 2)
    with pytest.raises(HtcBloscError, match=r"single\.blosc: holds a single array"):
        read_htc_blosc_dict(single)

    int_keys = tmp_path / "int_keys.blosc"
    data = htc_layout._compress(a)
    int_keys.write_bytes(pickle.dumps({3: (a.shape, a.dtype, len(data))}) + data)
    assert list(read_htc_blosc(int_keys)) == ["3"]  # the lenient reader keeps its behaviour
    with pytest.raises(HtcBloscError, match="keys in the header must be strings"):
        read_htc_blosc_dict(int_keys)

    trailing = tmp_path / "trailing.blosc"
    trailing.write_bytes(good.read_bytes() + b"x")
    with pytest.raises(HtcBloscError, match="trailing bytes"):
        read_htc_blosc_dict(trailing)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    evil = tmp_path / "evil.blosc"
    evil.write_bytes(pickle.dumps({"semantic#primary": Evil()}))
    with pytest.raises(HtcBloscError, match=r"evil\.blosc: .*refused"):
        read_htc_blosc_dict(evil)


# --- the import -------------------------------------------------------------------------------
def test_import_builds_a_valid_dataset_with_htcs_label_semantics(source, tmp_path) -> None:
    root, written = source
    dest = tmp_path / "out"
    report = run(root, dest)
    man = check_dataset(dest)  # the manifest, cubes and labels pass the dataset validation
    assert man.image_names == [P1, P2, R1]
    table = man.table.set_index("image_name")
    assert table.loc[P1, "species"] == "pig" and table.loc[R1, "species"] == "rat"
    assert list(table["tissue_state"]) == ["physiological", "malperfused", "icg"]
    assert set(table["camera_id"]) == {"0102-00085_correct-1"}
    assert table.loc[P1, "timestamp"] == "2019_12_14_12_00_16"
    for name in (P1, P2):
        raw = written[name]["masks"]["semantic#primary"]  # the dataset's default annotation
        labels = man.read_labels(name)
        np.testing.assert_array_equal(labels, expected_mask(raw))
        # the study's mapping: background materials count as background, meso as small bowel
        for material in ("metal", "blue_cloth", "silicone_gloves_light_blue"):
            assert np.all(labels[raw == htc_layout.LABEL_MAPPING[material]] == 0)
        assert np.all(labels[raw == htc_layout.LABEL_MAPPING["meso"]] == 2)
        assert np.all(labels[raw == htc_layout.UNNAMED_VALUE] == 255)
        # cubes: the source reflectance, bit for bit with float32 storage
        np.testing.assert_array_equal(man.read_cube(name), written[name]["cube"], strict=False)
    assert report.unlabelled == [R1]  # its file has only another annotation
    assert man.label_path(R1) is None and man.read_labels(R1) is None
    # precomputed parameter images: htc's file, copied byte for byte to the documented place
    par = dest / "parameter_images" / f"{P1}.blosc"
    src_par = root / "intermediates" / "preprocessing" / "parameter_images" / f"{P1}.blosc"
    assert par.read_bytes() == src_par.read_bytes()
    assert not (dest / "parameter_images" / f"{P2}.blosc").exists()
    np.testing.assert_array_equal(
        read_htc_blosc_dict(par)["StO2"], written[P1]["parameter_images"]["StO2"]
    )
    record = json.loads((dest / htc.RECORD_NAME).read_text())
    assert record["images"][P1]["labels"]["annotation_name"] == "semantic#primary"


def test_rerun_skips_identical_outputs_and_redoes_changed_ones(source, tmp_path) -> None:
    root, written = source
    dest = tmp_path / "out"
    first = run(root, dest)
    assert first.unchanged == [] and len(first.written) == 3 + 2 + 1 + 1
    stamps = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    again = run(root, dest)
    assert again.written == [] and sorted(again.unchanged) == sorted(first.written)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == stamps
    # a touched source (same bytes) is compared by checksum and not converted again
    src = next((root / "data" / "subjects" / "P041").glob("*/*_SpecCube.dat"))
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    assert run(root, dest).written == []
    assert run(root, dest, verify=True).written == []
    # a new annotation of P2 -> its labels and the manifest (labels present) are redone
    seg = root / "intermediates" / "segmentations" / f"{P2}.blosc"
    new = np.zeros((LAYOUT["height"], LAYOUT["width"]), np.uint8)  # all background
    htc_layout.write_blosc_dict(seg, {"semantic#primary": new})
    third = run(root, dest)
    assert sorted(third.written) == [f"labels/{P2}.npy", "manifest.csv"]
    assert load_manifest(dest).read_labels(P2).max() == 0
    # a changed cube is converted again; a deleted output is rewritten
    (dest / "cubes" / f"{P1}.npy").unlink(missing_ok=True)
    (dest / "cubes" / f"{P1}.b2nd").unlink()
    assert run(root, dest).written == [f"cubes/{P1}.b2nd"]
    # other options (here the cube dtype) convert every cube again
    assert sum(w.startswith("cubes/") for w in run(root, dest, cube_dtype="float16").written) == 3


def test_annotation_choice_follows_htc(source, tmp_path) -> None:
    root, written = source
    report = run(root, tmp_path / "a", annotation_name="polygon#annotator1")
    assert report.unlabelled == [P1, P2]
    np.testing.assert_array_equal(
        report.manifest.read_labels(R1), expected_mask(written[R1]["masks"]["polygon#annotator1"])
    )
    # "a&b": htc reads both; one mask per image is kept, the first one present
    report = run(root, tmp_path / "b", annotation_name="semantic#reannotation&semantic#primary")
    np.testing.assert_array_equal(
        report.manifest.read_labels(P1),
        expected_mask(written[P1]["masks"]["semantic#reannotation"]),
    )
    np.testing.assert_array_equal(
        report.manifest.read_labels(P2), expected_mask(written[P2]["masks"]["semantic#primary"])
    )
    # without a default, a file with two annotations needs a choice
    settings = root / "data" / "dataset_settings.json"
    data = json.loads(settings.read_text())
    del data["annotation_name_default"]
    settings.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as info:
        run(root, tmp_path / "c")
    (problem,) = info.value.problems
    assert problem.image_name == P1 and f"{P1}.blosc" in problem.message
    assert "--annotation-name" in problem.message
    assert not (tmp_path / "c").exists()  # nothing written


def test_meta_table_as_feather_and_overrides(tmp_path) -> None:
    root = tmp_path / "htc"
    htc_layout.build_htc_dataset(root, meta_table="feather", **LAYOUT)
    man = run(root, tmp_path / "out").manifest
    assert list(man.table["tissue_state"]) == ["physiological", "malperfused", "icg"]
    man = run(root, tmp_path / "out2", species="human", tissue_state="unclear").manifest
    assert set(man.table["species"]) == {"human"} and set(man.table["tissue_state"]) == {"unclear"}


def test_without_meta_table_species_comes_from_the_subject_name(source, tmp_path) -> None:
    root, _ = source
    for table in (root / "intermediates" / "tables").iterdir():
        table.unlink()
    man = run(root, tmp_path / "out").manifest
    assert list(man.table["species"]) == ["pig", "pig", "rat"]
    assert set(man.table["tissue_state"]) == {"physiological"}
    assert htc.species_from_name("SPACE_000001") == "human"
    assert htc.species_from_name("X17") is None


@pytest.mark.parametrize(
    ("damage", "code", "where"),
    [
        ("no_settings", "not_htc_layout", "dataset_settings.json"),
        ("bad_json", "bad_dataset_settings", "dataset_settings.json"),
        ("bad_mapping", "bad_dataset_settings", "label_mapping"),
        ("missing_cube", "missing_cube", "_SpecCube.dat"),
        ("truncated_cube", "unreadable_cube", "_SpecCube.dat"),
        ("evil_segmentation", "unreadable_labels", f"{P2}.blosc"),
        ("wrong_mask_shape", "unreadable_labels", "the cube is 12x16"),
        ("bad_parameter_images", "unreadable_parameter_images", f"{P1}.blosc"),
        ("bad_state", "bad_tissue_state", "@meta.csv"),
    ],
)
def test_errors_name_the_file_and_the_reason(source, tmp_path, damage, code, where) -> None:
    root, _ = source
    data = root / "data"
    cube_p2 = data / "subjects" / "P041" / P2.split("#")[1] / f"{P2.split('#')[1]}_SpecCube.dat"
    if damage == "no_settings":
        (data / "dataset_settings.json").unlink()
        (data / "subjects").rename(data / "elsewhere")
    elif damage == "bad_json":
        (data / "dataset_settings.json").write_text("{not json")
    elif damage == "bad_mapping":
        (data / "dataset_settings.json").write_text(json.dumps({"label_mapping": {"a": "x"}}))
    elif damage == "missing_cube":
        cube_p2.unlink()
    elif damage == "truncated_cube":
        cube_p2.write_bytes(cube_p2.read_bytes()[:500])
    elif damage == "evil_segmentation":
        seg = root / "intermediates" / "segmentations" / f"{P2}.blosc"
        seg.write_bytes(b"\x80\x04cos\nsystem\n\x94.")
    elif damage == "wrong_mask_shape":
        seg = root / "intermediates" / "segmentations" / f"{P2}.blosc"
        htc_layout.write_blosc_dict(seg, {"semantic#primary": np.zeros((5, 5), np.uint8)})
    elif damage == "bad_parameter_images":
        par = root / "intermediates" / "preprocessing" / "parameter_images" / f"{P1}.blosc"
        par.write_bytes(par.read_bytes()[:40])
    elif damage == "bad_state":
        table = next((root / "intermediates" / "tables").glob("*.csv"))
        table.write_text(table.read_text().replace("malperfused", "clamped"))
    dest = tmp_path / "out"
    with pytest.raises(DatasetError) as info:
        run(root, dest)
    assert [p.code for p in info.value.problems] == [code], info.value.problems
    assert where in str(info.value)
    assert not dest.exists()


def test_command_line(source, tmp_path, capsys) -> None:
    root, _ = source
    dest = tmp_path / "out"
    assert htc.main([str(root), str(dest), "--no-progress", "--cube-format", "npy"]) == 0
    out = capsys.readouterr().out
    assert "3 images imported" in out and "7 file(s) written" in out and R1 in out
    assert (dest / "cubes" / f"{P1}.npy").is_file()
    assert htc.main([str(root / "data"), str(dest), "--no-progress", "--cube-format", "npy"]) == 0
    assert "0 file(s) written, 7 unchanged" in capsys.readouterr().out
    assert htc.main([str(tmp_path / "nothing"), str(tmp_path / "x"), "--no-progress"]) == 1
    assert "dataset_settings.json" in capsys.readouterr().err


# --- agreement with imsy-htc ------------------------------------------------------------------
EXPECTED = json.loads(EXPECTED_FILE.read_text())


def test_wavelengths_and_study_mapping_are_htcs() -> None:
    np.testing.assert_array_equal(WAVELENGTHS_NM, np.array(EXPECTED["wavelengths"]))
    assert list(STUDY_CLASSES) == EXPECTED["study_classes"]
    for name, index in EXPECTED["study_mapping"].items():
        assert DEFAULT_LABEL_MAPPING.index_of(name) == (255 if index is None else index), name
    assert set(BACKGROUND_MATERIALS) <= set(EXPECTED["study_mapping"])


@pytest.mark.parametrize("name", ["segmentation.blosc", "parameter_images.blosc"])
def test_reads_files_written_by_htcs_own_compress_file(name) -> None:
    """htc writes blosc 1 buffers after the pickled header; the safe reader gets the arrays."""
    arrays = read_htc_blosc_dict(EXPECTED_FILE.parent / "htc_written" / name)
    assert {k: digest(v) for k, v in arrays.items()} == EXPECTED["htc_written"][name]


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, dict, Path]:
    base = tmp_path_factory.mktemp("htc-expected")
    written = htc_layout.build_htc_dataset(base / "htc", **LAYOUT)
    return base / "htc", written, base


@pytest.mark.parametrize("name", list(htc_layout.IMAGES))
def test_same_cube_labels_and_l1_spectra_as_htc(imported, name) -> None:
    root, written, base = imported
    want = EXPECTED["images"][name]
    subject, ts = name.split("#")
    cube = read_cube(root / "data" / "subjects" / subject / ts / f"{ts}_SpecCube.dat")
    assert digest(cube) == want["cube"]  # the same synthetic cube htc read
    l1 = preprocess(cube, "l1")
    for key, values in want["l1"]["samples"].items():
        y, x = map(int, key.split(","))
        np.testing.assert_allclose(l1[y, x], values, rtol=0, atol=0)
    assert digest(l1) == want["l1"]["sha256"]  # bit-identical L1 normalisation
    for annotation, dest_name in (
        ("default", "default"),
        ("polygon#annotator1", "polygon"),
        ("semantic#reannotation", "reannotation"),
    ):
        man_root = base / dest_name
        if not man_root.exists():
            run(root, man_root, annotation_name=None if annotation == "default" else annotation)
        labels = load_manifest(man_root).read_labels(name)
        expected = want["annotations"][annotation]
        if expected is None:
            assert labels is None
        else:
            assert digest(labels) == expected["sha256"], annotation


@pytest.mark.parametrize("name", [P1, P2])
def test_dsc_per_image_is_htcs_under_the_reference_convention(imported, name) -> None:
    root, _, base = imported
    if not (base / "default").exists():
        run(root, base / "default")
    ref = load_manifest(base / "default").read_labels(name)
    i = list(htc_layout.IMAGES).index(name)
    preds = htc_layout.predictions(ref, seed=i + 1)
    assert len(preds) == len(EXPECTED["images"][name]["dsc"])
    for pred, want in zip(preds, EXPECTED["images"][name]["dsc"], strict=True):
        assert digest(pred) == want["prediction"]
        rows = score_image(pred, ref, num_classes=len(STUDY_CLASSES)).rows
        assert [r["label"] for r in rows] == want["used_labels"]
        np.testing.assert_allclose([r["dsc"] for r in rows], want["dice_metric"], atol=1e-6)
        image = float(np.mean([r["dsc"] for r in rows]))
        assert image == pytest.approx(want["dice_metric_image"], abs=1e-6)
        union = score_image(pred, ref, num_classes=len(STUDY_CLASSES), scored_classes="union")
        if len(union.rows) > len(rows):  # a class only predicted: union's mean is lower
            assert np.mean([r["dsc"] for r in union.rows]) < image


def test_committed_values_are_what_htc_computes_now(tmp_path) -> None:
    """Runs only where imsy-htc is installed: the committed file must be current."""
    pytest.importorskip("htc", exc_type=ImportError)
    from scripts.reference.htc_reference import htc_values

    htc_layout.build_htc_dataset(tmp_path, **LAYOUT)
    now = htc_values(tmp_path)
    skip = ("versions", "htc_written")  # htc_written: digests of fixed arrays, not htc's
    assert {k: v for k, v in now.items() if k not in skip} == {
        k: v for k, v in EXPECTED.items() if k not in skip
    }
