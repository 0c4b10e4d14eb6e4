"""Trusted per-image segmentation metrics (pure NumPy/SciPy, no Django).

See docs/metrics.md for the definitions, the border definition and edge cases.
"""

from evaluator.metrics.boundary import border_mask, border_points
from evaluator.metrics.errors import ScoringError
from evaluator.metrics.scoring import (
    CASE_METRICS,
    COUNT_COLUMNS,
    DEFAULT_NSD_TOLERANCE,
    DEFAULT_SCORED_CLASSES,
    HIGHER_IS_BETTER,
    METRICS,
    SCORED_CLASSES,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_PRED_EMPTY,
    STATUS_REF_EMPTY,
    ImageScores,
    failed_case_rows,
    image_diagonal,
    score_image,
    score_task_image,
    scored_rows,
    worst_row,
    worst_rows,
)

__all__ = [
    "CASE_METRICS",
    "COUNT_COLUMNS",
    "DEFAULT_NSD_TOLERANCE",
    "DEFAULT_SCORED_CLASSES",
    "HIGHER_IS_BETTER",
    "METRICS",
    "SCORED_CLASSES",
    "STATUS_FAILED",
    "STATUS_MISSING",
    "STATUS_OK",
    "STATUS_PRED_EMPTY",
    "STATUS_REF_EMPTY",
    "ImageScores",
    "ScoringError",
    "border_mask",
    "border_points",
    "failed_case_rows",
    "image_diagonal",
    "score_image",
    "score_task_image",
    "scored_rows",
    "worst_row",
    "worst_rows",
]
