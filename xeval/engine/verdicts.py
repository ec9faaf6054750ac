"""Verdicts: does an explainer do better than trivial references, on enough evidence?

For each detector, explainer (not a control) and per-image metric, the metric's
:class:`VerdictRule` says what the explainer is compared with:

``"controls"`` (localisation, faithfulness)
    Every trivial control (random map, Sobel edges, centre prior). The per-image
    difference ``explainer - control`` (sign flipped for lower-is-better metrics, so
    positive = the explainer is better) is paired on the same images and a percentile
    bootstrap CI of its mean is computed (seeded): ``beats`` when the CI lies above 0,
    ``loses`` when below, ``ties`` otherwise.
``"input-dependent controls"`` (robustness)
    Only the controls whose map depends on the image (random, Sobel): an
    input-independent map (the centre prior) is perfectly stable by construction, so
    being less stable than it says nothing about an explanation.
``"threshold"`` (sanity)
    No control: every control ignores the detector, so its randomisation similarity is
    1 and "beating" it is trivial. The mean value is compared with the rule's threshold
    instead (e.g. Spearman similarity after full randomisation < 0.5): ``passes`` when
    the whole CI is on the good side, ``fails`` when it is on the bad side,
    ``inconclusive`` otherwise.

Fewer than ``min_n`` paired images (default 10) is ``insufficient evidence``, never
beats or loses. Against *all* comparators: ``beats`` only if it beats every one,
``loses`` if it loses to any, ``insufficient evidence`` if any comparison lacks
evidence, else ``ties``. Each verdict row says what it means (``meaning``).

A rank table orders explainers per detector by their mean-over-categories value of
each headline metric (1 = best) and averages the ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xeval.stats import bootstrap_mean_ci

VERDICT_COLUMNS = [
    "detector",
    "explainer",
    "metric",
    "control",
    "mean_diff",
    "ci_low",
    "ci_high",
    "n",
    "verdict",
    "meaning",
]

ALL = "all controls"

MEANINGS = {
    "controls": "paired per image with each trivial control (random, Sobel, centre prior)",
    "input-dependent controls": (
        "paired with the controls whose map depends on the image only: an input-"
        "independent map (the centre prior) is perfectly stable by construction"
    ),
    "threshold": (
        "absolute: the mean against the threshold (controls ignore the detector, so they "
        "are not valid comparators)"
    ),
}


@dataclass(frozen=True)
class VerdictRule:
    """How one metric's verdict is made (see the module docstring)."""

    higher_is_better: bool
    comparators: str = "controls"
    threshold: float | None = None
    min_n: int = 10

    @classmethod
    def of(cls, metric) -> VerdictRule:
        """The rule a registered metric declares (``verdict_comparators``,
        ``verdict_threshold``)."""
        return cls(
            higher_is_better=bool(metric.higher_is_better),
            comparators=getattr(metric, "verdict_comparators", "controls"),
            threshold=getattr(metric, "verdict_threshold", None),
        )


def _paired(diff: np.ndarray, n_boot: int, seed: int, min_n: int):
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan"), 0, "undefined"
    if diff.size < max(min_n, 2):
        return float(diff.mean()), float("nan"), float("nan"), diff.size, "insufficient evidence"
    lo, hi = bootstrap_mean_ci(diff, n_boot=n_boot, seed=seed)
    verdict = "beats" if lo > 0 else "loses" if hi < 0 else "ties"
    return float(diff.mean()), lo, hi, diff.size, verdict


def _overall(verdicts: list[str]) -> str:
    if not verdicts:
        return "undefined"
    if "loses" in verdicts:
        return "loses"
    if all(v == "beats" for v in verdicts):
        return "beats"
    if "insufficient evidence" in verdicts:
        return "insufficient evidence"
    if all(v == "undefined" for v in verdicts):
        return "undefined"
    return "ties"


def _threshold_verdict(values: np.ndarray, rule: VerdictRule, n_boot: int, seed: int):
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan"), 0, "undefined"
    if v.size < max(rule.min_n, 2):
        return float(v.mean()), float("nan"), float("nan"), v.size, "insufficient evidence"
    lo, hi = bootstrap_mean_ci(v, n_boot=n_boot, seed=seed)
    t = float(rule.threshold)
    good_side = lo > t if rule.higher_is_better else hi < t
    bad_side = hi < t if rule.higher_is_better else lo > t
    verdict = "passes" if good_side else "fails" if bad_side else "inconclusive"
    return float(v.mean()), lo, hi, v.size, verdict


def verdicts(
    per_image: pd.DataFrame,
    *,
    metrics: Mapping[str, bool | VerdictRule],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Verdict table (columns :data:`VERDICT_COLUMNS`) from the per-image table, which
    needs columns detector, explainer, control, category, id and the metric columns
    (and ``input_dependent`` for rules that use it; absent: every control counts).
    ``metrics`` maps a metric label to its :class:`VerdictRule` (a bool is the
    direction of a ``"controls"`` rule)."""
    rows = []
    if per_image.empty or "control" not in per_image:
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    rules = {
        m: r if isinstance(r, VerdictRule) else VerdictRule(higher_is_better=bool(r))
        for m, r in metrics.items()
    }
    for det, d in per_image.groupby("detector", sort=False):
        is_ctrl = d["control"].astype(bool)
        ctrl_names = sorted(d.loc[is_ctrl, "explainer"].unique())
        if "input_dependent" in d:
            dep = d.loc[is_ctrl & d["input_dependent"].astype(bool), "explainer"].unique()
            input_dependent = sorted(dep)
        else:
            input_dependent = ctrl_names
        real = [e for e in d["explainer"].unique() if e not in ctrl_names]
        for metric, rule in rules.items():
            if metric not in d or d[metric].isna().all():
                continue
            wide = d.pivot_table(
                index=["category", "id"],
                columns="explainer",
                values=metric,
                dropna=False,
                sort=False,
            )
            meaning = MEANINGS.get(rule.comparators, "")
            if rule.comparators == "threshold":
                meaning = f"{meaning}; threshold {rule.threshold:g}"
            for e in real:
                if e not in wide:
                    continue
                if rule.comparators == "threshold":
                    m, lo, hi, n, v = _threshold_verdict(
                        wide[e].to_numpy(float), rule, n_boot, seed
                    )
                    rows.append(
                        dict(detector=det, explainer=e, metric=metric, control=ALL,
                             mean_diff=m, ci_low=lo, ci_high=hi, n=n, verdict=v,
                             meaning=meaning)
                    )  # fmt: skip
                    continue
                comparators = (
                    input_dependent if rule.comparators == "input-dependent controls"
                    else ctrl_names
                )  # fmt: skip
                per_ctrl = []
                sign = 1 if rule.higher_is_better else -1
                for c in comparators:
                    if c not in wide:
                        continue
                    diff = (wide[e] - wide[c]).to_numpy(float) * sign
                    m, lo, hi, n, v = _paired(diff, n_boot, seed, rule.min_n)
                    per_ctrl.append(v)
                    rows.append(
                        dict(detector=det, explainer=e, metric=metric, control=c,
                             mean_diff=m, ci_low=lo, ci_high=hi, n=n, verdict=v,
                             meaning=meaning)
                    )  # fmt: skip
                if per_ctrl:
                    rows.append(
                        dict(detector=det, explainer=e, metric=metric, control=ALL,
                             mean_diff=np.nan, ci_low=np.nan, ci_high=np.nan, n=0,
                             verdict=_overall(per_ctrl), meaning=meaning)
                    )  # fmt: skip
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def rank_table(results: pd.DataFrame, *, metrics: list[str]) -> pd.DataFrame:
    """Rank of each explainer per detector on each metric (by label; mean over
    categories; 1 = best, ties share the average rank) and the mean rank; NaN values are
    ranked last."""
    key = "label" if "label" in results.columns else "metric"
    mean = results[(results["category"] == "mean") & results[key].isin(metrics)]
    out = []
    for det, d in mean.groupby("detector", sort=False):
        wide = d.pivot_table(index="explainer", columns=key, values="value", sort=False)
        hib = d.groupby(key)["higher_is_better"].first()
        ranks = pd.DataFrame(index=wide.index)
        for m in wide.columns:
            ranks[m] = wide[m].rank(ascending=not bool(hib[m]), na_option="bottom")
        ranks["mean_rank"] = ranks.mean(axis=1)
        ranks = ranks.sort_values("mean_rank").reset_index()
        ranks.insert(0, "detector", det)
        out.append(ranks)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
