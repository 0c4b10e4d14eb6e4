import warnings

import numpy as np
import pytest
import scipy.stats as st

from evaluator.ranking.bootstrap import kendall_tau_b, subject_bootstrap
from evaluator.ranking.schemes import run_schemes
from evaluator.ranking.wilcoxon import pairwise_greater


@pytest.mark.parametrize("n", [2, 5, 10, 14, 30, 50, 51, 120])
@pytest.mark.parametrize("kind", ["continuous", "ties", "zeros"])
def test_wilcoxon_equals_scipy(n, kind):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(5, n))
    if kind == "ties":
        x = np.round(x)
    if kind == "zeros":
        x[1] = x[0]
        x[2, : n // 2] = x[3, : n // 2]
    p = pairwise_greater(x)
    for i in range(5):
        for j in range(5):
            if i == j:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = st.wilcoxon(x[i], x[j], alternative="greater").pvalue
            if np.isnan(ref):
                assert np.isnan(p[i, j])
            else:
                assert p[i, j] == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_wilcoxon_permutation_boundary_n13_equals_scipy():
    # n = 13 with ties: scipy enumerates all 2**13 sign flips (slow there, so one pair only)
    x = np.round(np.random.default_rng(13).normal(size=(2, 13)))
    p = pairwise_greater(x)
    for i, j in ((0, 1), (1, 0)):
        ref = st.wilcoxon(x[i], x[j], alternative="greater").pvalue
        assert p[i, j] == pytest.approx(ref, rel=1e-12)


def test_kendall_tau_equals_scipy():
    rng = np.random.default_rng(0)
    ranks = rng.integers(1, 6, size=(300, 7))
    ref = rng.integers(1, 5, size=7)
    tau = kendall_tau_b(ranks, ref)
    expected = np.array([st.kendalltau(r, ref).statistic for r in ranks])
    np.testing.assert_allclose(tau, expected, atol=1e-14)
    flat = kendall_tau_b(np.ones((1, 7)), ref)
    assert np.isnan(flat[0])


def test_schemes_hand_example():
    # 3 methods x 4 cases, higher is better
    x = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.1, 0.1]])
    s = run_schemes(x)
    assert list(s["ranks"]["mean_then_rank"]) == [1, 2, 3]
    assert list(s["ranks"]["median_then_rank"]) == [1, 2, 3]
    # per-case ranks (min ties): case1 [1,3,1], case2 [1,2,3], case3 [1,2,3], case4 [2,1,2]
    np.testing.assert_allclose(s["scores"]["rank_then_mean"], [1.25, 2.0, 2.25])
    assert list(s["ranks"]["rank_then_mean"]) == [1, 2, 3]
    assert list(s["ranks"]["test_then_rank"]) == [1, 1, 1]  # 4 cases: nothing significant


def test_test_then_rank_share_of_wins():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 60)) + np.array([0, 0, 1, 2])[:, None]
    s = run_schemes(x)
    assert list(s["ranks"]["test_then_rank"]) == [3, 3, 2, 1]
    assert s["scores"]["test_then_rank"][3] == pytest.approx(1.0)


def test_subject_bootstrap_is_seeded_and_cluster_based():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 40))
    subj = np.repeat(np.arange(10), 4)
    a = subject_bootstrap(x, subj, 200, seed=7)
    b = subject_bootstrap(x, subj, 200, seed=7)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    # replicate 0 by hand: the same subject draw reproduces the ranks
    counts = np.random.default_rng(7).multinomial(10, np.full(10, 0.1), size=200)[0]
    w = counts[subj]
    means = (x * w).sum(axis=1) / w.sum()
    np.testing.assert_array_equal(a.ranks[0], st.rankdata(-means, method="min"))
    np.testing.assert_allclose(a.tau[0], st.kendalltau(a.ranks[0], a.full_ranks).statistic)


def test_holm_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from evaluator.ranking.schemes import holm

    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 190):
        p = rng.uniform(0, 0.2, m) ** 2
        p[: m // 3] = p[0]  # ties
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    p = np.array([[0.01, np.nan], [0.04, 0.03]])
    got = holm(p)
    assert np.isnan(got[0, 1])
    np.testing.assert_allclose(
        got[~np.isnan(p)], multipletests([0.01, 0.04, 0.03], method="holm")[1]
    )
