"""Synthetic finished run folders for the gate tests (built by hand: results.csv written
by xeval's own writer, verdicts.csv in the image or video schema, manifest.json).
A plain module with a name unique in tests/ (``import conftest`` could find another)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from xeval.reports.writer import results_csv
from xeval.results import make_row, results_frame

#: detector -> explainers (controls: random, sobel)
DETECTORS = {"det_a": ["native", "ig", "random", "sobel"], "det_b": ["native", "random", "sobel"]}
CONTROLS = {"random", "sobel"}
CATEGORIES = ["brick", "tissue"]
#: label -> (registered metric name, higher_is_better)
LABELS = {
    "pixel_auroc": ("pixel_auroc", True),
    "aupro@0.3": ("aupro", True),
    "image_fpr@95tpr": ("image_fpr_at_tpr", False),
    "iou@t": ("iou", True),
    "iou@0.5": ("iou", True),
    "relevance_mass": ("relevance_mass", True),
}
BASE = {"native": 0.9, "ig": 0.8, "random": 0.5, "sobel": 0.6}
SHIFT = {"brick": 0.02, "tissue": -0.02, "mean": 0.0}


def default_value(det: str, expl: str, cat: str, label: str) -> float:
    v = BASE[expl] + SHIFT[cat] - (0.05 if det == "det_b" else 0.0)
    return round(1.0 - v if not LABELS[label][1] else v, 6)


def build_results(overrides: dict | None = None, *, mean: bool = True) -> pd.DataFrame:
    """Every (detector, explainer, category, label) row; ``overrides`` maps
    ``(detector, explainer, category, label)`` to a value."""
    overrides = overrides or {}
    rows = []
    cats = CATEGORIES + (["mean"] if mean else [])
    for det, expls in DETECTORS.items():
        for expl in expls:
            for cat in cats:
                for label, (name, hib) in LABELS.items():
                    v = overrides.get((det, expl, cat, label), default_value(det, expl, cat, label))
                    ci = (math.nan, math.nan) if cat == "mean" else (v - 0.05, v + 0.05)
                    rows.append(
                        make_row(
                            detector=det, explainer=expl, dataset="textures", category=cat,
                            protocol="demo-quick", metric=name, label=label, value=v,
                            ci_low=ci[0], ci_high=ci[1], n=40 if cat == "mean" else 20,
                            higher_is_better=hib, control=expl in CONTROLS,
                            note="one class only" if math.isnan(v) else "",
                        )
                    )  # fmt: skip
    return results_frame(rows)


def build_verdicts(overall: dict | None = None) -> pd.DataFrame:
    """Image-schema verdicts for relevance_mass: per control + "all controls".
    Default: native beats both controls; ig beats random and ties sobel (-> ties)."""
    overall = overall or {}
    rows = []
    for det, expls in DETECTORS.items():
        for expl in (e for e in expls if e not in CONTROLS):
            per = {"random": "beats", "sobel": "beats" if expl == "native" else "ties"}
            for ctrl, word in per.items():
                lo = 0.1 if word == "beats" else -0.05
                rows.append(
                    dict(detector=det, explainer=expl, metric="relevance_mass", control=ctrl,
                         mean_diff=lo + 0.1, ci_low=lo, ci_high=lo + 0.2, n=16, verdict=word,
                         meaning="paired per image")
                )  # fmt: skip
            word = "beats" if all(w == "beats" for w in per.values()) else "ties"
            rows.append(
                dict(detector=det, explainer=expl, metric="relevance_mass",
                     control="all controls", mean_diff=math.nan, ci_low=math.nan,
                     ci_high=math.nan, n=0, verdict=overall.get((det, expl), word),
                     meaning="paired per image")
            )  # fmt: skip
    return pd.DataFrame(rows)


def write_run(
    root: Path,
    results: pd.DataFrame,
    *,
    verdicts: pd.DataFrame | None = None,
    manifest: dict | None = None,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.csv").write_text(results_csv(results))
    if verdicts is not None:
        verdicts.to_csv(root / "verdicts.csv", index=False)
    m = {"config_hash": "hash-1", "dataset_fingerprint": "fp-1"} if manifest is None else manifest
    (root / "manifest.json").write_text(json.dumps(m))
    return root
