"""Verdicts: does an explainer beat the trivial controls?

For each detector, explainer (not a control), per-image metric and control, the
per-image difference ``explainer - control`` (sign flipped for lower-is-better metrics,
so positive = the explainer is better) is paired on the same images, and a percentile
bootstrap CI of its mean is computed (seeded). Verdict: ``beats`` when the CI lies
above 0, ``loses`` when below, ``ties`` otherwise. Against *all* controls: ``beats``
only if it beats every control, ``loses`` if it loses to any, else ``ties``.

A rank table orders explainers per detector by their mean-over-categories value of
each headline metric (1 = best) and averages the ranks.
"""

from __future__ import annotations

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
]


def _one(diff: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float, str]:
    diff = diff[~np.isnan(diff)]
    if diff.size < 2:
        return float("nan"), float("nan"), float("nan"), "undefined"
    lo, hi = bootstrap_mean_ci(diff, n_boot=n_boot, seed=seed)
    verdict = "beats" if lo > 0 else "loses" if hi < 0 else "ties"
    return float(diff.mean()), lo, hi, verdict


def verdicts(
    per_image: pd.DataFrame, *, metrics: dict[str, bool], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Verdict table (columns :data:`VERDICT_COLUMNS`) from the per-image table, which
    needs columns detector, explainer, control, category, id and the metric columns."""
    rows = []
    if per_image.empty or "control" not in per_image:
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    for det, d in per_image.groupby("detector", sort=False):
        ctrl_names = sorted(d.loc[d["control"].astype(bool), "explainer"].unique())
        real = [e for e in d["explainer"].unique() if e not in ctrl_names]
        for metric, higher in metrics.items():
            if metric not in d or d[metric].isna().all():
                continue
            wide = d.pivot_table(
                index=["category", "id"],
                columns="explainer",
                values=metric,
                dropna=False,
                sort=False,
            )
            for e in real:
                per_ctrl = []
                for c in ctrl_names:
                    if e not in wide or c not in wide:
                        continue
                    diff = (wide[e] - wide[c]).to_numpy(float) * (1 if higher else -1)
                    m, lo, hi, v = _one(diff, n_boot, seed)
                    per_ctrl.append(v)
                    rows.append(
                        dict(
                            detector=det,
                            explainer=e,
                            metric=metric,
                            control=c,
                            mean_diff=m,
                            ci_low=lo,
                            ci_high=hi,
                            n=int(np.sum(~np.isnan(diff))),
                            verdict=v,
                        )
                    )
                if per_ctrl:
                    overall = (
                        "loses"
                        if "loses" in per_ctrl
                        else "beats"
                        if all(v == "beats" for v in per_ctrl)
                        else "undefined"
                        if all(v == "undefined" for v in per_ctrl)
                        else "ties"
                    )
                    rows.append(
                        dict(
                            detector=det,
                            explainer=e,
                            metric=metric,
                            control="all controls",
                            mean_diff=np.nan,
                            ci_low=np.nan,
                            ci_high=np.nan,
                            n=0,
                            verdict=overall,
                        )
                    )
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
