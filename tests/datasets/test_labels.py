from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from datasets.labels import DEFAULT_LABEL_MAPPING, STUDY_CLASSES, LabelMapping


def test_default_mapping_is_the_study_classes() -> None:
    m = DEFAULT_LABEL_MAPPING
    assert m.class_names == (
        "background",
        "stomach",
        "small_bowel",
        "colon",
        "liver",
        "pancreas",
        "kidney",
        "spleen",
        "omentum",
        "lung",
        "skin",
        "peritoneum",
    )
    assert m.n_classes == 12 and m.ignore_index == 255
    assert m.name_to_index["kidney"] == 6
    assert m.index_to_name[6] == "kidney"
    assert m.name_to_index["small bowel"] == m.name_to_index["small_bowel"]
    assert m.index_of("gallbladder") == 255


def test_mapping_is_immutable() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_LABEL_MAPPING.ignore_index = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        DEFAULT_LABEL_MAPPING.name_to_index["x"] = 1  # type: ignore[index]


def test_map_raw_identity_and_unlabelled() -> None:
    raw = np.array([[0, 6, 11], [12, 99, 100], [150, 255, 3]], dtype=np.uint8)
    out = DEFAULT_LABEL_MAPPING.map_raw(raw)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 6, 11], [255, 255, 255], [255, 255, 3]]


def test_map_raw_with_source_names() -> None:
    raw = np.array([[1, 2], [3, 120]], dtype=np.int32)
    out = DEFAULT_LABEL_MAPPING.map_raw(raw, {1: "kidney", 2: "gallbladder", 3: "small bowel"})
    assert out.tolist() == [[6, 255], [2, 255]]


def test_map_raw_rejects_float_masks() -> None:
    with pytest.raises(TypeError):
        DEFAULT_LABEL_MAPPING.map_raw(np.zeros((2, 2), dtype=np.float32))


def test_json_round_trip() -> None:
    m = LabelMapping(("background", "kidney"), ignore_index=200, aliases={"Kidney": "kidney"})
    back = LabelMapping.from_json(m.to_json())
    assert back == m
    assert LabelMapping.from_json(DEFAULT_LABEL_MAPPING.to_json()) == DEFAULT_LABEL_MAPPING
    assert list(LabelMapping.from_json(m.to_json()).class_names) == ["background", "kidney"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"class_names": ()},
        {"class_names": ("a", "a")},
        {"class_names": ("a", "b"), "ignore_index": 1},
        {"class_names": ("a",), "ignore_index": 300},
        {"class_names": ("a",), "aliases": {"x": "missing"}},
    ],
)
def test_invalid_mappings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LabelMapping(**kwargs)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown"):
        LabelMapping.from_dict({"class_names": ["a"], "colour": "red"})
    with pytest.raises(ValueError, match="class_names"):
        LabelMapping.from_dict({})


def test_invalid_values_and_names_present() -> None:
    mask = np.array([[0, 6, 255], [12, 40, 6]], dtype=np.uint8)
    assert DEFAULT_LABEL_MAPPING.invalid_values(mask) == [12, 40]
    assert DEFAULT_LABEL_MAPPING.names_present(mask) == ["background", "kidney"]


@given(arrays(np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 8))))
def test_mapped_masks_are_always_valid(raw: np.ndarray) -> None:
    out = DEFAULT_LABEL_MAPPING.map_raw(raw)
    assert DEFAULT_LABEL_MAPPING.invalid_values(out) == []
    assert np.all(out[raw >= 100] == 255)
    small = raw < len(STUDY_CLASSES)
    assert np.array_equal(out[small], raw[small])


def test_default_mapping_is_htcs_study_mapping() -> None:
    """htc's settings_species.label_mapping: background materials -> background, meso ->
    small_bowel, every other name outside the 12 classes -> ignore."""
    from datasets.labels import BACKGROUND_MATERIALS, STUDY_NAME_ALIASES

    m = DEFAULT_LABEL_MAPPING
    assert len(BACKGROUND_MATERIALS) == 16
    for name in BACKGROUND_MATERIALS:
        assert m.index_of(name) == m.index_of("background") == 0, name
    assert m.index_of("meso") == m.index_of("small_bowel") == 2
    for name in ("heart", "gallbladder", "fat_visceral", "unlabeled", "overlap", "Metal"):
        assert m.index_of(name) == m.ignore_index == 255, name
    assert set(STUDY_NAME_ALIASES) == {*BACKGROUND_MATERIALS, "meso"}
    raw_names = {0: "background", 1: "metal", 2: "meso", 3: "heart", 4: "kidney", 150: "liver"}
    raw = np.array([[0, 1, 2], [3, 4, 150]], dtype=np.uint8)
    np.testing.assert_array_equal(m.map_raw(raw, raw_names), [[0, 0, 2], [255, 6, 255]])
