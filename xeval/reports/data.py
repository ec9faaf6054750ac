"""What a report is made of: the results table, curves, a gallery and the manifest.

The report layer never computes metrics. It receives

- ``results``: the long table of :mod:`xeval.results` (one row per detector, explainer,
  dataset, category, protocol and metric),
- ``curves``: a long table of already downsampled curves (a few hundred points each),
- ``gallery``: a handful of best / worst test images per detector and explainer,
- ``manifest``: versions, seed, config hash, dataset fingerprint, timings,

and turns them into files (see :func:`xeval.reports.write_report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from xeval.errors import InputError
from xeval.results import RESULT_COLUMNS

CURVE_COLUMNS = ["detector", "explainer", "category", "curve", "x", "y"]
"""Columns of :attr:`ReportData.curves`. ``curve`` is ``"roc"`` (pixel ROC), ``"pro"``
(PRO curve), ``"image_roc"``, or a faithfulness metric's label (e.g.
``"deletion_auc"``: the mean normalised curve over the fraction removed); ``x`` is the
false positive rate (or the fraction). Optional ``y_low`` / ``y_high``: a 95% band."""

CURVE_KINDS = ("roc", "pro", "image_roc")
RANKS = ("example", "best", "worst")


@dataclass
class GalleryItem:
    """One test image shown in the gallery, with its mask and explanation map.

    Parameters
    ----------
    detector, explainer, category, sample_id : str
        Where the image comes from.
    rank : {"best", "worst"}
        Whether the image is among the best or the worst for ``metric``.
    metric : str
        The per-image metric used to rank images (e.g. ``"iou_per_image@t"``).
    value : float
        The value of ``metric`` on this image (NaN allowed).
    image : ndarray, shape (H, W, 3) or (H, W)
        Float image in [0, 1] (values outside are clipped for display).
    mask : ndarray, shape (H, W)
        Ground-truth mask (bool).
    amap : ndarray, shape (h, w)
        Explanation map, any float range; it is min-max scaled per image for display
        only and stretched over the image if its size differs.
    """

    detector: str
    explainer: str
    category: str
    sample_id: str
    rank: str
    metric: str
    value: float
    image: np.ndarray
    mask: np.ndarray
    amap: np.ndarray

    def __post_init__(self) -> None:
        if self.rank not in RANKS:
            raise InputError(f"GalleryItem.rank must be one of {RANKS}, got {self.rank!r}")
        image = np.asarray(self.image, dtype=float)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise InputError(
                f"GalleryItem.image must have shape (H, W, 3) or (H, W), got {image.shape}"
            )
        mask = np.asarray(self.mask).astype(bool)
        if mask.shape != image.shape[:2]:
            raise InputError(
                f"GalleryItem.mask must have the image's shape {image.shape[:2]}, got {mask.shape}"
            )
        amap = np.asarray(self.amap, dtype=float)
        if amap.ndim != 2:
            raise InputError(f"GalleryItem.amap must have shape (h, w), got {amap.shape}")
        self.image, self.mask, self.amap = image, mask, amap
        self.value = float(self.value)


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float if c in "xy" else object) for c in CURVE_COLUMNS})


@dataclass
class ReportData:
    """Everything a report shows.

    Parameters
    ----------
    results : DataFrame
        The long results table with the columns of :data:`xeval.results.RESULT_COLUMNS`.
    curves : DataFrame
        Long table with columns :data:`CURVE_COLUMNS`, already downsampled by the caller.
        May be empty.
    gallery : list of GalleryItem
        Best / worst images per detector and explainer. May be empty.
    manifest : dict
        Versions, seed, config hash, dataset fingerprint, timings (JSON-serialisable;
        other values are written with ``str``).
    title : str
        Title of the HTML page.
    verdicts : DataFrame, optional
        Explainer vs control verdicts (:func:`xeval.engine.verdicts.verdicts`).
    ranks : DataFrame, optional
        Rank table across explainers (:func:`xeval.engine.verdicts.rank_table`).
    per_image : DataFrame, optional
        The per-image table (which images the costly metrics ran on, and why some have
        no value).
    comparisons : DataFrame, optional
        Paired tests between explainers and between detectors on the same images
        (:func:`xeval.comparisons.pairwise_comparisons`); made from ``per_image`` by
        :func:`with_statistics` when not given.
    rankings : list of BlockRanking, optional
        Friedman rankings across categories
        (:func:`xeval.comparisons.category_rankings`); made from ``results`` by
        :func:`with_statistics` when not given.
    """

    results: pd.DataFrame
    curves: pd.DataFrame = field(default_factory=_empty_curves)
    gallery: list[GalleryItem] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    title: str = "xeval report"
    verdicts: pd.DataFrame | None = None
    ranks: pd.DataFrame | None = None
    per_image: pd.DataFrame | None = None
    comparisons: pd.DataFrame | None = None
    rankings: list | None = None

    def __post_init__(self) -> None:
        check_results(self.results)
        if self.curves is None:
            self.curves = _empty_curves()
        missing = [c for c in CURVE_COLUMNS if c not in self.curves.columns]
        if missing:
            raise InputError(f"ReportData.curves lacks columns {missing}; expected {CURVE_COLUMNS}")
        bad = [g for g in self.gallery if not isinstance(g, GalleryItem)]
        if bad:
            raise InputError(f"ReportData.gallery must hold GalleryItem, got {type(bad[0])}")
        if not isinstance(self.manifest, dict):
            raise InputError(f"ReportData.manifest must be a dict, got {type(self.manifest)}")


DEFAULT_N_BOOT = 1000


def statistics_options(manifest: dict[str, Any] | None) -> dict[str, int]:
    """``n_boot`` and ``seed`` of a run's statistics: the run's own bootstrap count
    (``config.evaluation.bootstrap``) and seed (``seed``) from its manifest, else
    :data:`DEFAULT_N_BOOT` and 0."""
    manifest = manifest or {}
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    evaluation = config.get("evaluation") if isinstance(config.get("evaluation"), dict) else {}
    n_boot, seed = evaluation.get("bootstrap", DEFAULT_N_BOOT), manifest.get("seed", 0)
    ok = isinstance(n_boot, int) and not isinstance(n_boot, bool) and n_boot >= 1
    return {
        "n_boot": int(n_boot) if ok else DEFAULT_N_BOOT,
        "seed": int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0,
    }


def with_statistics(report: ReportData, *, controls=None) -> ReportData:
    """Fill ``report.comparisons`` (when it has a per-image table) and
    ``report.rankings`` where they are None, with the run's bootstrap count and seed
    (:func:`statistics_options`); returns ``report`` (changed in place)."""
    from xeval.comparisons import category_rankings, pairwise_comparisons  # noqa: PLC0415

    if report.comparisons is None and report.per_image is not None and len(report.per_image):
        report.comparisons = pairwise_comparisons(
            report.per_image,
            report.results,
            controls=controls,
            **statistics_options(report.manifest),
        )
    if report.rankings is None:
        report.rankings = category_rankings(report.results, controls=controls)
    return report


DEFAULT_CONTROLS = frozenset({"random", "sobel", "centre"})
"""Explainer names treated as trivial controls when a results table has no ``control``
column (tables written by xeval 0.1)."""

_OPTIONAL = {"label": None, "family": "", "params": "{}", "control": None, "headline": 0}


def _as_bool(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in {"true", "1", "yes", "y", "t"}
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return False
    return bool(v)


def controls_of(results: pd.DataFrame) -> frozenset[str]:
    """The explainers the results mark as trivial controls (``control`` column)."""
    if "control" in results.columns:
        flags = results["control"].map(_as_bool)
        return frozenset(results.loc[flags, "explainer"].astype(str))
    return DEFAULT_CONTROLS


def display_frame(results: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``results`` keyed for display: ``metric`` holds the metric's label
    (``"aupro@0.3"``, unique within a run) and the metadata columns of newer tables
    exist (filled with neutral values for tables written by xeval 0.1)."""
    df = results.copy()
    for col, default in _OPTIONAL.items():
        if col not in df.columns:
            df[col] = df["metric"] if col == "label" else default
    label = df["label"].where(df["label"].notna() & (df["label"].astype(str) != ""), df["metric"])
    df["metric"] = label.astype(str)
    if df["control"].isna().any():
        df["control"] = df["explainer"].isin(DEFAULT_CONTROLS)
    df["control"] = df["control"].map(_as_bool)
    df["headline"] = pd.to_numeric(df["headline"], errors="coerce").fillna(0).astype(int)
    return df


def check_results(results: pd.DataFrame) -> None:
    """Raise :class:`InputError` unless ``results`` has every column of the long table."""
    if not isinstance(results, pd.DataFrame):
        raise InputError(f"results must be a pandas DataFrame, got {type(results)}")
    required = [c for c in RESULT_COLUMNS if c not in _OPTIONAL]
    missing = [c for c in required if c not in results.columns]
    if missing:
        raise InputError(f"results lacks columns {missing}; expected {required}")
