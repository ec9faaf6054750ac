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


def synthetic_results(
    seed: int = 0,
    *,
    explainers: list[str] = EXPLAINERS,
    metrics: dict = METRICS,
    controls: set[str] = CONTROLS,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for det in DETECTORS:
        for exp in explainers:
            for label, (hib, thr, note, (metric, family, headline, params)) in metrics.items():
                meta = dict(
                    metric=metric,
                    label=label,
                    family=family,
                    headline=headline,
                    params=params,
                    control=exp in controls,
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


# --------------------------------------------------------------------------- full report
# Everything issue 8's figures draw: faithfulness curves with bands, example gallery
# items (same images for every explainer, controls included), and verdicts.

LONG = "integrated_gradients (baseline=blurred, n_steps=64, internal_batch_size=8)"
FULL_EXPLAINERS = ["native", "gradcam", LONG, "random", "sobel"]
FULL_CONTROLS = {"random", "sobel"}
FULL_METRICS = {
    **METRICS,
    "deletion_auc": (False, math.nan, "", ("deletion_auc", "faithfulness", 2, "{}")),
    "insertion_auc": (True, math.nan, "", ("insertion_auc", "faithfulness", 2, "{}")),
    "aopc_morf": (True, math.nan, "", ("aopc", "faithfulness", 0, '{"order": "morf"}')),
    "max_sensitivity": (False, math.nan, "", ("max_sensitivity", "robustness", 0, "{}")),
    "cascading_randomisation": (
        False, 0.5, "", ("cascading_randomisation", "sanity", 0, "{}")
    ),
}  # fmt: skip
FAITHFULNESS_CURVES = ("deletion_auc", "insertion_auc")


def synthetic_faithfulness_curves(n: int = 21, *, explainers=FULL_EXPLAINERS) -> pd.DataFrame:
    """Mean normalised score vs fraction removed / inserted, with a 95% band; the
    categories of ``"../x"`` are on a coarser grid (averaging must interpolate)."""
    parts = []
    for d, det in enumerate(DETECTORS):
        for k, exp in enumerate(explainers):
            ctrl = exp in FULL_CONTROLS
            for c, cat in enumerate(CATEGORIES):
                x = np.linspace(0, 1, n if c == 0 else (n + 1) // 2)
                rate = (0.8 + 0.6 * (k - 3)) if ctrl else 4.0 + 2.0 * k + d + c
                for curve in FAITHFULNESS_CURVES:
                    y = np.exp(-rate * x)
                    if curve == "insertion_auc":
                        y = 1.0 - np.exp(-rate * x)
                    half = 0.04 + 0.04 * np.sin(np.pi * x)
                    parts.append(
                        pd.DataFrame(
                            {
                                "detector": det,
                                "explainer": exp,
                                "category": cat,
                                "curve": curve,
                                "x": x,
                                "y": y,
                                "y_low": np.clip(y - half, 0, 1),
                                "y_high": np.clip(y + half, 0, 1),
                            }
                        )
                    )
    return pd.concat(parts, ignore_index=True)


def synthetic_examples(size: int = 40, *, explainers=FULL_EXPLAINERS) -> list[GalleryItem]:
    """Two example images per category and detector, one item per explainer; the
    items come sorted by explainer name (as :func:`xeval.engine.gallery.gallery_items`
    sorts them) and one explainer lacks one image."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for det in DETECTORS:
        for c, cat in enumerate(CATEGORIES):
            for s in range(2):
                cy, cx = 12 + 8 * s + 4 * c, 14 + 6 * s
                image = rng.uniform(0.2, 0.8, (size, size, 3)) * np.array([1.0, 0.9, 0.8])
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 30
                for k, exp in enumerate(sorted(explainers)):
                    if exp == "gradcam" and s == 1 and c == 1:
                        continue
                    if exp == "random":
                        amap = rng.uniform(0, 1, (size // 2, size // 2))
                    elif exp == "sobel":
                        amap = np.hypot(*np.gradient(image.mean(-1)))
                    else:
                        blob = np.exp(-((yy - cy - k) ** 2 + (xx - cx + k) ** 2) / (20.0 + 10 * k))
                        amap = blob + rng.normal(0, 0.05, blob.shape)
                    items.append(
                        GalleryItem(
                            detector=det,
                            explainer=exp,
                            category=cat,
                            sample_id=f"{cat}/test/defect_type_{s}/00{s}.png",
                            rank="example",
                            metric="",
                            value=math.nan,
                            image=image,
                            mask=mask,
                            amap=amap,
                        )
                    )
    return items


VERDICT_CYCLE = ["beats", "ties", "loses", "insufficient evidence", "beats", "undefined"]


def synthetic_verdicts(*, explainers=FULL_EXPLAINERS) -> pd.DataFrame:
    """Per-control rows and the overall "all controls" row per (detector, explainer,
    metric); every verdict kind occurs (sanity: passes / fails / inconclusive)."""
    rows = []
    metrics = [m for m in FULL_METRICS if FULL_METRICS[m][3][1] != "detection"]
    i = j = 0
    for det in DETECTORS:
        for exp in explainers:
            if exp in FULL_CONTROLS:
                continue
            for m in metrics:
                family = FULL_METRICS[m][3][1]
                if family == "sanity":
                    verdict = ("passes", "fails", "inconclusive")[j % 3]
                    j += 1
                else:
                    verdict = VERDICT_CYCLE[i % len(VERDICT_CYCLE)]
                i += 1
                for ctrl in [*sorted(FULL_CONTROLS), "all controls"]:
                    rows.append(
                        {
                            "detector": det,
                            "explainer": exp,
                            "metric": m,
                            "control": ctrl,
                            "mean_diff": 0.1,
                            "ci_low": 0.05,
                            "ci_high": 0.15,
                            "n": 20,
                            "verdict": verdict,
                            "meaning": "paired per image with each trivial control",
                        }
                    )
    return pd.DataFrame(rows)


def full_report() -> ReportData:
    results = synthetic_results(
        explainers=FULL_EXPLAINERS, metrics=FULL_METRICS, controls=FULL_CONTROLS
    )
    roc = synthetic_curves()
    curves = pd.concat([roc, synthetic_faithfulness_curves()], ignore_index=True)
    return ReportData(
        results=results,
        curves=curves,
        gallery=synthetic_examples() + synthetic_gallery(),
        manifest={"seed": 0},
        title="full report",
        verdicts=synthetic_verdicts(),
    )


@pytest.fixture(scope="module")
def full_report_data() -> ReportData:
    return full_report()
