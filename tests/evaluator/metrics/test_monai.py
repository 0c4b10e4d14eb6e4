"""score_image against MONAI, the reference implementation, without MONAI installed.

scripts/reference/monai_metrics.py runs in an optional environment with MONAI
(requirements-bench.txt) and commits MONAI's per-class values for a set of
deterministic cases, with the parameters that regenerate each case, to
data/monai_expected.json. Here the label maps are regenerated (their hashes prove
they are the maps MONAI saw) and scored by us. Where MONAI is installed, the last
test recomputes its values and checks that the committed file is current.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from evaluator.metrics import (
    METRICS,
    STATUS_OK,
    STATUS_PRED_EMPTY,
    STATUS_REF_EMPTY,
    image_diagonal,
    score_image,
)
from scripts.reference.monai_metrics import array_digest, build_case, decode, tolerances

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(__file__).parent / "data" / "monai_expected.json"
EXPECTED: dict[str, Any] = json.loads(DATA.read_text())
CASES: list[dict[str, Any]] = EXPECTED["cases"]
IDS = [case["spec"]["name"] for case in CASES]

# MONAI computes in float32, we in float64. DSC, IoU, NSD are ratios of integers:
# one float32 rounding (largest gap on these cases ~3e-8). Distances are float32
# square roots of integers and float32 means (~2e-6). HD95 differs most (~1e-5):
# torch.quantile computes the interpolation position in float32 (on the same
# distances in float64 it equals ours exactly).
ABS_TOL = {
    "dsc": 1e-7,
    "iou": 1e-7,
    "nsd": 1e-7,
    "hd": 1e-5,
    "masd": 1e-5,
    "assd": 1e-5,
    "hd95": 1e-4,
}


def _case(case: dict[str, Any], scored_classes: str = "union"):
    spec = case["spec"]
    pred, ref = build_case(spec)
    scores = score_image(
        pred,
        ref,
        num_classes=spec["num_classes"],
        ignore_index=EXPECTED["settings"]["ignore_index"],
        nsd_tolerance=tolerances(spec),
        case_id=spec["name"],
        scored_classes=scored_classes,
    )
    return pred, ref, {row["label"]: row for row in scores.rows}


def _monai_rows(case: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """MONAI rows of one kind: "both" (class in both masks), "pred_empty", "ref_empty", "none"."""
    has = {
        "both": lambda p, r: p > 0 and r > 0,
        "pred_empty": lambda p, r: p == 0 and r > 0,
        "ref_empty": lambda p, r: p > 0 and r == 0,
        "none": lambda p, r: p == 0 and r == 0,
    }[kind]
    return [row for row in case["monai"] if has(row["pred_pixels"], row["ref_pixels"])]


def test_committed_values_come_from_the_pinned_monai():
    pins = dict(
        re.findall(
            r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements-bench.txt").read_text(), re.M
        )
    )
    assert EXPECTED["versions"]["monai"] == pins["monai"]
    settings = EXPECTED["settings"]
    assert settings["include_background"] is True and settings["spacing"] is None


def test_every_edge_case_is_covered():
    """A regeneration that drops a kind of case must fail here, not silently test less."""
    for kind in ("both", "pred_empty", "ref_empty", "none"):
        assert any(_monai_rows(case, kind) for case in CASES), kind
    assert any(0.0 in tolerances(case["spec"]) for case in CASES)
    assert any(case["spec"].get("ignore_rate") for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cases_regenerate_bit_for_bit(case):
    pred, ref = build_case(case["spec"])
    assert {"pred": array_digest(pred), "ref": array_digest(ref)} == case["sha256"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_values_as_monai_where_the_class_is_in_both_masks(case):
    _, _, ours = _case(case)
    for expected in _monai_rows(case, "both"):
        row = ours[expected["label"]]
        assert row["status"] == STATUS_OK
        assert (row["pred_pixels"], row["ref_pixels"]) == (
            expected["pred_pixels"],
            expected["ref_pixels"],
        )
        for metric in METRICS:
            assert row[metric] == pytest.approx(decode(expected[metric]), abs=ABS_TOL[metric]), (
                expected["label"],
                metric,
            )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_convention_scores_the_classes_monai_does_not_leave_nan(case):
    """``scored_classes="reference"`` (htc's convention, the default) has a row exactly for
    the classes of the reference: MONAI's DSC is NaN (ignore_empty) for the others, so the
    image mean equals MONAI's nan-mean, as htc's image DSC does. A class only predicted
    keeps its pixels in the confusion matrix but adds no row."""
    _, _, ours = _case(case, scored_classes="reference")
    reference = {row["label"] for row in case["monai"] if row["ref_pixels"] > 0}
    assert set(ours) == reference
    union = _case(case, scored_classes="union")[2]
    for label, row in ours.items():
        assert row == union[label]
    monai_dsc = [decode(row["dsc"]) for row in case["monai"]]
    finite = [v for v in monai_dsc if not math.isnan(v)]
    if finite:
        mean = sum(row["dsc"] for row in ours.values()) / len(ours)
        assert mean == pytest.approx(sum(finite) / len(finite), abs=1e-7)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_class_in_one_mask_only_gets_worst_values_where_monai_has_none(case):
    """Under ``scored_classes="union"`` (Metrics Reloaded): worst values in the row. MONAI
    gives DSC/IoU 0 for a missed class but NaN (ignore_empty) for a false class, NSD 0,
    HD/ASSD/MASD inf and HD95 NaN; such values would vanish from or poison any mean. A missed
    class gets the same worst row under ``reference``."""
    pred, _, ours = _case(case)
    diag = image_diagonal(*pred.shape)
    for kind, status in (("pred_empty", STATUS_PRED_EMPTY), ("ref_empty", STATUS_REF_EMPTY)):
        for expected in _monai_rows(case, kind):
            row = ours[expected["label"]]
            assert row["status"] == status
            assert (row["dsc"], row["iou"], row["nsd"]) == (0.0, 0.0, 0.0)
            assert [row[m] for m in ("hd95", "hd", "masd", "assd")] == [diag] * 4
            monai = {m: decode(expected[m]) for m in METRICS}
            overlap = 0.0 if kind == "pred_empty" else math.nan
            assert monai["dsc"] == pytest.approx(overlap, nan_ok=True)
            assert monai["iou"] == pytest.approx(overlap, nan_ok=True)
            assert monai["nsd"] == 0.0
            assert math.isnan(monai["hd95"])
            assert [monai[m] for m in ("hd", "masd", "assd")] == [math.inf] * 3


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_class_in_neither_mask_has_no_row_where_monai_gives_nan(case):
    _, _, ours = _case(case)
    for expected in _monai_rows(case, "none"):
        assert expected["label"] not in ours
        assert all(math.isnan(decode(expected[m])) for m in METRICS)
    assert set(ours) == {
        row["label"] for row in case["monai"] if row["pred_pixels"] or row["ref_pixels"]
    }


def test_committed_values_are_what_monai_computes_now():
    """Runs only where MONAI is installed: the committed file must be current."""
    pytest.importorskip("torch")
    pytest.importorskip("monai.metrics", exc_type=ImportError)
    from scripts.reference.monai_metrics import monai_scores

    for case in CASES:
        pred, ref = build_case(case["spec"])
        for now, committed in zip(
            monai_scores(pred, ref, case["spec"]), case["monai"], strict=True
        ):
            assert now["label"] == committed["label"]
            for metric in METRICS:
                assert decode(now[metric]) == pytest.approx(
                    decode(committed[metric]), abs=ABS_TOL[metric], nan_ok=True
                ), (case["spec"]["name"], now["label"], metric)
