"""Verdict rules: comparators per metric family, insufficient evidence, absolute
thresholds (issue 8: verdicts that mean what they say)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xeval.engine.verdicts import VerdictRule, verdicts
from xeval.registry import METRICS


def _table(values: dict, n: int, *, centre_independent=True):
    rows = []
    for e, v in values.items():
        for i in range(n):
            rows.append(
                dict(
                    detector="d",
                    explainer=e,
                    control=e in ("random", "sobel", "centre"),
                    input_dependent=not (centre_independent and e == "centre"),
                    category="c",
                    id=str(i),
                    m=v[i],
                )
            )
    return pd.DataFrame(rows)


def _overall(v, explainer):
    row = v[(v.explainer == explainer) & (v.control == "all controls")]
    return row["verdict"].iloc[0], row["meaning"].iloc[0]


def test_robustness_ignores_input_independent_controls():
    rng = np.random.default_rng(0)
    n = 20
    vals = {
        "saliency": rng.random(n) * 0.1 + 0.2,  # sensitivity 0.2-0.3
        "random": rng.random(n) * 0.1 + 0.7,
        "sobel": rng.random(n) * 0.1 + 0.5,
        "centre": np.zeros(n),  # perfectly stable by construction
    }
    per_image = _table(vals, n)
    plain = verdicts(per_image, metrics={"m": VerdictRule(higher_is_better=False)}, n_boot=300)
    assert _overall(plain, "saliency")[0] == "loses"  # against the centre prior...
    rule = VerdictRule.of(METRICS.get("max_sensitivity")())
    assert rule.comparators == "input-dependent controls"
    v = verdicts(per_image, metrics={"m": rule}, n_boot=300)
    verdict, meaning = _overall(v, "saliency")
    assert verdict == "beats" and "input-independent" in meaning
    assert "centre" not in set(v.loc[v.explainer == "saliency", "control"])


def test_too_few_images_is_insufficient_evidence():
    n = 6  # clearly better, but on 6 images only
    vals = {"good": np.full(n, 0.9), "random": np.full(n, 0.1)}
    v = verdicts(_table(vals, n), metrics={"m": True}, n_boot=200)
    assert _overall(v, "good")[0] == "insufficient evidence"
    v = verdicts(_table(vals, n), metrics={"m": VerdictRule(True, min_n=5)}, n_boot=200)
    assert _overall(v, "good")[0] == "beats"


def test_sanity_is_judged_against_its_threshold_not_the_controls():
    rng = np.random.default_rng(1)
    n = 20
    vals = {
        "passes": rng.random(n) * 0.2,  # similarity after randomisation ~0.1
        "fails": 0.9 + rng.random(n) * 0.1,
        "straddles": 0.3 + rng.random(n) * 0.4,
        "random": np.ones(n),  # a control ignores the detector: similarity 1
    }
    rule = VerdictRule.of(METRICS.get("mprt_spearman")())
    assert rule.comparators == "threshold" and rule.threshold == 0.5
    v = verdicts(_table(vals, n), metrics={"m": rule}, n_boot=300)
    assert _overall(v, "passes")[0] == "passes"
    assert _overall(v, "fails")[0] == "fails"
    assert _overall(v, "straddles")[0] == "inconclusive"
    assert set(v["control"]) == {"all controls"}  # no control used as a comparator
