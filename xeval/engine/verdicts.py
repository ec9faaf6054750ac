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

Pooled metrics (pixel AUROC, pixel AUPR, AUPRO@L: one value per category, computed over
all its pixels) have no per-image values; :func:`pooled_verdicts` compares them with the
same rules by a **paired cluster (image) bootstrap**: images are the independent units
(pixels of one image are not), so each category's test images are resampled with
replacement -- normal images and images with anomalous pixels separately (stratified),
so that every resample holds both -- the pooled metric is recomputed for the explainer
*and* each control on the same resample, and the difference (sign flipped for
lower-is-better metrics) is averaged over the categories, each resampled independently,
as the results' ``mean`` row averages categories (categories where the metric is
undefined are left out, as there). The percentile CI of that mean difference decides as
above; ``n`` counts the images, and fewer than ``min_n`` is ``insufficient evidence``.
The metrics are recomputed from per-image score histograms on a fixed grid per
(category, explainer) (:mod:`xeval.metrics.pooled`): each bin acts as one tied score, so
the replicates and ``mean_diff`` (the full-sample difference) are *binned*
approximations, within about ``1 / bins`` of the exact values, while ``results.csv``
keeps the exact values. References: Davison & Hinkley (1997), *Bootstrap Methods and
their Application*, sec. 3.8 (stratified, multi-stage resampling of clustered data);
Field & Welsh (2007), "Bootstrapping clustered data", JRSS-B 69(3).

A rank table orders explainers per detector by their mean-over-categories value of
each headline metric (1 = best) and averages the ranks.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xeval.errors import InputError, ResumeWarning
from xeval.metrics.pooled import stratified_weights, summary_from_payload
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


POOLED_MEANING = (
    "paired image bootstrap of the pooled metric (images resampled within each category, "
    "normal and anomalous separately; explainer and control on the same resamples; mean "
    "over categories; binned scores)"
)


def _category_rng(seed: int, category: str) -> np.random.Generator:
    """The resampling stream of one category: the same for every detector, explainer and
    metric (paired), independent of the order of the units."""
    return np.random.default_rng([int(seed), zlib.crc32(str(category).encode())])


def _percentile_ci(reps: np.ndarray, level: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def pooled_verdicts(
    units: Mapping[tuple[str, str], Mapping | None],
    *,
    metrics: Mapping[str, Sequence],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Verdicts (columns :data:`VERDICT_COLUMNS`) of pooled metrics against the controls
    by the paired, stratified image bootstrap of the module docstring.

    ``units``: ``(category, detector) ->`` the unit's per-image summaries as written by
    :func:`xeval.engine.collect.pooled_summaries`, or None (or ``{}``) for a unit without
    them (e.g. saved by an older xeval): that detector then gets no pooled verdict and a
    :class:`~xeval.errors.ResumeWarning` says why. ``metrics``: per detector, the metric
    objects to judge (those without a :meth:`~xeval.metrics.base.Metric.summary_key`
    are skipped); each metric's rule is :meth:`VerdictRule.of`."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InputError(f"n_boot must be a positive integer, got {n_boot!r}")
    if isinstance(level, bool) or not 0 < float(level) < 1:
        raise InputError(f"level must lie in (0, 1), got {level!r}")
    by_det: dict[str, list[Mapping]] = {}
    missing: dict[str, list[str]] = {}
    for (cat, det), u in units.items():
        if u is None or (isinstance(u, Mapping) and not u):  # none saved with the unit
            missing.setdefault(str(det), []).append(str(cat))
            continue
        if not isinstance(u, Mapping) or not isinstance(u.get("explainers"), Mapping):
            raise InputError(
                f"unit {cat}/{det}: malformed per-image summaries ({type(u).__name__}); "
                "expected the dict of xeval.engine.collect.pooled_summaries"
            )
        by_det.setdefault(str(det), []).append({**u, "category": str(cat)})
    for det, cats in missing.items():
        warnings.warn(
            f"detector {det!r}: no verdict for pooled metrics: the units of categories "
            f"{cats} hold no per-image summaries (resumed from a checkpoint without "
            "them); rerun with --no-resume to get them",
            ResumeWarning,
            stacklevel=2,
        )
    rows = []
    for det, det_units in by_det.items():
        if det in missing:
            continue
        judged = [m for m in metrics.get(det, ()) if m.summary_key() is not None]
        if not judged:
            continue
        cats = _Categories(det_units, n_boot=n_boot, seed=seed)
        for m in judged:
            rows += _pooled_metric_rows(det, m, cats, level)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


class _Categories:
    """One detector's units: decoded summaries, bootstrap weights per category (shared by
    every explainer and metric) and the metric replicates (computed once each)."""

    def __init__(self, units: list[Mapping], *, n_boot: int, seed: int) -> None:
        self.units = {str(u["category"]): u for u in units}
        self.n_boot = n_boot
        self.seed = seed
        self._summary: dict = {}
        self._weights: dict = {}
        self._values: dict = {}
        first = next(iter(self.units.values()))
        self.explainers = list(first["explainers"])
        info = first["explainers"]
        self.controls = sorted(e for e in self.explainers if info[e]["control"])
        self.input_dependent = sorted(e for e in self.controls if info[e]["input_dependent"])

    def summary(self, cat: str, explainer: str, key: str):
        k = (cat, explainer, key)
        if k not in self._summary:
            entry = self.units[cat]["explainers"].get(explainer)
            payload = None if entry is None else entry["summaries"].get(key)
            self._summary[k] = None if payload is None else summary_from_payload(payload)
        return self._summary[k]

    def weights(self, cat: str, key: str, summary) -> np.ndarray:
        """Weights of the category's images (columns, in the summary's order): row 0 all
        ones (the full sample), then the bootstrap counts of each resample; the same for
        every explainer (checked: same images) and metric."""
        k = (cat, key)
        if k not in self._weights:
            w = stratified_weights(
                summary.strata, n_boot=self.n_boot, rng=_category_rng(self.seed, cat)
            )
            w = np.vstack([np.ones((1, w.shape[1])), w])
            self._weights[k] = (list(summary.ids), summary.strata, w)
        ids, strata, w = self._weights[k]
        if list(summary.ids) != ids or not np.array_equal(summary.strata, strata):
            raise InputError(
                f"category {cat!r}: the explainers' per-image summaries hold different "
                "images (or masks); a paired bootstrap needs the same images"
            )
        return w

    def values(self, cat: str, explainer: str, metric) -> tuple[float, np.ndarray, int] | None:
        """``(full-sample value, (B,) replicates, images)`` or None without a summary."""
        key = metric.summary_key()
        k = (cat, explainer, metric.label)
        if k not in self._values:
            s = self.summary(cat, explainer, key)
            if s is None:
                self._values[k] = None
            else:
                v = np.asarray(metric.compute_weighted(s, self.weights(cat, key, s)), float)
                self._values[k] = (float(v[0]), v[1:], s.n_images)
        return self._values[k]

    def differences(self, explainer: str, other: str | None, metric, sign: int):
        """Mean over the categories where both are defined of ``sign * (e - other)``
        (``other`` None: of ``sign * e``): ``(full-sample value, replicates, images)``."""
        full, reps, n = [], [], 0
        for cat in self.units:
            a = self.values(cat, explainer, metric)
            b = None if other is None else self.values(cat, other, metric)
            if a is None or (other is not None and b is None):
                continue
            fa, ra, na = a
            fb, rb = (0.0, 0.0) if b is None else b[:2]
            if np.isnan(fa) or np.isnan(fb):
                continue
            full.append(sign * (fa - fb))
            reps.append(sign * (ra - rb))
            n += na
        if not full:
            return float("nan"), np.zeros(0), 0
        return float(np.mean(full)), np.mean(reps, axis=0), n


def _pooled_metric_rows(det: str, metric, cats: _Categories, level: float) -> list[dict]:
    rule = VerdictRule.of(metric)
    meaning = f"{MEANINGS.get(rule.comparators, '')}; {POOLED_MEANING}"
    rows = []
    real = [e for e in cats.explainers if e not in cats.controls]
    for e in real:
        if rule.comparators == "threshold":
            full, reps, n = cats.differences(e, None, metric, 1)
            v, lo, hi = _pooled_threshold(full, reps, n, rule, level)
            rows.append(
                dict(detector=det, explainer=e, metric=metric.label, control=ALL,
                     mean_diff=full, ci_low=lo, ci_high=hi, n=n, verdict=v,
                     meaning=f"{meaning}; threshold {rule.threshold:g}")
            )  # fmt: skip
            continue
        comparators = (
            cats.input_dependent if rule.comparators == "input-dependent controls"
            else cats.controls
        )  # fmt: skip
        sign = 1 if rule.higher_is_better else -1
        per_ctrl = []
        for c in comparators:
            full, reps, n = cats.differences(e, c, metric, sign)
            if n == 0:
                lo = hi = float("nan")
                v = "undefined"
            elif n < max(rule.min_n, 2):
                lo = hi = float("nan")
                v = "insufficient evidence"
            else:
                lo, hi = _percentile_ci(reps, level)
                v = "beats" if lo > 0 else "loses" if hi < 0 else "ties"
            per_ctrl.append(v)
            rows.append(
                dict(detector=det, explainer=e, metric=metric.label, control=c,
                     mean_diff=full, ci_low=lo, ci_high=hi, n=n, verdict=v, meaning=meaning)
            )  # fmt: skip
        if per_ctrl:
            rows.append(
                dict(detector=det, explainer=e, metric=metric.label, control=ALL,
                     mean_diff=np.nan, ci_low=np.nan, ci_high=np.nan, n=0,
                     verdict=_overall(per_ctrl), meaning=meaning)
            )  # fmt: skip
    return rows


def _pooled_threshold(full: float, reps: np.ndarray, n: int, rule: VerdictRule, level: float):
    if n == 0:
        return "undefined", float("nan"), float("nan")
    if n < max(rule.min_n, 2):
        return "insufficient evidence", float("nan"), float("nan")
    lo, hi = _percentile_ci(reps, level)
    t = float(rule.threshold)
    good = lo > t if rule.higher_is_better else hi < t
    bad = hi < t if rule.higher_is_better else lo > t
    return ("passes" if good else "fails" if bad else "inconclusive"), lo, hi


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
