"""JSON round trip, consensus and figures."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from evaluator.ranking import RankingError, RankingResult, consensus, figures, rank_methods
from evaluator.ranking.consensus import ConsensusResult

from .simdata import simulate


@pytest.fixture(scope="module")
def ranked():
    df = simulate(k=4, n_subjects=8, cases_per_subject=3, seed=0, effects=[0, 0.3, 0.6, 1.0])
    df.loc[0, "dsc"] = np.nan
    return df, rank_methods(df, n_bootstrap=200, keep_bootstrap_ranks=True)


def test_json_round_trip(ranked):
    _, res = ranked
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = RankingResult.from_dict(json.loads(text))
    assert back == res
    assert back.to_dict() == d
    assert res.engine_version.startswith("xenobench-ranking")
    assert set(res.versions) >= {"numpy", "scipy", "statsmodels", "pandas"}


def test_result_carries_page_numbers(ranked):
    _, res = ranked
    m = res.methods[0]
    assert set(m.scheme_ranks) == {
        "mean_then_rank",
        "median_then_rank",
        "rank_then_mean",
        "test_then_rank",
    }
    assert sum(m.boot_rank_counts) == 200
    assert m.boot_rank_low <= m.boot_rank_median <= m.boot_rank_high
    assert res.bootstrap.kendall_tau["n"] == 200
    assert len(res.bootstrap.ranks) == 200
    assert res.model.variance_components["residual"] > 0
    assert res.model.eps == 1e-3
    frame = res.to_frame()
    assert list(frame["method"]) == res.method_names


def test_consensus_mean_rank_and_stability(ranked):
    _, res = ranked
    other = rank_methods(
        simulate(k=4, n_subjects=8, cases_per_subject=3, seed=5, effects=[1.0, 0.6, 0.3, 0]),
        n_bootstrap=200,
        keep_bootstrap_ranks=True,
    )
    cons = consensus({"dsc": res, "nsd": other.to_dict()})
    for m in cons.methods:
        expected = (res.method(m).rank + other.method(m).rank) / 2
        assert cons.mean_rank[m] == pytest.approx(expected)
    assert cons.bootstrap is not None and cons.bootstrap["n_bootstrap"] == 200
    assert set(cons.leave_one_out_tau) == {"dsc", "nsd"}
    back = ConsensusResult.from_dict(json.loads(json.dumps(cons.to_dict())))
    assert back == cons


def test_consensus_from_rank_tables_with_absent_method():
    t1 = pd.DataFrame({"method": ["a", "b", "c"], "rank": [1, 2, 3]})
    cons = consensus({"t1": t1, "t2": {"a": 2, "b": 1}})
    assert cons.rank == {"a": 1, "b": 1, "c": 3}
    assert cons.bootstrap is None
    assert any("absent" in w for w in cons.warnings)
    with pytest.raises(RankingError):
        consensus({})


def _is_svg(text: str) -> bool:
    root = ET.fromstring(text.encode())
    return root.tag.endswith("svg")


@pytest.mark.parametrize("k", [1, 2, 5])
def test_figures_are_valid_svg(k):
    df = simulate(k=k, n_subjects=5, cases_per_subject=3, seed=1, effects=np.linspace(0, 1, k))
    res = rank_methods(df, n_bootstrap=50, keep_bootstrap_ranks=True)
    svgs = [f(res) for f in figures.ALL_FIGURES.values()]
    svgs.append(figures.significance_map(res.to_dict(), kind="wilcoxon"))
    svgs += [f(res, df) for f in figures.TABLE_FIGURES.values()]
    svgs.append(figures.rank_heatmap({"a": res, "b": res.to_dict()}))
    svgs.append(figures.rank_heatmap(consensus({"a": res})))
    for svg in svgs:
        assert _is_svg(svg)
    assert res.method_names[0] in svgs[0]  # text kept as text (readable, searchable)
