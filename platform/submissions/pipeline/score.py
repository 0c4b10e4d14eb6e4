"""Trusted scoring of a chunk's outputs against the labels (the labels never enter a sandbox).

Classes, ignore index, NSD tolerances, scored labels and the scored-classes convention
(``reference``: htc's, the default; ``union``) come from the task's TaskSpec. Per
(case, label) rows come from evaluator.metrics.score_image (or worst values for a failed
case); the per-case image score comes from evaluator.aggregation, the one place where scores
are averaged. Nothing is stored here: persist.py writes the rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from challenges.services import case_metadata
from evaluator.harness.errors import INVALID_OUTPUT

from ..models import Chunk
from .scratch import dataset_input

if TYPE_CHECKING:
    from evaluator.taskspec import TaskSpec

EMPTY_IMAGE_SCORE = 0.0  # an image without any scored label


@dataclass
class ChunkScores:
    """The rows of one chunk, as field dicts of CaseScore and LabelScore (no submission)."""

    cases: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0


def finite_or_none(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def scored_rows(rows: list[dict], spec: TaskSpec) -> list[dict]:
    """Only the labels the task scores (e.g. a kidney-malperfusion task scores the kidney)."""
    if not spec.scored_labels:
        return rows
    keep = set(spec.scored_indices)
    return [r for r in rows if r["label"] in keep]


def score_case(
    spec: TaskSpec, case_id: str, ref: np.ndarray, pred_path: Path | None, case_result
) -> tuple[list[dict], dict[str, Any]]:
    """Label rows and the case's outcome (ok, error, error_kind, confusion) for one case.

    `case_result` is the sandbox's CaseResult (None: the case produced nothing); a prediction
    that cannot be scored counts as the model's invalid output, with the worst values."""
    from evaluator.metrics import ScoringError, score_image, worst_rows

    error = ""
    error_kind = ""
    confusion: list = []
    rows: list[dict] = []
    if case_result is not None and case_result.ok and pred_path is not None:
        pred = np.load(pred_path, allow_pickle=False)
        try:
            scores = score_image(
                pred, ref, num_classes=spec.num_classes, ignore_index=spec.ignore_index,
                nsd_tolerance=spec.nsd_tolerances, case_id=case_id,
                scored_classes=spec.scored_classes,
            )  # fmt: skip
            rows = scores.rows
            confusion = scores.confusion.tolist()
        except ScoringError as exc:
            error, error_kind = str(exc), INVALID_OUTPUT
    else:
        error = (
            case_result.message if case_result else "no prediction was produced"
        ) or "no prediction was produced"
        error_kind = (case_result.error_kind if case_result else None) or "missing"
    if error:
        present = sorted(
            int(v) for v in np.unique(ref) if v != spec.ignore_index and v < spec.num_classes
        )
        rows = worst_rows(present, *ref.shape, status="failed")
    outcome = {"ok": not error, "error": error[:2000], "error_kind": error_kind}
    return scored_rows(rows, spec), {**outcome, "confusion": confusion}


def score_chunk(spec: TaskSpec, chunk: Chunk, result, out_dir: Path) -> ChunkScores:
    """Score every case of `chunk` from the label maps in `out_dir` (an InferenceResult's
    outputs, already validated by evaluator.inference); the label maps come from the test
    set's storage (pipeline/scratch.py), never through a sandbox."""
    ds = chunk.submission.phase.test_dataset
    with dataset_input(ds, list(chunk.case_ids), "labels") as labels_dir:
        return _score_cases(spec, chunk, result, out_dir, labels_dir)


def _score_cases(spec: TaskSpec, chunk: Chunk, result, out_dir: Path, labels_dir: Path):
    from evaluator.aggregation import image_score

    meta = case_metadata(chunk.submission.phase.test_dataset)
    names = spec.label_names
    out = ChunkScores()
    for case_id in chunk.case_ids:
        info = meta.get(case_id, {})
        ref = np.load(labels_dir / f"{case_id}.npy", allow_pickle=False)
        cr = result.cases.get(case_id)
        rows, outcome = score_case(spec, case_id, ref, out_dir / f"{case_id}.npy", cr)
        out.failures += not outcome["ok"]
        common = {
            "case_id": case_id,
            "subject": str(info.get("subject", "")),
            "tissue_state": info.get("tissue_state", ""),
            "species": info.get("species", ""),
        }
        for r in rows:
            out.labels.append(
                {
                    **common,
                    "label": r["label"],
                    "label_name": names[r["label"]] if r["label"] < len(names) else str(r["label"]),
                    "dsc": finite_or_none(r["dsc"]),
                    "iou": finite_or_none(r.get("iou")),
                    "nsd": finite_or_none(r["nsd"]),
                    "hd95": finite_or_none(r.get("hd95")),
                    "masd": finite_or_none(r.get("masd")),
                }
            )
        out.cases.append(
            {
                **common,
                **outcome,
                "dsc": image_score(rows, "dsc", empty=EMPTY_IMAGE_SCORE),
                "nsd": image_score(rows, "nsd", empty=EMPTY_IMAGE_SCORE),
            }
        )
    return out
