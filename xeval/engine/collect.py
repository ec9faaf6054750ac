"""Phase 6 -- collect: metric states -> result rows (with CIs), per-image rows and
curves for one unit; mean rows over categories for the run. Metadata (direction,
family, label, options) comes from each metric, never from a table of names."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from xeval.data.split import CategorySplit
from xeval.engine.evaluate import MetricStates
from xeval.explainers.base import Explainer
from xeval.metrics.base import Metric, canonical_params, parse_exclusion_note
from xeval.results import make_row

__all__ = ["collect_unit", "mean_rows", "pooled_summaries"]


def collect_unit(
    *,
    detector: str,
    explainers: list[Explainer],
    metrics: list[Metric],
    states: dict[str, MetricStates],
    scores_by_id: dict[str, dict[str, float]],
    split: CategorySplit,
    dataset: str,
    protocol: str,
    n_boot: int,
    seed: int,
    subsets: dict[str, list[str]],
) -> dict:
    """``{"rows", "curves", "per_image"}`` of one (category, detector) unit."""
    cat = split.category
    rows, curves, per_image = [], [], []
    for e in explainers:
        st = states[e.name]
        per_id: dict[str, dict[str, float]] = {}
        seen_curves: set[str] = set()
        values = [st.compute(i) for i in range(len(metrics))]
        by_name = {m.name: v for m, v in zip(metrics, values, strict=True)}
        for i, m in enumerate(metrics):
            v = values[i]
            if m.compare_with in by_name:
                extra = m.relate(v, by_name[m.compare_with])
                if extra:
                    v.note = f"{v.note}; {extra}" if v.note else extra
            lo, hi = m.confidence_interval(st.state_of(i), v, n_boot=n_boot, seed=seed)
            note = v.note
            if m.subset:
                k = len(subsets.get(m.label, ()))
                note = f"{note}; {k} {m.population} images" if note else f"{k} images"
            rows.append(
                make_row(
                    detector=detector,
                    explainer=e.name,
                    dataset=dataset,
                    category=cat,
                    protocol=protocol,
                    metric=m.name,
                    label=m.label,
                    family=m.family,
                    params=canonical_params(m.params),
                    value=float(v.value),
                    ci_low=float(lo),
                    ci_high=float(hi),
                    n=int(v.n),
                    higher_is_better=bool(m.higher_is_better),
                    control=bool(e.control),
                    headline=int(m.headline),
                    threshold=float(v.threshold),
                    note=note,
                )
            )
            if v.per_image is not None and v.ids is not None:
                for sid, val in zip(v.ids, np.asarray(v.per_image, dtype=float), strict=True):
                    per_id.setdefault(sid, {})[m.label] = float(val)
                for sid, why in v.excluded.items():
                    per_id.setdefault(sid, {})[f"{m.label} excluded"] = why
            for kind, xy in v.curves.items():
                if kind in seen_curves:
                    continue
                seen_curves.add(kind)
                x, y = xy[0], xy[1]
                lo, hi = (xy[2], xy[3]) if len(xy) == 4 else (None, None)
                for j in range(len(x)):
                    row = dict(detector=detector, explainer=e.name, category=cat, curve=kind,
                               x=float(x[j]), y=float(y[j]))  # fmt: skip
                    if lo is not None:
                        row["y_low"], row["y_high"] = float(lo[j]), float(hi[j])
                    curves.append(row)
        scores = scores_by_id.get(e.name, {})
        in_subset: dict[str, list[str]] = {}
        for label, ids in subsets.items():
            for sid in ids:
                in_subset.setdefault(sid, []).append(label)
        for s in split.test:
            per_image.append(
                {
                    "category": cat,
                    "detector": detector,
                    "explainer": e.name,
                    "id": s.id,
                    "label": int(s.label),
                    "defect": s.defect,
                    "image_score": float(scores.get(s.id, math.nan)),
                    "control": bool(e.control),
                    "input_dependent": bool(getattr(e, "input_dependent", True)),
                    "subsets": ";".join(in_subset.get(s.id, [])),
                    **per_id.get(s.id, {}),
                }
            )
    return {"rows": rows, "curves": curves, "per_image": per_image}


def pooled_summaries(
    *,
    detector: str,
    category: str,
    explainers: list[Explainer],
    states: dict[str, MetricStates],
) -> dict:
    """The unit's per-image summaries of pooled metrics (for their image bootstrap,
    :func:`xeval.engine.verdicts.pooled_verdicts`), JSON-able::

        {"detector", "category", "explainers": {name: {"control", "input_dependent",
         "summaries": {summary key: payload}}}}
    """
    out: dict = {"detector": detector, "category": category, "explainers": {}}
    for e in explainers:
        finished = states[e.name].finished_summaries()
        out["explainers"][e.name] = {
            "control": bool(e.control),
            "input_dependent": bool(getattr(e, "input_dependent", True)),
            "summaries": {k: s.to_payload() for k, s in finished.items()},
        }
    return out


_KEYS = ["detector", "explainer", "dataset", "protocol", "metric", "label", "params"]
_META = ["family", "higher_is_better", "control", "headline"]


def mean_rows(rows: list[dict]) -> list[dict]:
    """Unweighted mean over categories of every (detector, explainer, metric) with the
    categories where it is undefined named in the note (category ``"mean"``)."""
    if not rows:
        return []
    df = pd.DataFrame(rows)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for key, g in df.groupby(_KEYS, sort=False):
            vals = g["value"].astype(float).to_numpy()
            defined = ~np.isnan(vals)
            note = f"mean over {int(defined.sum())} categories"
            if not defined.all():
                missing = g.loc[~defined, "category"].tolist()
                note += f" (undefined in {missing}, excluded)"
            excluded, total, reasons = 0, 0, {}
            for text, n in zip(g["note"], g["n"], strict=True):
                e, t, r = parse_exclusion_note(str(text))
                excluded, total = excluded + e, total + (t if t else int(n))
                for k, v in r.items():
                    reasons[k] = reasons.get(k, 0) + v
            if excluded:
                detail = "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
                note += f"; {excluded} of {total} images excluded ({detail})"
            out.append(
                make_row(
                    **dict(zip(_KEYS, key, strict=True)),
                    **{k: g[k].iloc[0] for k in _META},
                    category="mean",
                    value=float(vals[defined].mean()) if defined.any() else math.nan,
                    n=int(g["n"].sum()),
                    note=note,
                )
            )
    return out
