import numpy as np
import pandas as pd
import pytest

from evaluator.ranking import RankingError, rank_methods

from .simdata import simulate


def _df(rows):
    return pd.DataFrame(rows, columns=["method", "case", "subject", "dsc"])


def test_one_method():
    df = simulate(k=1, n_subjects=5, cases_per_subject=3, seed=0)
    res = rank_methods(df, n_bootstrap=50)
    assert res.n_methods == 1 and res.methods[0].rank == 1 and res.methods[0].tier == 1
    assert res.contrasts == [] and res.significance == [[0]]
    assert res.methods[0].ci_low < res.methods[0].estimate < res.methods[0].ci_high
    assert any("only one method" in w for w in res.warnings)
    assert res.bootstrap.kendall_tau["n_undefined"] == 50


def test_two_methods():
    df = simulate(k=2, n_subjects=6, cases_per_subject=3, seed=0, effects=[0, 2.0])
    res = rank_methods(df, n_bootstrap=100)
    assert res.method_names == ["method_1", "method_0"]
    assert len(res.contrasts) == 1 and res.contrasts[0].significant
    assert [m.tier for m in res.methods] == [1, 2]


def test_one_subject():
    df = simulate(k=3, n_subjects=1, cases_per_subject=12, seed=0, effects=[0, 1, 2])
    res = rank_methods(df, n_bootstrap=20)
    assert res.model.model in ("case_only", "paired_means")
    assert res.n_subjects == 1
    assert any("one subject" in w for w in res.warnings)
    assert all(m.boot_rank_low == m.boot_rank_high == m.rank for m in res.methods)


def test_all_equal_scores():
    df = simulate(k=3, n_subjects=4, cases_per_subject=2, seed=0)
    df["dsc"] = 0.7
    res = rank_methods(df, n_bootstrap=20)
    assert res.model.model == "identical"
    assert all(m.rank == 1 and m.tier == 1 for m in res.methods)
    assert all(c.p_holm == 1.0 and not c.significant for c in res.contrasts)
    assert all(r == 1 for m in res.methods for r in m.scheme_ranks.values())


def test_identical_methods_varying_cases():
    df = simulate(k=3, n_subjects=4, cases_per_subject=2, seed=0)
    df["dsc"] = df.groupby("case")["dsc"].transform("first")
    res = rank_methods(df, n_bootstrap=20)
    assert res.model.model == "identical"
    assert {m.rank for m in res.methods} == {1}


def test_nan_and_inf_become_missing_worst():
    df = simulate(k=3, n_subjects=4, cases_per_subject=3, seed=0)
    df.loc[0, "dsc"] = np.nan
    df.loc[1, "dsc"] = np.inf
    res = rank_methods(df, n_bootstrap=10)
    m0 = res.method("method_0")
    assert m0.n_missing == 2 and m0.n_scored == 10 and res.n_missing == 2
    assert any("NaN or infinite" in w for w in res.warnings)
    assert any("worst value 0" in w for w in res.warnings)


def test_missing_pairs_worst_or_error():
    df = simulate(k=3, n_subjects=4, cases_per_subject=3, seed=0)
    df = df.drop(index=[0, 1, 2])
    res = rank_methods(df, n_bootstrap=10)
    assert res.method("method_0").n_missing == 3
    assert res.method("method_0").mean == pytest.approx(
        df[df.method == "method_0"]["dsc"].sum() / 12
    )
    with pytest.raises(RankingError, match="missing='error'"):
        rank_methods(df, missing="error")


def test_unbounded_lower_is_better_worst_observed():
    df = simulate(bounded=False, k=3, n_subjects=4, cases_per_subject=3, seed=0, effects=[0, -3, 3])
    df = df.drop(index=[0])
    res = rank_methods(df, bounded=False, higher_is_better=False, n_bootstrap=10)
    assert res.method_names[0] == "method_1"
    assert res.settings["worst_value"] == pytest.approx(df["dsc"].max())
    assert res.model.transform == "identity"


def test_one_case():
    df = _df([["a", "c1", "s1", 0.5], ["b", "c1", "s1", 0.7]])
    res = rank_methods(df, n_bootstrap=5)
    assert res.model.model == "none"
    assert res.method_names == ["b", "a"]
    assert res.contrasts[0].p_holm is None and not res.contrasts[0].significant


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame({"method": ["a"], "case": ["c"]}), {}, "lacks column"),
        (_df([]), {}, "empty"),
        (_df([["a", "c", "s", 0.5], ["a", "c", "s", 0.6]]), {}, "share a"),
        (_df([["a", "c", "s", 0.5], ["b", "c", "t", 0.6]]), {}, "several subjects"),
        (_df([["a", "c", "s", 1.5]]), {}, "outside"),
        (_df([["a", "c", "s", "x"]]), {}, "not numeric"),
        (_df([["a", "c", "s", np.nan]]), {}, "no finite"),
        (_df([["a", "c", "s", 0.5]]), {"missing": "drop"}, "missing must be"),
        (_df([["a", "c", "s", 0.5]]), {"alpha": 2}, "alpha"),
        ("not a frame", {}, "DataFrame"),
    ],
)
def test_bad_input_raises_ranking_error(frame, kwargs, message):
    with pytest.raises(RankingError, match=message):
        rank_methods(frame, **kwargs)
