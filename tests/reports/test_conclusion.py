"""The generated conclusion: one sentence per audit family, from the verdicts."""

from __future__ import annotations

import pandas as pd

from xeval.reports.conclusion import conclusions
from xeval.results import make_row, results_frame


def _results(families: dict[str, str]):
    return results_frame(
        [
            make_row(detector="d", explainer="e", dataset="x", category="c", metric=m,
                     family=f, value=0.5, higher_is_better=True)
            for m, f in families.items()
        ]
    )  # fmt: skip


def _v(rows):
    return pd.DataFrame(
        [dict(detector="d", explainer=e, metric=m, control="all controls", verdict=v,
              meaning="") for e, m, v in rows]
    )  # fmt: skip


def test_names_the_explainer_and_its_evidence():
    res = _results({"pg": "localisation", "rm": "localisation", "del": "faithfulness"})
    found = conclusions(
        _v([("native", "pg", "beats"), ("native", "rm", "beats"), ("sal", "pg", "beats"),
            ("sal", "rm", "loses"), ("native", "del", "insufficient evidence"),
            ("sal", "del", "insufficient evidence")]),
        res,
    )  # fmt: skip
    loc, faith = found["d"]
    assert loc.startswith("Localisation: trust native") and "2 of 2 metrics (pg, rm)" in loc
    assert faith.startswith("Faithfulness: inconclusive") and "too few images" in faith


def test_says_when_nothing_is_worth_trusting():
    res = _results({"pg": "localisation"})
    found = conclusions(_v([("sal", "pg", "loses"), ("ig", "pg", "ties")]), res)
    assert found["d"][0].startswith("Localisation: no explainer is worth trusting")


def test_ties_between_winners_name_both():
    res = _results({"pg": "localisation"})
    found = conclusions(_v([("a", "pg", "beats"), ("b", "pg", "beats")]), res)
    assert "trust a and b" in found["d"][0] and "each beats" in found["d"][0]
