"""Report figures: pixel ROC / PRO curves, per-category bars, best / worst gallery.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas,
never through ``pyplot``: nothing is shown, no global figure is left open, and the
user's interactive backend is untouched. Each figure is rendered to memory and
written atomically as PNG. Colours encode the explainer (controls in greys, the same
in every figure); line styles (curves) and hatches (bars) encode the detector.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from xeval._io import atomic_write_bytes
from xeval.errors import InputError
from xeval.reports.data import CURVE_COLUMNS, CURVE_KINDS, GalleryItem
from xeval.reports.tables import DAGGER, DEFAULT_CONTROLS, MetricTable, metric_tables

DPI = 100
LINESTYLES = ["-", "--", ":", "-."]
HATCHES = ["", "///", "...", "xxx", "\\\\\\", "ooo"]
_CURVE_LABELS = {
    "roc": ("pixel ROC", "false positive rate (pixels)", "true positive rate"),
    "pro": ("PRO curve", "false positive rate (pixels)", "per-region overlap"),
    "image_roc": ("image ROC", "false positive rate (images)", "true positive rate"),
}


# --------------------------------------------------------------------------- curves


def plot_curves(
    curves: pd.DataFrame,
    kind: str,
    out_path: str | os.PathLike,
    *,
    fpr_limit: float = 0.3,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    col_wrap: int = 4,
    dpi: int = DPI,
) -> Path:
    """Plot one kind of curve, one facet per category.

    Parameters
    ----------
    curves : DataFrame
        Long table with columns ``detector, explainer, category, curve, x, y``.
    kind : {"roc", "pro", "image_roc"}
        Which curves to draw (``curve`` column).
    out_path : path
        PNG file to write (atomically).
    fpr_limit : float
        For ``"pro"``: the FPR integration limit, drawn as a vertical line; the x axis
        stops a little after it.
    controls : iterable of str
        Explainer names drawn in greys, thinner.
    col_wrap : int
        Facets per row.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    if kind not in CURVE_KINDS:
        raise InputError(f"kind must be one of {CURVE_KINDS}, got {kind!r}")
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise InputError(f"curves lacks columns {missing}; expected {CURVE_COLUMNS}")
    data = curves[curves["curve"].astype(str) == kind]
    if data.empty:
        raise InputError(f"no curves of kind {kind!r} to plot")
    controls = frozenset(controls)
    data = data.assign(**{c: data[c].astype(str) for c in ("detector", "explainer", "category")})
    categories = list(dict.fromkeys(data["category"]))
    colors = explainer_colors(data["explainer"], controls=controls)
    styles = _cycle(list(dict.fromkeys(data["detector"])), LINESTYLES)
    ncols = max(1, min(len(categories), col_wrap))
    nrows = math.ceil(len(categories) / ncols)
    title, xlabel, ylabel = _CURVE_LABELS[kind]
    with _style():
        fig = Figure(figsize=(3.0 * ncols + 0.4, 2.8 * nrows + 0.4), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for ax, cat in zip(axes.flat, categories, strict=False):
            _draw_curve_facet(ax, data[data["category"] == cat], colors, styles, controls)
            _finish_curve_axes(ax, kind, fpr_limit)
            ax.set_title(_t(cat))
        for ax in axes.flat[len(categories) :]:
            ax.set_visible(False)
        for ax in axes[-1, :]:
            ax.set_xlabel(xlabel)
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        fig.suptitle(title)
        _legend(fig, colors, styles, controls, kind="line")
        return _save(fig, out_path, dpi=dpi)


def _draw_curve_facet(ax, part: pd.DataFrame, colors, styles, controls) -> None:
    for (det, exp), g in part.groupby(["detector", "explainer"], sort=False):
        g = g.sort_values(["x", "y"], kind="stable")
        ctrl = exp in controls
        ax.plot(
            g["x"].to_numpy(float),
            g["y"].to_numpy(float),
            color=colors[exp],
            linestyle=styles[det],
            linewidth=1.0 if ctrl else 1.6,
            alpha=0.8 if ctrl else 0.95,
        )


def _finish_curve_axes(ax, kind: str, fpr_limit: float) -> None:
    if kind == "pro":
        ax.axvline(fpr_limit, color="black", linewidth=0.8, linestyle="--", alpha=0.7)
        ax.set_xlim(0.0, min(1.0, fpr_limit * 4.0 / 3.0))
        ax.text(fpr_limit, 0.02, f" FPR={fpr_limit:g}", fontsize=7, ha="left", va="bottom")
    else:
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.7, linestyle=":")
        ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)


# --------------------------------------------------------------------------- bars


def plot_category_bars(
    results: pd.DataFrame,
    metric: str,
    out_path: str | os.PathLike,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    dpi: int = DPI,
) -> Path:
    """Per-category bars of one metric, one bar per detector / explainer.

    Error bars show the confidence interval where the results have one; NaN values
    are written ``n/a``. The ``mean`` group is set apart by a dashed line.

    Parameters
    ----------
    results : DataFrame
        The long results table.
    metric : str
        Metric to plot (first dataset / protocol if the results hold several).
    out_path : path
        PNG file to write (atomically).
    controls : iterable of str
        Explainer names drawn in greys and marked with a dagger.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    controls = frozenset(controls)
    tables = [t for t in metric_tables(results, controls=controls) if t.metric == metric]
    if not tables:
        raise InputError(f"metric {metric!r} is not in the results")
    t = tables[0]
    colors = explainer_colors([e for _, e in t.rows], controls=controls)
    hatches = _cycle(list(dict.fromkeys(d for d, _ in t.rows)), HATCHES)
    n_bars, n_groups = len(t.rows), len(t.columns)
    width = min(24.0, max(6.0, 0.2 * n_bars * n_groups + 1.5))
    with _style():
        fig = Figure(figsize=(width, 3.6), layout="constrained")
        ax = fig.subplots()
        _draw_bars(ax, t, colors, hatches)
        ax.set_ylabel(f"{_t(t.metric)} {t.arrow}")
        ax.set_title(_t(t.title) + (" (optimistic)" if t.optimistic else ""))
        _legend(fig, colors, hatches, controls, kind="bar")
        return _save(fig, out_path, dpi=dpi)


def _draw_bars(ax, t: MetricTable, colors, hatches) -> None:
    n_bars = len(t.rows)
    bw = 0.84 / max(n_bars, 1)
    x0 = np.arange(len(t.columns), dtype=float)
    finite = []
    for i, (det, exp) in enumerate(t.rows):
        xs = x0 - 0.42 + bw * (i + 0.5)
        v = t.value.loc[(det, exp)].to_numpy(float)
        lo = t.ci_low.loc[(det, exp)].to_numpy(float)
        hi = t.ci_high.loc[(det, exp)].to_numpy(float)
        ok = ~np.isnan(v)
        ax.bar(
            xs[ok],
            v[ok],
            width=bw * 0.95,
            color=colors[exp],
            hatch=hatches[det],
            edgecolor="white" if not hatches[det] else "0.25",
            linewidth=0.3,
        )
        has_ci = ok & ~np.isnan(lo) & ~np.isnan(hi)
        if has_ci.any():
            err = np.vstack([v - lo, hi - v])[:, has_ci].clip(min=0)
            ax.errorbar(xs[has_ci], v[has_ci], yerr=err, fmt="none", ecolor="0.2", lw=0.7)
        for x in xs[~ok]:
            ax.text(x, 0.01, "n/a", rotation=90, fontsize=6, ha="center", va="bottom")
        finite.extend(v[ok].tolist() + lo[has_ci].tolist() + hi[has_ci].tolist())
    ax.set_xticks(x0, [_t(c) for c in t.columns], rotation=20 if len(t.columns) > 6 else 0)
    ax.set_xlim(-0.6, len(t.columns) - 0.4)
    if t.columns and t.columns[-1] == "mean" and len(t.columns) > 1:
        ax.axvline(len(t.columns) - 1.5, color="0.5", linestyle="--", linewidth=0.8)
    if finite and 0.0 <= min(finite) and max(finite) <= 1.0:
        ax.set_ylim(0.0, 1.05)
    elif not finite:
        ax.set_ylim(0.0, 1.0)


# --------------------------------------------------------------------------- gallery


def plot_gallery(
    items: Sequence[GalleryItem],
    out_path: str | os.PathLike,
    *,
    items_per_row: int = 4,
    panel_size: float = 1.35,
    dpi: int = DPI,
) -> Path:
    """Best and worst test images per detector x explainer.

    Each item takes three panels: the image, the image with the ground-truth mask
    contour, and the explanation map overlaid (min-max scaled per image, for display
    only) with the mask contour. One block of rows per (detector, explainer), at most
    ``items_per_row`` items per row; items are ordered by category, best first.

    Parameters
    ----------
    items : sequence of GalleryItem
        What to show.
    out_path : path
        PNG file to write (atomically).
    items_per_row : int
        Items (three panels each) per figure row.
    panel_size : float
        Panel size in inches.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    if not items:
        raise InputError("no gallery items to plot")
    rows = _gallery_rows(items, items_per_row=items_per_row)
    n_items = max(len(r) for _, r in rows)
    row_h = panel_size + 0.5
    width, height = panel_size * 3 * n_items * 1.08 + 1.2, row_h * len(rows) + 0.8
    with _style(grid=False):
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(
            left=1.1 / width,
            right=1 - 0.1 / width,
            top=1 - 0.8 / height,
            bottom=0.1 / height,
            wspace=0.08,
            hspace=0.5 / panel_size,
        )
        axes = fig.subplots(len(rows), 3 * n_items, squeeze=False)
        for r, (label, row_items) in enumerate(rows):
            for j in range(n_items):
                trio = axes[r, 3 * j : 3 * j + 3]
                if j < len(row_items):
                    _draw_item(trio, row_items[j])
                else:
                    for ax in trio:
                        ax.set_visible(False)
            axes[r, 0].set_ylabel(label, fontsize=8)
        fig.suptitle(
            "image / ground-truth mask / explanation map (min-max scaled per image)",
            y=1 - 0.12 / height,
            fontsize=9,
        )
        return _save(fig, out_path, dpi=dpi)


def _gallery_rows(
    items: Sequence[GalleryItem], *, items_per_row: int
) -> list[tuple[str, list[GalleryItem]]]:
    pairs = list(dict.fromkeys((i.detector, i.explainer) for i in items))
    cats = list(dict.fromkeys(i.category for i in items))
    rows = []
    for det, exp in pairs:
        block = [i for i in items if (i.detector, i.explainer) == (det, exp)]
        block.sort(key=lambda i: (cats.index(i.category), i.rank != "best"))
        label = "\n".join(_t(_shorten(s, 18)) for s in (det, exp))
        for k in range(0, len(block), max(1, items_per_row)):
            rows.append((label, block[k : k + items_per_row]))
    return rows


def _draw_item(trio, item: GalleryItem) -> None:
    img = np.clip(np.nan_to_num(item.image, nan=0.0), 0.0, 1.0)
    h, w = item.mask.shape
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    amap = _display_map(item.amap)
    for k, ax in enumerate(trio):
        ax.imshow(img if k < 2 else img.mean(axis=-1), cmap="gray", extent=extent, vmin=0, vmax=1)
        if k == 2:
            ax.imshow(amap, cmap="inferno", alpha=0.55, extent=extent, vmin=0, vmax=1)
        if k > 0 and item.mask.any() and not item.mask.all():
            color = "lime" if k == 1 else "cyan"
            if k == 1:
                fill = np.zeros((h, w, 4))
                fill[item.mask] = (0.0, 1.0, 0.0, 0.25)
                ax.imshow(fill, extent=extent)
            ax.contour(item.mask.astype(float), levels=[0.5], colors=color, linewidths=1.2)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    value = "n/a" if np.isnan(item.value) else f"{item.value:.3f}"
    head = f"{_shorten(item.category, 14)} · {item.rank}\n{_shorten(item.sample_id, 24)}"
    trio[0].set_title(_t(head), fontsize=7)
    trio[1].set_title("mask" if item.mask.any() else "mask (empty)", fontsize=7)
    trio[2].set_title(_t(f"{_shorten(item.metric, 24)}\n= {value}"), fontsize=7)


def _shorten(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _display_map(amap: np.ndarray) -> np.ndarray:
    a = np.asarray(amap, dtype=float)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros_like(a)
    lo, hi = a[finite].min(), a[finite].max()
    out = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.where(finite, out, 0.0)


# --------------------------------------------------------------------------- shared


def explainer_colors(
    explainers: Iterable[str], *, controls: Iterable[str] = DEFAULT_CONTROLS
) -> dict[str, tuple]:
    """A stable colour per explainer: a colour-blind palette, greys for controls."""
    controls = frozenset(controls)
    names = list(dict.fromkeys(str(e) for e in explainers))
    real = [e for e in names if e not in controls]
    ctrl = [e for e in names if e in controls]
    import seaborn as sns

    palette = sns.color_palette("colorblind" if len(real) <= 10 else "husl", max(len(real), 1))
    greys = [(g, g, g) for g in np.linspace(0.3, 0.7, max(len(ctrl), 1))]
    out = dict(zip(real, palette, strict=False))
    out.update(zip(ctrl, greys, strict=False))
    return out


def _cycle(names: list[str], values: list[str]) -> dict[str, str]:
    return {n: values[i % len(values)] for i, n in enumerate(names)}


def _legend(fig, colors, styles, controls, *, kind: str) -> None:
    handles = [Line2D([], [], linestyle="", label="explainer")]
    for exp, c in colors.items():
        label = _t(_shorten(exp, 32)) + (DAGGER if exp in controls else "")
        if kind == "line":
            handles.append(Line2D([], [], color=c, linewidth=1.6, label=label))
        else:
            handles.append(Patch(facecolor=c, label=label))
    handles.append(Line2D([], [], linestyle="", label="detector"))
    for det, s in styles.items():
        if kind == "line":
            handles.append(Line2D([], [], color="0.2", linestyle=s, label=_t(_shorten(det, 32))))
        else:
            handles.append(
                Patch(facecolor="white", edgecolor="0.25", hatch=s, label=_t(_shorten(det, 32)))
            )
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)


@contextmanager
def _style(*, grid: bool = True):
    import seaborn as sns  # imported lazily: ~1.5 s, only needed to draw

    with sns.axes_style("whitegrid" if grid else "white"), sns.plotting_context("paper"):
        yield


def _save(fig: Figure, out_path: str | os.PathLike, *, dpi: int) -> Path:
    """Render ``fig`` to PNG in memory and write it atomically.

    The figure is not registered with ``pyplot``, so it is freed with its last reference.
    """
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(out_path, buf.getvalue())


def _t(text: object) -> str:
    """Text for matplotlib: ``$`` escaped so that names are never parsed as mathtext."""
    return str(text).replace("$", r"\$")
