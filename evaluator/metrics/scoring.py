"""Per-image scoring: confusion matrix, overlap and boundary metrics for all classes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluator.metrics.boundary import border_points
from evaluator.metrics.distances import nearest_border_distances
from evaluator.metrics.errors import ScoringError

if TYPE_CHECKING:
    from evaluator.taskspec import TaskSpec

#: Metric columns of a scored row; higher is better for the first three.
METRICS: tuple[str, ...] = ("dsc", "iou", "nsd", "hd95", "hd", "masd", "assd")
#: Metrics where larger values are better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "dsc": True,
    "iou": True,
    "nsd": True,
    "hd95": False,
    "hd": False,
    "masd": False,
    "assd": False,
}
#: Image-level metrics the platform stores per case and ranks; a task's primary metric is one.
CASE_METRICS: tuple[str, ...] = ("dsc", "nsd")
#: NSD tolerance in pixels used for every class when a task gives none.
DEFAULT_NSD_TOLERANCE = 1.0
COUNT_COLUMNS: tuple[str, ...] = (
    "tp",
    "fp",
    "fn",
    "ref_pixels",
    "pred_pixels",
    "ref_border",
    "pred_border",
)

#: Which classes an image is scored on (docs/metrics.md, "Scored classes"):
#: ``reference``: the classes present in the reference (htc's and the xeno-learning study's
#: convention; a class only predicted adds no row); ``union``: classes present in the
#: reference or the prediction (a class only predicted adds a row with the worst values).
SCORED_CLASSES: tuple[str, ...] = ("reference", "union")
DEFAULT_SCORED_CLASSES = "reference"

STATUS_OK = "ok"
STATUS_PRED_EMPTY = "pred_empty"  # class in the reference only (missed)
STATUS_REF_EMPTY = "ref_empty"  # class in the prediction only (false class)
STATUS_MISSING = "missing"  # no prediction for the case
STATUS_FAILED = "failed"  # prediction could not be scored


@dataclass(frozen=True)
class ImageScores:
    """Scores of one image: one row per scored class and the confusion matrix.

    ``confusion[r, p]`` counts valid pixels with reference label ``r`` and
    predicted label ``p`` (ignored reference pixels are excluded).
    """

    case_id: str
    rows: list[dict[str, Any]]
    confusion: np.ndarray
    height: int
    width: int
    labels: tuple[int, ...] = field(default=())

    def records(self, **extra: Any) -> list[dict[str, Any]]:
        """Rows with ``case`` and any extra columns (subject, species, ...) added."""
        return [{"case": self.case_id, **extra, **row} for row in self.rows]


def image_diagonal(height: int, width: int) -> float:
    """Worst distance value: the image diagonal sqrt(H^2 + W^2) in pixels."""
    return math.hypot(height, width)


def worst_row(label: int, height: int, width: int, status: str = STATUS_MISSING) -> dict[str, Any]:
    """Worst-value row for one label: DSC/IoU/NSD 0, distances = image diagonal."""
    diag = image_diagonal(height, width)
    return {
        "label": int(label),
        "dsc": 0.0,
        "iou": 0.0,
        "nsd": 0.0,
        "hd95": diag,
        "hd": diag,
        "masd": diag,
        "assd": diag,
        "status": status,
    }


def worst_rows(
    num_classes_present: int | Iterable[int],
    height: int,
    width: int,
    status: str = STATUS_MISSING,
) -> list[dict[str, Any]]:
    """Worst-value rows for a missing or failed case.

    ``num_classes_present`` is either the labels expected for the case (those of
    its reference) or a count ``n`` meaning labels ``0..n-1``.
    """
    if isinstance(num_classes_present, int | np.integer):
        labels: Iterable[int] = range(int(num_classes_present))
    else:
        labels = num_classes_present
    return [worst_row(int(label), height, width, status) for label in labels]


def _tolerances(nsd_tolerance: float | Sequence[float], num_classes: int, case: str) -> np.ndarray:
    tol = np.asarray(nsd_tolerance, dtype=np.float64)
    if tol.ndim == 0:
        tol = np.full(num_classes, float(tol))
    if tol.shape != (num_classes,):
        raise ScoringError(
            f"case {case!r}: nsd_tolerance needs one value per class "
            f"({num_classes}), got {tol.shape[0]}"
        )
    if not np.all(np.isfinite(tol)) or np.any(tol < 0):
        raise ScoringError(f"case {case!r}: nsd_tolerance must be finite and >= 0")
    return tol


def _validate(
    pred: Any, ref: Any, num_classes: int, ignore_index: int, case: str
) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if num_classes < 1:
        raise ScoringError(f"case {case!r}: num_classes must be >= 1, got {num_classes}")
    if 0 <= ignore_index < num_classes:
        raise ScoringError(
            f"case {case!r}: ignore_index {ignore_index} collides with a class in "
            f"[0, {num_classes})"
        )
    for name, arr in (("prediction", pred), ("reference", ref)):
        if arr.dtype.kind not in "iu":
            raise ScoringError(
                f"case {case!r}: {name} must be an integer label map, got dtype {arr.dtype}"
            )
        if arr.ndim != 2:
            raise ScoringError(f"case {case!r}: {name} must be 2D (H, W), got shape {arr.shape}")
        if arr.size == 0:
            raise ScoringError(f"case {case!r}: {name} is empty, shape {arr.shape}")
    if pred.shape != ref.shape:
        raise ScoringError(
            f"case {case!r}: shape mismatch, prediction {pred.shape} vs reference {ref.shape}"
        )
    lo, hi = int(pred.min()), int(pred.max())
    if lo < 0 or hi >= num_classes:
        bad = np.unique(pred[(pred < 0) | (pred >= num_classes)])[:10].tolist()
        raise ScoringError(
            f"case {case!r}: prediction has labels outside [0, {num_classes}): {bad}"
        )
    bad_ref = ((ref < 0) | (ref >= num_classes)) & (ref != ignore_index)
    if bad_ref.any():
        bad = np.unique(ref[bad_ref])[:10].tolist()
        raise ScoringError(
            f"case {case!r}: reference has labels outside [0, {num_classes}) "
            f"other than ignore_index {ignore_index}: {bad}"
        )
    return pred, ref


def score_image(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    num_classes: int,
    ignore_index: int = 255,
    nsd_tolerance: float | Sequence[float] = DEFAULT_NSD_TOLERANCE,
    case_id: str = "",
    scored_classes: str = DEFAULT_SCORED_CLASSES,
) -> ImageScores:
    """Score one predicted label map against its reference, all classes in one pass.

    Reference pixels equal to ``ignore_index`` are removed from both maps before
    anything is computed: they count in no confusion cell, and for the border
    definition they behave like pixels outside the image (see docs/metrics.md).
    A class present in neither map (on valid pixels) gets no row. A class in the
    reference but not predicted gets the worst values. A class only predicted gets
    no row with ``scored_classes="reference"`` (htc's convention, the default: an image's
    mean runs over its reference classes) and the worst values with ``"union"``. The
    confusion matrix counts every class either way.
    """
    if scored_classes not in SCORED_CLASSES:
        raise ScoringError(
            f"case {case_id!r}: scored_classes must be one of {SCORED_CLASSES}, "
            f"got {scored_classes!r}"
        )
    pred, ref = _validate(pred, ref, num_classes, ignore_index, case_id)
    tol = _tolerances(nsd_tolerance, num_classes, case_id)
    h, w = ref.shape
    k = num_classes
    void = k  # sentinel label for ignored pixels, in both maps
    dtype = np.int16 if k < np.iinfo(np.int16).max else np.int32
    valid = ref != ignore_index
    invalid = ~valid
    ref_l = ref.astype(dtype)
    ref_l[invalid] = void
    pred_l = pred.astype(dtype)
    pred_l[invalid] = void

    code = ref_l.astype(np.intp) * (k + 1) + pred_l
    confusion = np.bincount(code.ravel(), minlength=(k + 1) ** 2).reshape(k + 1, k + 1)[:k, :k]
    confusion = confusion.astype(np.int64, copy=False)
    ref_pixels = confusion.sum(axis=1)
    pred_pixels = confusion.sum(axis=0)
    tp = np.diagonal(confusion)
    both = (ref_pixels > 0) & (pred_pixels > 0)

    p_idx, p_lab = border_points(pred_l, void)
    r_idx, r_lab = border_points(ref_l, void)
    scored = np.zeros(k + 1, dtype=bool)
    scored[:k] = both
    d_pred = nearest_border_distances(p_idx, p_lab, r_idx, r_lab, (h, w), scored)
    d_ref = nearest_border_distances(r_idx, r_lab, p_idx, p_lab, (h, w), scored)
    p_groups = _split_by_label(d_pred, p_lab, k)
    r_groups = _split_by_label(d_ref, r_lab, k)

    rows: list[dict[str, Any]] = []
    present = (
        ref_pixels > 0 if scored_classes == "reference" else (ref_pixels > 0) | (pred_pixels > 0)
    )
    for c in np.flatnonzero(present).tolist():
        t, fp, fn = int(tp[c]), int(pred_pixels[c] - tp[c]), int(ref_pixels[c] - tp[c])
        counts = {
            "tp": t,
            "fp": fp,
            "fn": fn,
            "ref_pixels": int(ref_pixels[c]),
            "pred_pixels": int(pred_pixels[c]),
            "ref_border": int(r_groups[c].size),
            "pred_border": int(p_groups[c].size),
        }
        if not both[c]:
            status = STATUS_PRED_EMPTY if pred_pixels[c] == 0 else STATUS_REF_EMPTY
            rows.append({**worst_row(c, h, w, status), **counts})
            continue
        rows.append(
            {
                "label": c,
                **_overlap(t, fp, fn),
                **_boundary(p_groups[c], r_groups[c], float(tol[c])),
                "status": STATUS_OK,
                **counts,
            }
        )
    return ImageScores(
        case_id=case_id,
        rows=rows,
        confusion=confusion,
        height=h,
        width=w,
        labels=tuple(row["label"] for row in rows),
    )


def score_task_image(
    pred: np.ndarray, ref: np.ndarray, spec: TaskSpec, *, case_id: str = ""
) -> ImageScores:
    """:func:`score_image` with a validated task's classes, ignore index, tolerances and
    ``scored_classes`` convention; rows are limited to the task's scored labels (the confusion
    matrix keeps every class)."""
    scores = score_image(
        pred,
        ref,
        num_classes=spec.num_classes,
        ignore_index=spec.ignore_index,
        nsd_tolerance=spec.nsd_tolerances,
        case_id=case_id,
        scored_classes=spec.scored_classes,
    )
    rows = scored_rows(scores.rows, spec)
    return ImageScores(
        case_id=scores.case_id,
        rows=rows,
        confusion=scores.confusion,
        height=scores.height,
        width=scores.width,
        labels=tuple(row["label"] for row in rows),
    )


def scored_rows(rows: Iterable[dict[str, Any]], spec: TaskSpec) -> list[dict[str, Any]]:
    """The rows of the task's scored labels (all rows when the task scores every class)."""
    keep = set(spec.scored_indices)
    return [row for row in rows if row["label"] in keep]


def failed_case_rows(
    ref: np.ndarray, spec: TaskSpec, status: str = STATUS_FAILED
) -> list[dict[str, Any]]:
    """Worst-value rows of a case without a usable prediction: the scored classes present in
    its reference (ignored pixels and values outside the task's classes skipped)."""
    ref = np.asarray(ref)
    present = [
        int(v) for v in np.unique(ref) if v != spec.ignore_index and 0 <= v < spec.num_classes
    ]
    h, w = ref.shape[:2]
    return scored_rows(worst_rows(present, h, w, status=status), spec)


def _split_by_label(values: np.ndarray, labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Values grouped by label 0..k-1 (one stable sort instead of k masks)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    sorted_values = values[order]
    return [sorted_values[bounds[c] : bounds[c + 1]] for c in range(k)]


def _overlap(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {"dsc": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn)}


def _boundary(d_pred: np.ndarray, d_ref: np.ndarray, tol: float) -> dict[str, float]:
    """Boundary metrics from the two directed distance sets (both non-empty)."""
    n = d_pred.size + d_ref.size
    return {
        "nsd": int(np.count_nonzero(d_pred <= tol) + np.count_nonzero(d_ref <= tol)) / n,
        "hd95": float(max(np.percentile(d_pred, 95), np.percentile(d_ref, 95))),
        "hd": float(max(d_pred.max(), d_ref.max())),
        "masd": float((d_pred.mean() + d_ref.mean()) / 2),
        "assd": float((d_pred.sum() + d_ref.sum()) / n),
    }
