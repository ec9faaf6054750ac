"""Synthetic report data shared by the report tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xeval.reports import GalleryItem, ReportData
from xeval.results import make_row, results_frame

EVIL = "<script>alert('x')</script>"
DETECTORS = ["padim", EVIL]
EXPLAINERS = ["native", "gradcam", "random"]
CATEGORIES = ["bottle", "../x"]
METRICS = {
    # label: (higher_is_better, threshold, note, (name, family, headline, params))
    "pixel_auroc": (True, math.nan, "", ("pixel_auroc", "localisation", 1, "{}")),
    "aupro@0.3": (True, math.nan, "", ("aupro", "localisation", 1, '{"fpr_limit": 0.3}')),
    "image_auroc": (
        True, math.nan, "image score = max of map", ("image_auroc", "detection", 1, "{}")
    ),
    "image_fpr@95tpr": (
        False, math.nan, "", ("image_fpr_at_tpr", "detection", 0, '{"tpr": 0.95}')
    ),
    "iou@t": (
        True, 0.42, "threshold: 0.99 quantile of normal validation pixels",
        ("iou", "localisation", 2, '{"quantile": 0.99}'),
    ),
    "iou_oracle": (
        True, math.nan, "oracle threshold (optimistic)", ("iou_oracle", "localisation", 0, "{}")
    ),
}  # fmt: skip
CONTROLS = {"random"}


def synthetic_results(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for det in DETECTORS:
        for exp in EXPLAINERS:
            for label, (hib, thr, note, (metric, family, headline, params)) in METRICS.items():
                meta = dict(
                    metric=metric,
                    label=label,
                    family=family,
                    headline=headline,
                    params=params,
                    control=exp in CONTROLS,
                )
                vals = {}
                for cat in CATEGORIES:
                    v = float(np.round(rng.uniform(0.5, 1.0), 4))
                    if (det, exp, cat, label) == ("padim", "gradcam", "bottle", "pixel_auroc"):
                        v = math.nan
                    vals[cat] = v
                    lo, hi = (v - 0.02, v + 0.02) if label == "pixel_auroc" else (math.nan,) * 2
                    rows.append(
                        make_row(
                            detector=det,
                            explainer=exp,
                            dataset="synth",
                            category=cat,
                            protocol="default",
                            **meta,
                            value=v,
                            ci_low=lo,
                            ci_high=hi,
                            n=20,
                            higher_is_better=hib,
                            threshold=thr,
                            note=note,
                        )
                    )
                rows.append(
                    make_row(
                        detector=det,
                        explainer=exp,
                        dataset="synth",
                        category="mean",
                        protocol="default",
                        **meta,
                        value=float(np.nanmean(list(vals.values()))),
                        n=40,
                        higher_is_better=hib,
                        threshold=thr,
                        note=note,
                    )
                )
    return results_frame(rows)


def synthetic_curves(n: int = 50) -> pd.DataFrame:
    parts = []
    x = np.linspace(0, 1, n)
    for det in DETECTORS:
        for k, exp in enumerate(EXPLAINERS):
            for cat in CATEGORIES:
                for curve in ("roc", "pro", "image_roc"):
                    y = x ** (0.2 + 0.3 * k)
                    parts.append(
                        pd.DataFrame(
                            {
                                "detector": det,
                                "explainer": exp,
                                "category": cat,
                                "curve": curve,
                                "x": x,
                                "y": y,
                            }
                        )
                    )
    return pd.concat(parts, ignore_index=True)


def synthetic_gallery(size: int = 32) -> list[GalleryItem]:
    rng = np.random.default_rng(1)
    items = []
    yy, xx = np.mgrid[:size, :size]
    for det in DETECTORS:
        for exp in EXPLAINERS[::2]:
            for rank in ("best", "worst"):
                mask = (yy - 10) ** 2 + (xx - 12) ** 2 < 25
                amap = np.exp(-((yy - 11) ** 2 + (xx - 13) ** 2) / 30.0) + rng.normal(
                    0, 0.05, mask.shape
                )
                items.append(
                    GalleryItem(
                        detector=det,
                        explainer=exp,
                        category="bottle",
                        sample_id=f"img_{rank}_<1>",
                        rank=rank,
                        metric="iou_per_image@t",
                        value=0.8 if rank == "best" else math.nan,
                        image=rng.uniform(0, 1, (size, size, 3)),
                        mask=mask,
                        amap=amap[::2, ::2],
                    )
                )
    return items


@pytest.fixture(scope="module")
def report_data() -> ReportData:
    return ReportData(
        results=synthetic_results(),
        curves=synthetic_curves(),
        gallery=synthetic_gallery(),
        manifest={
            "versions": {"xeval": "0.1.0", "numpy": np.__version__},
            "seed": 0,
            "config_hash": "abc123",
            "dataset_fingerprint": EVIL,
            "timings": {"total_s": 1.5},
        },
        title=f"report {EVIL}",
    )
