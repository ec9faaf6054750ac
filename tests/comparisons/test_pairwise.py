"""comparisons.csv (paired family table) and the category rankings of a results table."""

from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from xeval.comparisons import friedman_ranking, paired_test
from xeval.comparisons.pairwise import COMPARISON_COLUMNS, pairwise_comparisons
from xeval.comparisons.ranking import RANKING_COLUMNS, category_rankings, rankings_frame
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.results import make_row, results_frame

DETECTORS = ["det_a", "det_b"]
EXPLAINERS = {"det_a": ["native", "ig", "random"], "det_b": ["native", "random"]}
CATEGORIES = ["c1", "c2", "c3", "c4", "c5", "c6"]


def _per_image(seed=0, n=12):
    rng = np.random.default_rng(seed)
    rows = []
    for det in DETECTORS:
        for k, exp in enumerate(EXPLAINERS[det]):
            for cat in CATEGORIES[:2]:
                for i in range(n):
                    hi = rng.normal(0.5 + 0.1 * k, 0.1)
                    rows.append(
                        {
                            "category": cat,
                            "detector": det,
                            "explainer": exp,
                            "id": f"{cat}/{i:03d}",
                            "label": int(i % 3 != 0),
                            "defect": "x",
                            "image_score": 0.0,
                            "control": exp == "random",
                            "input_dependent": True,
                            "subsets": "",
                            "m_hi": hi if i % 3 else np.nan,  # NaN on normal images
                            "m_lo": rng.normal(1 - 0.1 * k, 0.1),
                            "m_unknown": 1.0,
                        }
                    )
    return pd.DataFrame(rows)


def _results(values=None):
    rows = []
    rng = np.random.default_rng(3)
    for det in DETECTORS:
        for exp in EXPLAINERS[det]:
            for label, hib, family in [
                ("m_hi", True, "localisation"),
                ("m_lo", False, "localisation"),
                ("image_auroc", True, "detection"),
            ]:
                for cat in [*CATEGORIES, "mean"]:
                    v = rng.uniform() if values is None else values(det, exp, label, cat)
                    rows.append(
                        make_row(
                            detector=det,
                            explainer=exp,
                            dataset="d",
                            category=cat,
                            metric=label,
                            label=label,
                            family=family,
                            headline=1,
                            value=v,
                            n=10,
                            higher_is_better=hib,
                            control=exp == "random",
                        )  # fmt: skip
                    )
    return results_frame(rows)


@pytest.fixture(scope="module")
def table():
    return pairwise_comparisons(_per_image(), _results(), n_boot=200, seed=4)


def test_columns_and_families(table):
    assert list(table.columns) == COMPARISON_COLUMNS
    assert table.attrs["skipped"] == ["m_unknown"]
    ex = table[table["kind"] == "explainers"]
    # det_a: 3 explainers -> 3 pairs per metric; det_b: 1 pair; real explainers first
    assert len(ex[(ex.detector == "det_a") & (ex.metric == "m_hi")]) == 3
    assert ex[(ex.detector == "det_b")][["a", "b"]].drop_duplicates().values.tolist() == [
        ["native", "random"]
    ]
    assert ex["b_control"].sum() == 2 * 3 and not ex["a_control"].any()
    det = table[table["kind"] == "detectors"]
    # only native is a real explainer both detectors share
    assert set(det["explainer"]) == {"native"} and set(det["a"]) == {"det_a"}


def test_rows_equal_paired_test_on_aligned_images(table):
    pi = _per_image()
    for _, row in table.iterrows():
        if row.kind == "explainers":
            part = pi[pi.detector == row.detector]
            a = part[part.explainer == row.a].set_index(["category", "id"])[row.metric]
            b = part[part.explainer == row.b].set_index(["category", "id"])[row.metric]
        else:
            part = pi[pi.explainer == row.explainer]
            a = part[part.detector == row.a].set_index(["category", "id"])[row.metric]
            b = part[part.detector == row.b].set_index(["category", "id"])[row.metric]
        b = b.reindex(a.index)
        ref = paired_test(
            a.to_numpy(), b.to_numpy(), higher_is_better=row.metric == "m_hi", n_boot=200, seed=4
        )
        assert row.n == ref.n and row.n_dropped == ref.n_dropped
        assert row.mean_diff == pytest.approx(ref.mean_diff)
        assert (row.ci_low, row.ci_high) == pytest.approx((ref.ci_low, ref.ci_high))
        assert row.p_value == pytest.approx(ref.p_value)
        assert bool(row.higher_is_better) == (row.metric == "m_hi")


def test_holm_within_each_family(table):
    for _, fam in table.groupby("family"):
        with mock.patch("gc.collect", lambda *a: 0):
            ref = multipletests(fam["p_value"].to_numpy(), method="holm")[1]
        np.testing.assert_allclose(fam["p_holm"].to_numpy(), ref)
        assert (fam["family_size"] == len(fam)).all()
        assert f"({len(fam)} test" in fam["family"].iloc[0]


def test_row_order_of_per_image_does_not_matter(table):
    shuffled = _per_image().sample(frac=1.0, random_state=1)
    again = pairwise_comparisons(shuffled, _results(), n_boot=200, seed=4)
    key = ["kind", "detector", "explainer", "metric", "a", "b"]
    pd.testing.assert_frame_equal(
        table.sort_values(key).reset_index(drop=True),
        again.sort_values(key).reset_index(drop=True),
    )


def test_metric_selection_and_errors():
    pi, res = _per_image(), _results()
    only = pairwise_comparisons(pi, res, metrics=["m_lo"], n_boot=20)
    assert set(only["metric"]) == {"m_lo"}
    with pytest.raises(InputError, match="valid:"):
        pairwise_comparisons(pi, res, metrics=["nope"])
    with pytest.raises(InputError, match="lacks columns"):
        pairwise_comparisons(pi.drop(columns=["id"]), res)


def test_undefined_test_is_nan_and_out_of_family():
    pi = _per_image()
    a = pi.detector == "det_a"
    pi.loc[a & (pi.explainer == "ig"), "m_lo"] = pi.loc[
        a & (pi.explainer == "native"), "m_lo"
    ].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)  # none escapes
        t = pairwise_comparisons(pi, _results(), metrics=["m_lo"], n_boot=20)
    same = t[(t.detector == "det_a") & (t.a == "native") & (t.b == "ig")].iloc[0]
    assert np.isnan(same.p_value) and np.isnan(same.p_holm) and same.family_size == 2


# --------------------------------------------------------------------------- rankings


def test_category_rankings_equal_friedman_on_the_category_matrix():
    res = _results()
    found = category_rankings(res)
    titles = [br.title for br in found]
    assert titles == [
        "m_hi: explainers of det_a",
        "m_hi: explainers of det_b",
        "m_lo: explainers of det_a",
        "m_lo: explainers of det_b",
        "image_auroc: detectors on native",
    ]
    br = found[2]
    part = res[(res.label == "m_lo") & (res.detector == "det_a") & (res.category != "mean")]
    wide = part.pivot(index="category", columns="explainer", values="value")
    ref = friedman_ranking(wide[["native", "ig", "random"]], higher_is_better=False)
    pd.testing.assert_series_equal(br.ranking.mean_ranks, ref.mean_ranks)
    assert br.ranking.statistic == pytest.approx(ref.statistic)
    assert br.ranking.n_blocks == 6 and br.controls == frozenset({"random"})
    det = found[-1].ranking
    assert set(det.methods) == {"det_a", "det_b"}


def test_rankings_frame_and_unrankable():
    res = _results()
    res = res[res.category.isin(["c1", "mean"])]  # one block: no ranking
    found = category_rankings(res, metrics=["m_hi"])
    assert all(br.ranking is None and "at least 2 blocks" in br.reason for br in found)
    frame = rankings_frame(found)
    assert list(frame.columns) == RANKING_COLUMNS
    assert (frame["evidence"] == "insufficient evidence").all()
    full = rankings_frame(category_rankings(_results(), metrics=["m_hi"]))
    first = full[full.detector == "det_a"]
    assert first["mean_rank"].is_monotonic_increasing and len(first) == 3
    assert first["control"].tolist().count(True) == 1
