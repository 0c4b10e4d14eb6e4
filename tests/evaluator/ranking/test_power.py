"""Test-set planning (evaluator.ranking.power) against closed-form cases."""

import math

import numpy as np
import pytest
from scipy.special import expit
from statsmodels.stats.power import TTestPower

from evaluator.ranking.power import (
    VarianceComponents,
    contrast_df,
    contrast_variance,
    margin_on_model_scale,
    plan,
    plan_from_result,
    plan_from_scores,
    power,
    required_subjects,
)

from .simdata import simulate


def test_two_methods_one_image_is_the_paired_t_test():
    # Two methods, one image per subject: the contrast is a paired t test on n differences
    # with variance 2 (s2_sm + s2_e) and n - 1 df, whose power statsmodels computes directly.
    vc = VarianceComponents(residual=0.25, subject_method=0.09, subject_case=0.3, subject=0.4)
    delta = 0.3
    sd_diff = math.sqrt(2 * (0.09 + 0.25))
    for n in (5, 12, 40):
        expected = TTestPower().power(effect_size=delta / sd_diff, nobs=n, alpha=0.05)
        assert power(delta, vc, n, 1) == pytest.approx(expected, abs=1e-6)
    n_exact = TTestPower().solve_power(effect_size=delta / sd_diff, alpha=0.05, power=0.8)
    assert required_subjects(delta, vc, 1) == math.ceil(n_exact)


def test_variance_and_df_of_the_nested_design():
    vc = VarianceComponents(residual=0.5, subject_method=0.1, subject_case=9.0, subject=9.0)
    # subject and image effects cancel in a contrast; residual shrinks with images
    assert contrast_variance(vc, 10, 5) == pytest.approx(2 * (0.1 + 0.5 / 5) / 10)
    assert contrast_df(10, 2) == 9 and contrast_df(10, 4) == 27


def test_required_subjects_is_the_first_size_with_enough_power():
    vc = VarianceComponents(residual=0.25, subject_method=0.09)
    for m in (1, 3, 10):
        n = required_subjects(0.24, vc, m, n_methods=5, n_comparisons=10)
        assert power(0.24, vc, n, m, n_methods=5, n_comparisons=10) >= 0.8
        assert power(0.24, vc, n - 1, m, n_methods=5, n_comparisons=10) < 0.8
    # more images help less than more subjects; a large normal-theory case matches z
    n = required_subjects(0.05, vc, 4)
    z = (1.959964 + 0.841621) ** 2 * contrast_variance(vc, 1, 4) / 0.05**2
    assert abs(n - z) <= 3


def test_margin_on_the_logit_scale():
    assert margin_on_model_scale(0.05, 0.8) == pytest.approx(np.log(4) - np.log(0.75 / 0.25))
    assert margin_on_model_scale(0.05, 0.8, "identity") == 0.05
    with pytest.raises(ValueError):
        margin_on_model_scale(0.05, 0.03)


def test_plan_reports_current_power_and_options():
    vc = VarianceComponents(residual=0.25, subject_method=0.09)
    p = plan(vc, margin=0.05, baseline=expit(1.0), current_subjects=5, images_per_subject=3)
    assert not p.enough and p.power_now < 0.2
    assert p.required_subjects == required_subjects(p.delta_model, vc, 3)
    by_m = {o["images_per_subject"]: o["subjects"] for o in p.options}
    assert by_m[1.0] > by_m[3.0] > by_m[20.0]  # more images help, with diminishing returns
    assert [o for o in p.options if o["current"]][0]["images_per_subject"] == 3.0


def test_plan_from_result_and_pilot_scores():
    df = simulate(k=3, n_subjects=8, cases_per_subject=3, seed=4)
    p = plan_from_scores(df, margin=0.05)
    assert p.current_subjects == 8 and p.current_images_per_subject == 3
    assert p.n_methods == 3 and p.n_comparisons == 3
    assert p.required_subjects is not None and p.required_subjects > 8
    with pytest.raises(ValueError):
        plan_from_result({"model": {"variance_components": {}}})
