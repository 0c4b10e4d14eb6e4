"""Test-set planning: how many test subjects (and images per subject) separate two methods.

Why: challenge test sets in this field are small, and a hidden test set that cannot separate
methods differing by a relevant margin ranks noise. This module answers, from a phase's
fitted variance components (or an organizer's pilot scores), how many subjects are needed to
declare two methods different with a chosen power at the phase's significance level, under
the platform's model ``y ~ method + (1|subject) + (1|subject:case) + (1|subject:method)``.

The approximation (balanced design, n subjects, m images each, k methods): the subject and
image effects are shared by all methods and cancel in a contrast, so

    Var(mean_a - mean_b) = 2 (s2_subject_method + s2_residual / m) / n,

and for balanced data the REML estimate of that variance is 2 MS_sm / (n m), where MS_sm
(the subject x method mean square) has (n - 1)(k - 1) degrees of freedom: this is also the
Satterthwaite df of the contrast. The test is a t test with that df, so the power is a
noncentral t probability. Holm over all k(k-1)/2 pairs is bounded by Bonferroni
(``n_comparisons``): the plan is conservative for Holm. Pure functions, no Django.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import logit

#: Target power of a plan, and the DSC margin an organizer sees first.
DEFAULT_POWER = 0.8
DEFAULT_MARGIN = 0.05
#: The largest test set a plan searches (beyond it: "not reachable").
MAX_SUBJECTS = 100_000
#: Images per subject shown in a plan's table (and the phase's own number).
IMAGE_OPTIONS = (1, 2, 5, 10, 20)


@dataclass(frozen=True)
class VarianceComponents:
    """Variance components on the model scale (logit for bounded metrics)."""

    residual: float
    subject_method: float = 0.0
    subject_case: float = 0.0
    subject: float = 0.0

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"variance component {name} must be finite and >= 0, got {v}")
        if self.residual + self.subject_method <= 0:
            raise ValueError("residual and subject x method variance are both 0: nothing to plan")

    @classmethod
    def from_model(cls, components: Mapping[str, float | None]) -> VarianceComponents:
        """From ``ModelInfo.variance_components`` (keys residual, subject, subject:case,
        subject:method); a term the fitted model dropped counts as 0."""
        if components.get("residual") is None:
            raise ValueError("no residual variance: the ranking used no mixed model")

        def get(key: str) -> float:
            v = components.get(key)
            return 0.0 if v is None else max(float(v), 0.0)

        return cls(
            residual=get("residual"),
            subject_method=get("subject:method"),
            subject_case=get("subject:case"),
            subject=get("subject"),
        )


def contrast_variance(vc: VarianceComponents, n_subjects: int, images_per_subject: float) -> float:
    """Variance of a difference of two method means, balanced design."""
    if n_subjects < 1 or images_per_subject < 1:
        raise ValueError("n_subjects and images_per_subject must be >= 1")
    return 2.0 * (vc.subject_method + vc.residual / images_per_subject) / n_subjects


def contrast_df(n_subjects: int, n_methods: int = 2) -> int:
    """Satterthwaite df of a pairwise contrast in the balanced design: (n - 1)(k - 1)."""
    return max(n_subjects - 1, 0) * max(n_methods - 1, 1)


def power(
    delta: float,
    vc: VarianceComponents,
    n_subjects: int,
    images_per_subject: float,
    *,
    n_methods: int = 2,
    alpha: float = 0.05,
    n_comparisons: int = 1,
) -> float:
    """Probability that a two-sided t test at alpha / n_comparisons declares two methods
    that differ by ``delta`` (model scale) different."""
    df = contrast_df(n_subjects, n_methods)
    if df < 1:
        return 0.0
    ncp = abs(delta) / math.sqrt(contrast_variance(vc, n_subjects, images_per_subject))
    q = stats.t.ppf(1 - alpha / (2 * max(n_comparisons, 1)), df)
    p = float(stats.nct.sf(q, df, ncp) + stats.nct.cdf(-q, df, ncp))
    if not math.isfinite(p):  # scipy's nct gives NaN far in the tail: power is then ~1
        p = float(stats.norm.sf(q - ncp) + stats.norm.cdf(-q - ncp))
    return min(max(p, 0.0), 1.0)


def required_subjects(
    delta: float,
    vc: VarianceComponents,
    images_per_subject: float,
    *,
    target: float = DEFAULT_POWER,
    n_methods: int = 2,
    alpha: float = 0.05,
    n_comparisons: int = 1,
    max_subjects: int = MAX_SUBJECTS,
) -> int | None:
    """The smallest number of subjects (>= 2) reaching ``target`` power; None if even
    ``max_subjects`` do not (power rises with n, so a bisection finds it)."""
    if delta == 0:
        return None

    def ok(n: int) -> bool:
        return (
            power(
                delta,
                vc,
                n,
                images_per_subject,
                n_methods=n_methods,
                alpha=alpha,
                n_comparisons=n_comparisons,
            )
            >= target
        )

    lo, hi = 1, 2  # not ok(lo): power is 0 with one subject; double hi until ok(hi)
    while not ok(hi):
        if hi >= max_subjects:
            return None
        lo, hi = hi, min(2 * hi, max_subjects)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return max(hi, 2)


def margin_on_model_scale(margin: float, baseline: float, transform: str = "logit") -> float:
    """A score margin (e.g. 0.05 DSC) as a model-scale difference: between ``baseline`` and
    ``baseline - margin`` on the logit scale for bounded metrics."""
    if margin <= 0:
        raise ValueError("the margin must be > 0")
    if transform == "identity":
        return float(margin)
    if not 0 < baseline - margin < baseline < 1:
        raise ValueError(
            f"a margin of {margin:g} below a baseline of {baseline:.3f} leaves the (0, 1) range"
        )
    return float(logit(baseline) - logit(baseline - margin))


@dataclass(frozen=True)
class TestSetPlan:
    """What an organizer reads: subjects needed now and for other numbers of images."""

    __test__ = False  # not a pytest test class

    margin: float
    baseline: float | None
    delta_model: float
    target_power: float
    alpha: float
    n_methods: int
    n_comparisons: int
    current_subjects: int
    current_images_per_subject: float
    power_now: float
    required_subjects: int | None  # at the current images per subject
    options: list[dict[str, Any]] = field(default_factory=list)  # images -> subjects
    components: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def enough(self) -> bool:
        return self.power_now >= self.target_power

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(
    vc: VarianceComponents,
    *,
    margin: float = DEFAULT_MARGIN,
    baseline: float | None = None,
    transform: str = "logit",
    current_subjects: int,
    images_per_subject: float,
    n_methods: int = 2,
    alpha: float = 0.05,
    target: float = DEFAULT_POWER,
    n_comparisons: int = 1,
    image_options: Sequence[float] = IMAGE_OPTIONS,
) -> TestSetPlan:
    """Power of the current test set for ``margin`` and the subjects needed for ``target``
    power at the current and at other numbers of images per subject."""
    delta = margin_on_model_scale(margin, baseline if baseline is not None else 0.5, transform)
    kw = dict(n_methods=max(n_methods, 2), alpha=alpha, n_comparisons=n_comparisons)
    m_now = max(float(images_per_subject), 1.0)
    need = required_subjects(delta, vc, m_now, target=target, **kw)
    options = []
    for m in sorted({*map(float, image_options), m_now}):
        options.append(
            {
                "images_per_subject": m,
                "subjects": required_subjects(delta, vc, m, target=target, **kw),
                "current": m == m_now,
            }
        )
    notes = []
    floor = 2.0 * vc.subject_method
    if floor > 0 and floor >= 2.0 * vc.residual / m_now:
        notes.append(
            "Most of the contrast variance is subject x method variation: more images per "
            "subject barely help; more subjects do."
        )
    return TestSetPlan(
        margin=float(margin),
        baseline=None if baseline is None else float(baseline),
        delta_model=delta,
        target_power=float(target),
        alpha=float(alpha),
        n_methods=int(n_methods),
        n_comparisons=int(n_comparisons),
        current_subjects=int(current_subjects),
        current_images_per_subject=m_now,
        power_now=power(delta, vc, max(int(current_subjects), 1), m_now, **kw),
        required_subjects=need,
        options=options,
        components=asdict(vc),
        notes=notes,
    )


def plan_from_result(
    result: Mapping[str, Any],
    *,
    margin: float = DEFAULT_MARGIN,
    target: float = DEFAULT_POWER,
    all_pairs: bool = True,
) -> TestSetPlan:
    """Plan from a stored ranking result (``RankingResult.to_dict()``): its variance
    components, alpha, scale, subjects, images per subject and methods. The baseline of a
    bounded metric is the median of the methods' model-based means. ``all_pairs``: Bonferroni
    over every pair of the phase's methods (conservative for the Holm adjustment used).

    Raises ValueError when the ranking used no mixed model (no variance components)."""
    model = result.get("model") or {}
    vc = VarianceComponents.from_model(model.get("variance_components") or {})
    transform = model.get("transform") or "identity"
    estimates = [m.get("estimate") for m in result.get("methods", [])]
    estimates = [e for e in estimates if e is not None]
    baseline = float(np.median(estimates)) if estimates else None
    k = int(result.get("n_methods") or 2)
    n_subjects = int(result.get("n_subjects") or 0)
    n_cases = int(result.get("n_cases") or 0)
    alpha = float((result.get("settings") or {}).get("alpha") or 0.05)
    return plan(
        vc,
        margin=margin,
        baseline=baseline,
        transform=transform,
        current_subjects=n_subjects,
        images_per_subject=n_cases / n_subjects if n_subjects else 1.0,
        n_methods=k,
        alpha=alpha,
        target=target,
        n_comparisons=k * (k - 1) // 2 if all_pairs and k > 2 else 1,
    )


def plan_from_scores(
    scores: Any,
    *,
    metric: str = "dsc",
    margin: float = DEFAULT_MARGIN,
    target: float = DEFAULT_POWER,
    alpha: float = 0.05,
    all_pairs: bool = True,
) -> TestSetPlan:
    """Plan from pilot scores (a table with columns method, case, subject and ``metric``):
    the engine's own model is fitted to them first (no bootstrap)."""
    from .engine import rank_methods

    result = rank_methods(scores, metric=metric, n_bootstrap=0, alpha=alpha)
    return plan_from_result(result.to_dict(), margin=margin, target=target, all_pairs=all_pairs)
