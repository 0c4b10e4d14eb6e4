"""Hierarchical aggregation, worst-value filling and the subject bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluator.aggregation import (
    AggregationError,
    aggregate_hierarchical,
    better,
    by_label,
    by_species,
    by_subject,
    by_tissue_state,
    cluster_bootstrap_ci,
    fill_missing_cases,
    higher_is_better,
    image_score,
    image_scores,
    scores_by,
    sort_key,
    submission_score,
    submission_scores,
)


def table() -> pd.DataFrame:
    # Subject A: two images; subject B: one image. Label 2 only in subject A.
    rows = [
        ("A#1", "A", 0, 1.0, "physiological", "pig"),
        ("A#1", "A", 2, 0.5, "physiological", "pig"),
        ("A#2", "A", 0, 0.6, "malperfused", "pig"),
        ("A#2", "A", 2, 0.3, "malperfused", "pig"),
        ("B#1", "B", 0, 0.2, "physiological", "rat"),
        ("B#1", "B", 1, 0.4, "physiological", "rat"),
    ]
    return pd.DataFrame(
        rows, columns=["case", "subject", "label", "dsc", "tissue_state", "species"]
    )


def test_hierarchy_by_hand():
    res = aggregate_hierarchical(table(), "dsc")
    # (A,0)=0.8 (B,0)=0.2 -> label 0: 0.5; label 1: 0.4; (A,2)=0.4 -> label 2: 0.4
    assert res.per_label.to_dict() == pytest.approx({0: 0.5, 1: 0.4, 2: 0.4})
    assert res.value == pytest.approx((0.5 + 0.4 + 0.4) / 3)
    assert (res.n_cases, res.n_subjects) == (3, 2)
    sl = res.per_subject_label.set_index(["subject", "label"])
    assert sl.loc[("A", 0), "n_cases"] == 2


def test_image_scores_mean_over_present_labels():
    img = image_scores(table(), metrics=["dsc"]).set_index("case")
    assert img.loc["A#1", "dsc"] == pytest.approx(0.75)
    assert img.loc["B#1", "dsc"] == pytest.approx(0.3)
    assert img.loc["A#2", "n_labels"] == 2
    assert img.loc["B#1", "species"] == "rat"


def test_breakdowns():
    ts = by_tissue_state(table(), "dsc").set_index("tissue_state")
    assert ts.loc["malperfused", "dsc"] == pytest.approx((0.6 + 0.3) / 2)
    assert ts.loc["physiological", "n_cases"] == 2
    sp = by_species(table(), "dsc").set_index("species")
    assert sp.loc["rat", "dsc"] == pytest.approx(0.3)
    assert sp.loc["pig", "n_subjects"] == 1


def test_image_score_is_the_mean_over_the_image_label_rows():
    rows = table()[table()["case"] == "A#1"].to_dict("records")
    assert image_score(rows, "dsc") == pytest.approx(0.75)
    # the same number as the per-case table
    assert (
        image_score(rows, "dsc")
        == image_scores(table(), ["dsc"]).set_index("case").loc["A#1", "dsc"]
    )
    assert np.isnan(image_score([], "dsc")) and image_score([], "dsc", empty=0.0) == 0.0
    assert np.isnan(image_score([{"label": 0, "hd95": None}, {"label": 1, "hd95": 3.0}], "hd95"))


def test_submission_score_by_hand_and_not_the_flat_mean():
    # (A,0)=(1.0+0.6)/2=0.8, (B,0)=0.2 -> label 0: 0.5; label 1: 0.4; label 2: (0.5+0.3)/2=0.4
    assert submission_score(table(), "dsc") == pytest.approx((0.5 + 0.4 + 0.4) / 3)
    assert table()["dsc"].mean() == pytest.approx(0.5)  # the flat mean differs: 0.5 != 0.433
    df = table().assign(hd95=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    # (A,0)=2, (B,0)=5 -> 3.5; label 1: 6; (A,2)=3 -> (3.5+6+3)/3
    assert submission_scores(df, ["dsc", "hd95", "nsd"]) == pytest.approx(
        {"dsc": 1.3 / 3, "hd95": 12.5 / 3, "nsd": None}
    )


def test_scores_by_submission_and_subject_use_the_same_hierarchy():
    two = pd.concat([table().assign(sub=1), table().assign(sub=2, dsc=table()["dsc"] / 2)])
    got = scores_by(two, "dsc", "sub").set_index("sub")["dsc"]
    assert got.to_dict() == pytest.approx({1: 1.3 / 3, 2: 1.3 / 6})
    subj = by_subject(table(), "dsc").set_index("subject")
    # subject A: label 0 -> 0.8, label 2 -> 0.4; subject B: label 0 -> 0.2, label 1 -> 0.4
    assert subj["dsc"].to_dict() == pytest.approx({"A": 0.6, "B": 0.3})
    assert by_label(table(), "dsc").to_dict() == pytest.approx({0: 0.5, 1: 0.4, 2: 0.4})


def test_direction_helpers():
    assert higher_is_better("dsc") and not higher_is_better("hd95")
    assert better(0.9, 0.8, "dsc") and not better(0.8, 0.9, "dsc")
    assert better(2.0, 5.0, "hd95") and not better(5.0, 2.0, "hd95")
    assert not better(0.5, 0.5, "dsc")  # ties are the caller's to break
    assert better(0.1, None, "dsc") and not better(None, 0.1, "dsc")
    assert better(0.1, float("nan"), "hd95") and not better(float("nan"), 0.1, "hd95")
    values = [0.3, None, 0.9, 0.5]
    assert sorted(values, key=sort_key("dsc")) == [0.9, 0.5, 0.3, None]
    assert sorted(values, key=sort_key("hd95")) == [0.3, 0.5, 0.9, None]
    with pytest.raises(AggregationError, match="unknown metric"):
        better(1.0, 0.0, "accuracy")


def expected() -> pd.DataFrame:
    rows = [
        ("A#1", 0, "A", "pig"),
        ("A#1", 2, "A", "pig"),
        ("A#2", 0, "A", "pig"),
        ("A#2", 2, "A", "pig"),
        ("B#1", 0, "B", "rat"),
        ("B#1", 1, "B", "rat"),
        ("B#2", 0, "B", "rat"),  # never predicted
    ]
    return pd.DataFrame(rows, columns=["case", "label", "subject", "species"])


def test_fill_missing_cases_worst_values_and_counts():
    df = table()[["case", "subject", "label", "dsc"]].assign(hd95=1.0)
    df.loc[df["case"] == "A#2", "dsc"] = np.nan  # a failed case
    df = pd.concat([df, pd.DataFrame([{"case": "X#9", "label": 0, "dsc": 1.0, "hd95": 0.0}])])
    filled, rep = fill_missing_cases(df, expected(), height=3, width=4)
    assert rep.missing_cases == ("B#2",) and rep.n_missing == 1
    assert rep.failed_cases == ("A#2",) and rep.n_failed == 1
    assert rep.unexpected_cases == ("X#9",)
    assert (rep.n_expected, rep.n_scored, rep.n_filled_labels) == (4, 2, 0)
    assert len(filled) == len(expected())
    a2 = filled[filled["case"] == "A#2"]
    assert (a2["dsc"] == 0).all() and (a2["hd95"] == 5.0).all() and (a2["status"] == "failed").all()
    b2 = filled[filled["case"] == "B#2"].iloc[0]
    assert (b2["dsc"], b2["nsd"], b2["subject"], b2["species"]) == (0, 0, "B", "rat")
    assert b2["status"] == "missing"
    assert filled["species"].notna().all()
    # Missing cases pull the aggregate down rather than vanishing.
    assert (
        aggregate_hierarchical(filled, "dsc").value < aggregate_hierarchical(table(), "dsc").value
    )


def test_fill_explicit_failures_and_missing_labels():
    df = table()[["case", "subject", "label", "dsc"]]
    df = df[~((df["case"] == "B#1") & (df["label"] == 1))]  # label lost
    filled, rep = fill_missing_cases(df, expected(), failed_cases=["A#1"])
    assert rep.failed_cases == ("A#1",)
    assert rep.n_filled_labels == 1
    row = filled[(filled["case"] == "B#1") & (filled["label"] == 1)].iloc[0]
    assert row["dsc"] == 0 and row["hd95"] == 800.0


def test_nan_metric_refuses_to_aggregate():
    df = table()
    df.loc[0, "dsc"] = np.nan
    with pytest.raises(AggregationError, match="fill_missing_cases"):
        aggregate_hierarchical(df, "dsc")


def synthetic(n_subjects=30, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        effect = rng.normal(0, 0.1)
        for i in range(rng.integers(1, 4)):
            for label in range(4):
                if rng.random() < 0.8:
                    rows.append((f"S{s}#{i}", f"S{s}", label, 0.7 + effect + rng.normal(0, 0.05)))
    return pd.DataFrame(rows, columns=["case", "subject", "label", "dsc"])


def test_bootstrap_deterministic_and_sane():
    df = synthetic()
    a = cluster_bootstrap_ci(df, "dsc", n_boot=500, seed=3)
    b = cluster_bootstrap_ci(df.sample(frac=1, random_state=0), "dsc", n_boot=500, seed=3)
    c = cluster_bootstrap_ci(df, "dsc", n_boot=500, seed=4)
    assert (a.low, a.high) == (b.low, b.high)  # row order does not matter
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low < a.estimate < a.high
    assert a.n_subjects == 30 and a.n_boot == 500
    assert (a.per_label["low"] <= a.per_label["estimate"]).all()
    assert (a.per_label["estimate"] <= a.per_label["high"]).all()


def test_bootstrap_matches_loop_implementation():
    df = synthetic(n_subjects=8, seed=2)
    n_boot, seed = 50, 9
    fast = cluster_bootstrap_ci(df, "dsc", n_boot=n_boot, seed=seed)
    subjects = sorted(df["subject"].unique())
    draws = np.random.default_rng(seed).integers(0, len(subjects), size=(n_boot, len(subjects)))
    values = []
    for draw in draws:
        parts = [
            df[df["subject"] == subjects[i]].assign(subject=f"r{j}") for j, i in enumerate(draw)
        ]
        values.append(aggregate_hierarchical(pd.concat(parts), "dsc").value)
    low, high = np.percentile(values, [2.5, 97.5])
    assert fast.low == pytest.approx(low, abs=1e-12)
    assert fast.high == pytest.approx(high, abs=1e-12)


def test_bootstrap_single_subject_collapses():
    df = table()[table()["subject"] == "A"]
    ci = cluster_bootstrap_ci(df, "dsc", n_boot=20, seed=0)
    assert ci.low == pytest.approx(ci.estimate) and ci.high == pytest.approx(ci.estimate)


def test_end_to_end_from_score_image():
    from evaluator.metrics import score_image
    from tests.evaluator.metrics.reference import blob_pair

    rng = np.random.default_rng(0)
    records, expected_rows = [], []
    for subject in ("P1", "P2"):
        for i in range(2):
            pred, ref = blob_pair(rng, shape=(30, 40), num_classes=4)
            case = f"{subject}#{i}"
            for label in np.unique(ref[ref != 255]).tolist():
                expected_rows.append({"case": case, "label": label, "subject": subject})
            if case != "P2#1":  # this prediction never arrived
                records += score_image(pred, ref, num_classes=4, case_id=case).records(
                    subject=subject
                )
    filled, rep = fill_missing_cases(pd.DataFrame(records), pd.DataFrame(expected_rows))
    assert rep.missing_cases == ("P2#1",)
    res = aggregate_hierarchical(filled, "nsd")
    assert 0 < res.value < 1 and res.n_cases == 4
    ci = cluster_bootstrap_ci(filled, "hd95", n_boot=200, seed=1)
    assert ci.low <= ci.estimate <= ci.high


def test_constant_scores_aggregate_to_the_constant():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=30),
        st.floats(0, 1),
    )
    def check(pairs, value):
        df = pd.DataFrame(
            [(f"S{s}#{i}", f"S{s}", label, value) for i, (s, label) in enumerate(pairs)],
            columns=["case", "subject", "label", "dsc"],
        )
        assert aggregate_hierarchical(df, "dsc").value == pytest.approx(value)
        ci = cluster_bootstrap_ci(df, "dsc", n_boot=30, seed=0)
        assert ci.low == pytest.approx(value) and ci.high == pytest.approx(value)

    check()
