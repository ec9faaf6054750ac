"""Report figures: curves, per-category bars, galleries and the verdict profile.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas,
never through ``pyplot``: nothing is shown, no global figure is left open, and the
user's interactive backend is untouched. Each figure is rendered to memory and
written atomically as PNG.

One visual language throughout (:func:`explainer_styles`): every real explainer has
its own colour, the same in every figure of a report (pass the report-wide mapping of
:func:`report_colors` as ``colors``); trivial controls are drawn in greys, with dashed
lines and hatched bars, and the legends say "(control)". Detectors are never encoded
by style: they get their own panels.

``*_figure`` functions build and return the :class:`~matplotlib.figure.Figure` (for
inspection and tests); ``plot_*`` functions draw and write the PNG.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from xeval._io import atomic_write_bytes
from xeval.errors import InputError
from xeval.reports.data import CURVE_COLUMNS, CURVE_KINDS, RANKS, GalleryItem, display_frame
from xeval.reports.tables import DEFAULT_CONTROLS, MEAN, MetricTable, metric_tables

DPI = 100
CONTROL_LINESTYLE = "--"
CONTROL_HATCH = "///"
CONTROL_SUFFIX = " (control)"
MAX_EXAMPLE_ROWS = 6
_MAX_WIDTH = 11.0  # inches: the report page is ~1170 px wide, figures show unscaled
_CURVE_LABELS = {
    "roc": ("pixel ROC", "false positive rate (pixels)", "true positive rate"),
    "pro": ("PRO curve", "false positive rate (pixels)", "per-region overlap"),
    "image_roc": ("image ROC", "false positive rate (images)", "true positive rate"),
}
FAMILIES = ("localisation", "faithfulness", "robustness", "sanity")
VERDICT_GROUPS = (
    # (legend label, verdicts, face colour, hatch)
    ("beats / passes", ("beats", "passes"), "#2e8b57", ""),
    ("ties / inconclusive", ("ties", "inconclusive"), "#b0b0b0", ""),
    ("loses / fails", ("loses", "fails"), "#d1495b", ""),
    ("insufficient evidence / undefined", ("insufficient evidence", "undefined"), "#f4f4f4", "///"),
)
"""How the profile groups the overall verdicts (any other verdict counts as the last)."""


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class ExplainerStyle:
    """How one explainer is drawn: colour, line style / width / alpha, bar hatch, label."""

    color: tuple
    linestyle: str
    linewidth: float
    alpha: float
    hatch: str
    control: bool
    label: str


def explainer_order(explainers: Iterable[str], *, controls: Iterable[str] = ()) -> list[str]:
    """Distinct names: real explainers in order of appearance, then the controls."""
    controls = frozenset(controls)
    names = list(dict.fromkeys(str(e) for e in explainers))
    return [e for e in names if e not in controls] + [e for e in names if e in controls]


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
    greys = [(g, g, g) for g in np.linspace(0.3, 0.62, max(len(ctrl), 1))]
    out = dict(zip(real, [tuple(c) for c in palette], strict=False))
    out.update(zip(ctrl, greys, strict=False))
    return out


def report_colors(
    *sources: Iterable[str] | pd.DataFrame | Sequence[GalleryItem] | None,
    controls: Iterable[str] = DEFAULT_CONTROLS,
) -> dict[str, tuple]:
    """One explainer -> colour mapping for every figure of a report.

    ``sources`` are the results, curves and verdicts tables (their ``explainer``
    column), gallery item lists or plain name lists, in priority order: explainers are
    coloured in order of first appearance over all of them."""
    names: list[str] = []
    for src in sources:
        if src is None:
            continue
        if isinstance(src, pd.DataFrame):
            if "explainer" in src.columns:
                names.extend(src["explainer"].dropna().astype(str))
        else:
            names.extend(str(getattr(s, "explainer", s)) for s in src)
    return explainer_colors(names, controls=controls)


def explainer_styles(
    explainers: Iterable[str],
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    colors: Mapping[str, tuple] | None = None,
) -> dict[str, ExplainerStyle]:
    """The style of each explainer (ordered: real explainers, then controls).

    Real explainers: solid, opaque, their palette colour. Controls: grey, dashed
    (:data:`CONTROL_LINESTYLE`), thinner, hatched bars (:data:`CONTROL_HATCH`), legend
    label ending in :data:`CONTROL_SUFFIX`. ``colors`` (e.g. :func:`report_colors`)
    fixes the colours; names it lacks get the next free ones."""
    controls = frozenset(controls)
    names = explainer_order(explainers, controls=controls)
    palette = _resolve_colors(names, controls, colors)
    out = {}
    for e in names:
        ctrl = e in controls
        out[e] = ExplainerStyle(
            color=palette[e],
            linestyle=CONTROL_LINESTYLE if ctrl else "-",
            linewidth=1.3 if ctrl else 1.8,
            alpha=0.9 if ctrl else 1.0,
            hatch=CONTROL_HATCH if ctrl else "",
            control=ctrl,
            label=e + (CONTROL_SUFFIX if ctrl else ""),
        )
    return out


def _resolve_colors(names, controls, colors) -> dict[str, tuple]:
    if colors is None:
        return explainer_colors(names, controls=controls)
    colors = {str(k): v for k, v in colors.items()}
    missing = [n for n in names if n not in colors]
    if not missing:
        return colors
    # the given names first, so that the missing ones take the next palette slots
    fresh = explainer_colors([*colors, *missing], controls=controls)
    return {**fresh, **colors}


# --------------------------------------------------------------------------- curves


def curves_figure(
    curves: pd.DataFrame,
    kind: str,
    *,
    fpr_limit: float = 0.3,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    colors: Mapping[str, tuple] | None = None,
    col_wrap: int = 4,
) -> Figure:
    """The figure of :func:`plot_curves` (one panel per detector and category)."""
    if kind not in CURVE_KINDS:
        raise InputError(f"kind must be one of {CURVE_KINDS}, got {kind!r}")
    _check_curves(curves)
    data = curves[curves["curve"].astype(str) == kind]
    if data.empty:
        raise InputError(f"no curves of kind {kind!r} to plot")
    controls = frozenset(controls)
    data = data.assign(**{c: data[c].astype(str) for c in ("detector", "explainer", "category")})
    detectors = list(dict.fromkeys(data["detector"]))
    categories = list(dict.fromkeys(data["category"]))
    styles = explainer_styles(data["explainer"], controls=controls, colors=colors)
    ncols = max(1, min(len(categories), col_wrap))
    rows_per_det = math.ceil(len(categories) / ncols)
    nrows = rows_per_det * len(detectors)
    title, xlabel, ylabel = _CURVE_LABELS[kind]
    panel_w = min(2.9, (_MAX_WIDTH - 0.4) / ncols)
    with _style():
        fig = Figure(figsize=(panel_w * ncols + 0.4, 2.6 * nrows + 0.9), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for ax in axes.flat:
            ax.set_visible(False)
        for d, det in enumerate(detectors):
            for c, cat in enumerate(categories):
                ax = axes[d * rows_per_det + c // ncols, c % ncols]
                ax.set_visible(True)
                part = data[(data["detector"] == det) & (data["category"] == cat)]
                _draw_curve_facet(ax, part, styles)
                _finish_curve_axes(ax, kind, fpr_limit)
                head = cat if len(detectors) == 1 else f"{det} \u00b7 {cat}"
                ax.set_title(_wrap(head, int(panel_w * 13)), fontsize=9)
                ax.tick_params(labelbottom=True, labelleft=c % ncols == 0)
                if c % ncols == 0:
                    ax.set_ylabel(ylabel)
                if c + ncols >= len(categories):
                    ax.set_xlabel(xlabel)
        fig.suptitle(title)
        _explainer_legend(fig, styles, kind="line")
    return fig


def plot_curves(
    curves: pd.DataFrame,
    kind: str,
    out_path: str | os.PathLike,
    *,
    fpr_limit: float = 0.3,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    colors: Mapping[str, tuple] | None = None,
    col_wrap: int = 4,
    dpi: int = DPI,
) -> Path:
    """Plot one kind of curve, one panel per detector and category.

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
        Explainer names drawn as controls (grey, dashed).
    colors : mapping of str to colour, optional
        Explainer colours shared by the report's figures (:func:`report_colors`).
    col_wrap : int
        Panels per row (each detector starts a new row).
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    fig = curves_figure(
        curves, kind, fpr_limit=fpr_limit, controls=controls, colors=colors, col_wrap=col_wrap
    )
    return _save(fig, out_path, dpi=dpi)


def _draw_curve_facet(ax, part: pd.DataFrame, styles: Mapping[str, ExplainerStyle]) -> None:
    present = set(part["explainer"])
    for exp, st in styles.items():
        if exp not in present:
            continue
        g = part[part["explainer"] == exp].sort_values(["x", "y"], kind="stable")
        ax.plot(
            g["x"].to_numpy(float),
            g["y"].to_numpy(float),
            color=st.color,
            linestyle=st.linestyle,
            linewidth=st.linewidth,
            alpha=st.alpha,
            zorder=2 if st.control else 3,
            label=st.label,
        )


def _finish_curve_axes(ax, kind: str, fpr_limit: float) -> None:
    if kind == "pro":
        ax.axvline(fpr_limit, color="black", linewidth=0.8, linestyle=":", alpha=0.7)
        ax.set_xlim(0.0, min(1.0, fpr_limit * 4.0 / 3.0))
        ax.text(fpr_limit, 0.02, f" FPR={fpr_limit:g}", fontsize=7, ha="left", va="bottom")
    else:
        ax.plot([0, 1], [0, 1], color="0.75", linewidth=0.7, linestyle=":")
        ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)


# --------------------------------------------------------------------------- faithfulness


def faithfulness_kinds(curves: pd.DataFrame | None, results: pd.DataFrame | None = None) -> list:
    """The faithfulness curve kinds of ``curves``, in order of appearance.

    Every ``curve`` value other than the FPR curves (``roc``, ``pro``, ``image_roc``,
    ``spro``, ``spro/<type>``) and, when ``results`` give the label a family, only those
    of the faithfulness family."""
    if curves is None or len(curves) == 0 or "curve" not in curves.columns:
        return []
    families: dict[str, str] = {}
    if results is not None and len(results):
        shown = display_frame(results)
        families = dict(zip(shown["metric"].astype(str), shown["family"].astype(str), strict=False))
    out = []
    for kind in dict.fromkeys(curves["curve"].dropna().astype(str)):
        if kind in CURVE_KINDS or kind == "spro" or kind.startswith("spro/"):
            continue
        if families.get(kind, "faithfulness") not in ("faithfulness", "", "nan"):
            continue
        out.append(kind)
    return out


def average_curve(part: pd.DataFrame) -> pd.DataFrame:
    """Mean over categories of per-category mean curves (columns ``x, y, y_low, y_high``).

    Each category's curve is averaged over duplicate ``x``; categories on different
    ``x`` grids are interpolated onto their common range. The band is the mean of the
    per-category band edges (NaN where a category has none); a ``mean`` category is
    ignored when real categories are present."""
    cats = part["category"].astype(str)
    if (cats != MEAN).any():
        part = part[cats != MEAN]
    cols = ["y", "y_low", "y_high"]
    part = part.assign(**{c: pd.to_numeric(part[c], errors="coerce") for c in cols if c in part})
    for c in cols:
        if c not in part.columns:
            part = part.assign(**{c: np.nan})
    per = [
        g.groupby("x", sort=True)[cols].mean()
        for _, g in part.assign(x=part["x"].astype(float)).groupby("category", sort=False)
    ]
    per = [p for p in per if len(p)]
    if not per:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in ["x", *cols]})
    grids = [p.index.to_numpy(float) for p in per]
    if all(len(g) == len(grids[0]) and np.allclose(g, grids[0]) for g in grids):
        x = grids[0]
        stacks = {c: np.vstack([p[c].to_numpy(float) for p in per]) for c in cols}
    else:
        lo = max(g.min() for g in grids)
        hi = min(g.max() for g in grids)
        x = np.unique(np.concatenate(grids))
        if lo <= hi:
            x = x[(x >= lo) & (x <= hi)]
        stacks = {c: np.vstack([_interp(x, p, c) for p in per]) for c in cols}
    with np.errstate(all="ignore"), _quiet():
        y = np.nanmean(stacks["y"], axis=0)
    return pd.DataFrame(
        {"x": x, "y": y, "y_low": stacks["y_low"].mean(0), "y_high": stacks["y_high"].mean(0)}
    )


def _interp(x: np.ndarray, p: pd.DataFrame, col: str) -> np.ndarray:
    v = p[col].to_numpy(float)
    ok = np.isfinite(v)
    if not ok.any():
        return np.full(len(x), np.nan)
    xp = p.index.to_numpy(float)[ok]
    out = np.interp(x, xp, v[ok])
    return np.where((x < xp.min()) | (x > xp.max()), np.nan, out)


def faithfulness_figure(
    curves: pd.DataFrame,
    kind: str,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    colors: Mapping[str, tuple] | None = None,
    higher_is_better: bool | None = None,
    col_wrap: int = 3,
) -> Figure:
    """The figure of :func:`plot_faithfulness_curves` (one panel per detector)."""
    _check_curves(curves)
    data = curves[curves["curve"].astype(str) == str(kind)]
    if data.empty:
        raise InputError(f"no curves of kind {kind!r} to plot")
    controls = frozenset(controls)
    data = data.assign(**{c: data[c].astype(str) for c in ("detector", "explainer", "category")})
    detectors = list(dict.fromkeys(data["detector"]))
    styles = explainer_styles(data["explainer"], controls=controls, colors=colors)
    ncols = max(1, min(len(detectors), col_wrap))
    nrows = math.ceil(len(detectors) / ncols)
    panel_w = min(4.2, (_MAX_WIDTH - 0.4) / ncols)
    has_band = False
    with _style():
        fig = Figure(figsize=(panel_w * ncols + 0.4, 3.0 * nrows + 1.0), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for ax in axes.flat[len(detectors) :]:
            ax.set_visible(False)
        for k, (ax, det) in enumerate(zip(axes.flat, detectors, strict=False)):
            part = data[data["detector"] == det]
            for exp, st in styles.items():
                g = part[part["explainer"] == exp]
                if g.empty:
                    continue
                mean = average_curve(g)
                x, y = mean["x"].to_numpy(float), mean["y"].to_numpy(float)
                lo, hi = mean["y_low"].to_numpy(float), mean["y_high"].to_numpy(float)
                z = 2 if st.control else 3
                band = np.isfinite(lo) & np.isfinite(hi)
                if band.any():
                    has_band = True
                    ax.fill_between(
                        x,
                        lo,
                        hi,
                        where=band,
                        color=st.color,
                        alpha=0.12 if st.control else 0.2,
                        linewidth=0,
                        zorder=z - 1,
                    )
                ax.plot(
                    x,
                    y,
                    color=st.color,
                    linestyle=st.linestyle,
                    linewidth=st.linewidth,
                    alpha=st.alpha,
                    zorder=z,
                    label=st.label,
                )
            ax.set_title(_wrap(det, int(panel_w * 13)), fontsize=9)
            ax.set_xlim(0.0, 1.0)
            ax.set_ylim(0.0, 1.02)
            ax.tick_params(labelbottom=True)
            if k % ncols == 0:
                ax.set_ylabel("mean normalised score")
            ax.set_xlabel(_fraction_label(kind))
        arrow = {True: " (higher AUC is better)", False: " (lower AUC is better)"}
        fig.suptitle(_t(f"{kind} curve") + arrow.get(higher_is_better, ""))
        extra = []
        if has_band:
            extra.append(Patch(facecolor="0.5", alpha=0.25, label="95% band"))
        _explainer_legend(fig, styles, kind="line", extra=extra)
    return fig


def plot_faithfulness_curves(
    curves: pd.DataFrame,
    kind: str,
    out_path: str | os.PathLike,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    colors: Mapping[str, tuple] | None = None,
    higher_is_better: bool | None = None,
    dpi: int = DPI,
) -> Path:
    """Faithfulness curves of one kind (e.g. ``"deletion_auc"``): one panel per
    detector, one line per explainer averaged over categories (:func:`average_curve`),
    its 95% band shaded; controls grey and dashed.

    Parameters
    ----------
    curves : DataFrame
        Long table with columns ``detector, explainer, category, curve, x, y`` and
        optionally ``y_low, y_high``.
    kind : str
        The ``curve`` value to draw.
    out_path : path
        PNG file to write (atomically).
    controls : iterable of str
        Explainer names drawn as controls.
    colors : mapping of str to colour, optional
        Explainer colours shared by the report's figures.
    higher_is_better : bool, optional
        The metric's direction, said in the title.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    fig = faithfulness_figure(
        curves, kind, controls=controls, colors=colors, higher_is_better=higher_is_better
    )
    return _save(fig, out_path, dpi=dpi)


def _fraction_label(kind: str) -> str:
    k = str(kind).lower()
    if "deletion" in k:
        return "fraction of pixels removed"
    if "insertion" in k:
        return "fraction of pixels inserted"
    return "fraction of pixels perturbed"


# --------------------------------------------------------------------------- bars


def bars_figure(
    results: pd.DataFrame,
    metric: str,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    colors: Mapping[str, tuple] | None = None,
) -> Figure:
    """The figure of :func:`plot_category_bars` (one panel per detector)."""
    controls = frozenset(controls)
    tables = [t for t in metric_tables(results, controls=controls) if t.metric == metric]
    if not tables:
        raise InputError(f"metric {metric!r} is not in the results")
    t = tables[0]
    styles = explainer_styles([e for _, e in t.rows], controls=controls, colors=colors)
    detectors = list(dict.fromkeys(d for d, _ in t.rows))
    per_det = max(sum(1 for d, _ in t.rows if d == det) for det in detectors)
    n_groups = len(t.columns)
    width = min(_MAX_WIDTH, max(6.0, 0.17 * per_det * n_groups + 1.6))
    rotate = n_groups > 6 or width / max(n_groups, 1) < 0.9
    height = 2.3 * len(detectors) + 1.1 + (0.5 if rotate else 0.0)
    with _style():
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(len(detectors), 1, squeeze=False, sharex=True, sharey=True)[:, 0]
        for ax, det in zip(axes, detectors, strict=True):
            _draw_bars(ax, t, det, styles)
            ax.set_ylabel(f"{_t(t.metric)} {t.arrow}")
            if len(detectors) > 1:
                ax.set_title(_wrap(det, 80), fontsize=9, loc="left")
        axes[-1].set_xticks(
            np.arange(n_groups),
            [_wrap(c, 14) for c in t.columns],
            rotation=30 if rotate else 0,
            ha="right" if rotate else "center",
        )
        fig.suptitle(_t(t.title) + (" (optimistic)" if t.optimistic else ""))
        _explainer_legend(fig, styles, kind="bar")
    return fig


def plot_category_bars(
    results: pd.DataFrame,
    metric: str,
    out_path: str | os.PathLike,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    colors: Mapping[str, tuple] | None = None,
    dpi: int = DPI,
) -> Path:
    """Per-category bars of one metric: one panel per detector, one bar per explainer.

    Error bars show the confidence interval where the results have one; NaN values
    are written ``n/a``. The ``mean`` group is set apart by a dashed line. Controls are
    grey and hatched.

    Parameters
    ----------
    results : DataFrame
        The long results table.
    metric : str
        Metric to plot (first dataset / protocol if the results hold several).
    out_path : path
        PNG file to write (atomically).
    controls : iterable of str
        Explainer names drawn as controls.
    colors : mapping of str to colour, optional
        Explainer colours shared by the report's figures.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    fig = bars_figure(results, metric, controls=controls, colors=colors)
    return _save(fig, out_path, dpi=dpi)


def _draw_bars(ax, t: MetricTable, det: str, styles: Mapping[str, ExplainerStyle]) -> None:
    rows = [(d, e) for d, e in t.rows if d == det]
    n_bars = len(rows)
    bw = 0.84 / max(n_bars, 1)
    x0 = np.arange(len(t.columns), dtype=float)
    finite = []
    for i, (d, exp) in enumerate(rows):
        st = styles[exp]
        xs = x0 - 0.42 + bw * (i + 0.5)
        v = t.value.loc[(d, exp)].to_numpy(float)
        lo = t.ci_low.loc[(d, exp)].to_numpy(float)
        hi = t.ci_high.loc[(d, exp)].to_numpy(float)
        ok = ~np.isnan(v)
        ax.bar(
            xs[ok],
            v[ok],
            width=bw * 0.92,
            color=st.color,
            hatch=st.hatch,
            edgecolor="white",
            linewidth=0.3,
            label=st.label,
        )
        has_ci = ok & ~np.isnan(lo) & ~np.isnan(hi)
        if has_ci.any():
            err = np.vstack([v - lo, hi - v])[:, has_ci].clip(min=0)
            ax.errorbar(xs[has_ci], v[has_ci], yerr=err, fmt="none", ecolor="0.2", lw=0.7)
        for x in xs[~ok]:
            ax.text(x, 0.01, "n/a", rotation=90, fontsize=6, ha="center", va="bottom")
        finite.extend(v[ok].tolist() + lo[has_ci].tolist() + hi[has_ci].tolist())
    ax.set_xlim(-0.6, len(t.columns) - 0.4)
    ax.grid(False, axis="x")
    if t.columns and t.columns[-1] == MEAN and len(t.columns) > 1:
        ax.axvline(len(t.columns) - 1.5, color="0.5", linestyle="--", linewidth=0.8)
    if finite and 0.0 <= min(finite) and max(finite) <= 1.0:
        ax.set_ylim(0.0, 1.05)
    elif not finite:
        ax.set_ylim(0.0, 1.0)


# --------------------------------------------------------------------------- galleries


def gallery_columns(
    items: Sequence[GalleryItem],
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    explainers: Sequence[str] | None = None,
) -> list[str]:
    """The explainer order of the galleries: real explainers in order of appearance
    (in ``explainers`` when given, e.g. the results' order, then in ``items``), then
    the controls; only explainers that have items."""
    present = list(dict.fromkeys(str(i.explainer) for i in items))
    known = [e for e in dict.fromkeys(map(str, explainers or ())) if e in present]
    return explainer_order([*known, *present], controls=controls)


def example_rows(
    items: Sequence[GalleryItem], *, max_rows: int = MAX_EXAMPLE_ROWS
) -> list[tuple[str, str]]:
    """The (category, sample_id) rows of an example gallery: at most ``max_rows``,
    taken one per category in turn (so that many categories get one row each), then
    grouped by category in order of appearance."""
    keys = list(dict.fromkeys((str(i.category), str(i.sample_id)) for i in items))
    cats = list(dict.fromkeys(c for c, _ in keys))
    queues = {c: [k for k in keys if k[0] == c] for c in cats}
    chosen: list[tuple[str, str]] = []
    while len(chosen) < max(0, max_rows) and any(queues.values()):
        for c in cats:
            if queues[c] and len(chosen) < max_rows:
                chosen.append(queues[c].pop(0))
    return sorted(chosen, key=lambda k: (cats.index(k[0]), keys.index(k)))


def example_gallery_figure(
    items: Sequence[GalleryItem],
    *,
    detector: str | None = None,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    explainers: Sequence[str] | None = None,
    max_rows: int = MAX_EXAMPLE_ROWS,
    panel_size: float = 1.5,
) -> Figure:
    """The figure of :func:`plot_example_gallery`."""
    ex = [i for i in items if i.rank == "example"]
    if detector is not None:
        ex = [i for i in ex if str(i.detector) == str(detector)]
    if not ex:
        raise InputError("no example gallery items to plot")
    dets = list(dict.fromkeys(str(i.detector) for i in ex))
    if len(dets) > 1:
        raise InputError(f"example gallery items of several detectors {dets}; pass detector=")
    controls = frozenset(controls)
    cols = gallery_columns(ex, controls=controls, explainers=explainers)
    rows = example_rows(ex, max_rows=max_rows)
    if not rows:
        raise InputError(f"max_rows must be at least 1, got {max_rows}")
    cell: dict[tuple[str, str, str], GalleryItem] = {}
    for i in ex:
        cell.setdefault((str(i.category), str(i.sample_id), str(i.explainer)), i)
    base = {}
    for i in ex:
        base.setdefault((str(i.category), str(i.sample_id)), i)

    ncols = 2 + len(cols)
    left, right, gap = 1.4, 0.8, 0.08
    panel = max(0.8, min(panel_size, (_MAX_WIDTH - left - right) / (ncols + (ncols - 1) * gap)))
    chars = max(10, int(panel * 15))
    titles = ["image", "ground truth"] + [_wrap(e, chars) for e in cols]
    subtitles = ["", ""] + ["(control)" if e in controls else "" for e in cols]
    title_lines = max(t.count("\n") + 1 + bool(s) for t, s in zip(titles, subtitles, strict=True))
    gap_w, gap_h = gap * panel, 0.1 * panel
    top, bottom = 0.62 + 0.14 * title_lines, 0.12
    width = left + ncols * panel + (ncols - 1) * gap_w + right
    height = top + len(rows) * panel + (len(rows) - 1) * gap_h + bottom
    with _style(grid=False):
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(
            left=left / width,
            right=1 - right / width,
            top=1 - top / height,
            bottom=bottom / height,
            wspace=gap_w / panel,
            hspace=gap_h / panel,
        )
        axes = fig.subplots(len(rows), ncols, squeeze=False)
        for r, key in enumerate(rows):
            item = base[key]
            _show_image(axes[r, 0], item)
            _show_image(axes[r, 1], item)
            _show_mask(axes[r, 1], item, fill=True)
            for j, exp in enumerate(cols):
                ax = axes[r, 2 + j]
                it = cell.get((*key, exp))
                if it is None:
                    _show_missing(ax)
                    continue
                _show_image(ax, it, grey=True)
                _show_map(ax, it)
                _show_mask(ax, it, fill=False)
            label = f"{_wrap(key[0], 18)}\n{_wrap(key[1], 18)}"
            axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
        for j, ax in enumerate(axes[0]):
            text = titles[j] + ("\n" + subtitles[j] if subtitles[j] else "")
            ax.set_title(text, fontsize=8, color="0.35" if subtitles[j] else "black")
        bar_h = min(panel * 2, height - top - bottom)
        cax = fig.add_axes(
            (1 - (right - 0.15) / width, 1 - (top + bar_h) / height, 0.12 / width, bar_h / height)
        )
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="inferno"), cax=cax)
        cb.set_label("map (min-max per image)", fontsize=7)
        cb.ax.tick_params(labelsize=6)
        fig.suptitle(
            f"{_wrap(dets[0], 60)}: example anomalous images, same images for every explainer",
            y=1 - 0.12 / height,
            fontsize=9,
        )
        fig.text(
            0.5,
            1 - 0.34 / height,
            "green: ground-truth mask; cyan: its outline over each explanation map",
            ha="center",
            va="top",
            fontsize=7,
            color="0.35",
        )
    return fig


def plot_example_gallery(
    items: Sequence[GalleryItem],
    out_path: str | os.PathLike,
    *,
    detector: str | None = None,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    explainers: Sequence[str] | None = None,
    max_rows: int = MAX_EXAMPLE_ROWS,
    panel_size: float = 1.5,
    dpi: int = DPI,
) -> Path:
    """The example images of one detector, every explainer side by side.

    One row per example image (at most ``max_rows``, one per category first:
    :func:`example_rows`), labelled category / sample id; columns: the image, the
    ground-truth mask over it, then each explainer's map over the image (min-max scaled
    per image, for display only) with the mask outline, in one fixed order
    (:func:`gallery_columns`: real explainers, then controls), full names as titles.

    Parameters
    ----------
    items : sequence of GalleryItem
        Gallery items; only those of rank ``"example"`` (and ``detector``) are used.
    out_path : path
        PNG file to write (atomically).
    detector : str, optional
        The detector to show; required when the items hold several.
    controls : iterable of str
        Explainer names shown last, marked "(control)".
    explainers : sequence of str, optional
        Preferred explainer order (e.g. the results' order).
    max_rows : int
        Most example images shown.
    panel_size : float
        Panel size in inches (shrunk when there are many explainers).
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    fig = example_gallery_figure(
        items,
        detector=detector,
        controls=controls,
        explainers=explainers,
        max_rows=max_rows,
        panel_size=panel_size,
    )
    return _save(fig, out_path, dpi=dpi)


def plot_gallery(
    items: Sequence[GalleryItem],
    out_path: str | os.PathLike,
    *,
    items_per_row: int = 4,
    panel_size: float = 1.35,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    explainers: Sequence[str] | None = None,
    dpi: int = DPI,
) -> Path:
    """Best and worst test images per detector x explainer.

    Each item takes three panels: the image, the image with the ground-truth mask
    contour, and the explanation map overlaid (min-max scaled per image, for display
    only) with the mask contour. One block of rows per (detector, explainer), at most
    ``items_per_row`` items per row; detectors in order of appearance, explainers in
    the galleries' order (:func:`gallery_columns`: real explainers, then controls);
    items ordered by category, best first.

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
    controls : iterable of str
        Explainer names shown last in each detector, marked "(control)".
    explainers : sequence of str, optional
        Preferred explainer order (e.g. the results' order).
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.
    """
    if not items:
        raise InputError("no gallery items to plot")
    rows = _gallery_rows(
        items, items_per_row=items_per_row, controls=frozenset(controls), explainers=explainers
    )
    n_items = max(len(r) for _, r in rows)
    row_h = panel_size + 0.5
    left = 1.5
    width, height = panel_size * 3 * n_items * 1.08 + left + 0.1, row_h * len(rows) + 0.8
    with _style(grid=False):
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(
            left=left / width,
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
            axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
        fig.suptitle(
            "image / ground-truth mask / explanation map (min-max scaled per image)",
            y=1 - 0.12 / height,
            fontsize=9,
        )
    return _save(fig, out_path, dpi=dpi)


def _gallery_rows(
    items: Sequence[GalleryItem],
    *,
    items_per_row: int,
    controls: frozenset[str] = DEFAULT_CONTROLS,
    explainers: Sequence[str] | None = None,
) -> list[tuple[str, list[GalleryItem]]]:
    detectors = list(dict.fromkeys(str(i.detector) for i in items))
    order = gallery_columns(items, controls=controls, explainers=explainers)
    cats = list(dict.fromkeys(str(i.category) for i in items))
    rows = []
    for det in detectors:
        for exp in order:
            block = [i for i in items if (str(i.detector), str(i.explainer)) == (det, exp)]
            if not block:
                continue
            block.sort(key=lambda i: (cats.index(str(i.category)), RANKS.index(i.rank)))
            name = _wrap(exp, 18) + ("\n(control)" if exp in controls else "")
            label = f"{_wrap(det, 18)}\n{name}"
            for k in range(0, len(block), max(1, items_per_row)):
                rows.append((label, block[k : k + items_per_row]))
    return rows


def _draw_item(trio, item: GalleryItem) -> None:
    _show_image(trio[0], item)
    _show_image(trio[1], item)
    _show_mask(trio[1], item, fill=True)
    _show_image(trio[2], item, grey=True)
    _show_map(trio[2], item)
    _show_mask(trio[2], item, fill=False)
    value = "n/a" if np.isnan(item.value) else f"{item.value:.3f}"
    sid = _wrap(item.sample_id, 28).split("\n")
    if len(sid) > 2:
        sid = [sid[0], _shorten(sid[1] + "".join(sid[2:]), 28)]
    head = _t(f"{_shorten(item.category, 20)} \u00b7 {item.rank}\n") + "\n".join(sid)
    trio[0].set_title(head, fontsize=7)
    trio[1].set_title("mask" if item.mask.any() else "mask (empty)", fontsize=7)
    trio[2].set_title(_t(f"{_shorten(item.metric, 24)}\n= {value}"), fontsize=7)


def _extent(item: GalleryItem) -> tuple[float, float, float, float]:
    h, w = item.mask.shape
    return (-0.5, w - 0.5, h - 0.5, -0.5)


def _bare(ax, extent) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])


def _show_image(ax, item: GalleryItem, *, grey: bool = False) -> None:
    img = np.clip(np.nan_to_num(item.image, nan=0.0), 0.0, 1.0)
    extent = _extent(item)
    ax.imshow(img.mean(axis=-1) if grey else img, cmap="gray", extent=extent, vmin=0, vmax=1)
    _bare(ax, extent)


def _show_map(ax, item: GalleryItem) -> None:
    extent = _extent(item)
    ax.imshow(_display_map(item.amap), cmap="inferno", alpha=0.55, extent=extent, vmin=0, vmax=1)
    _bare(ax, extent)


def _show_mask(ax, item: GalleryItem, *, fill: bool) -> None:
    if not item.mask.any() or item.mask.all():
        return
    h, w = item.mask.shape
    if fill:
        rgba = np.zeros((h, w, 4))
        rgba[item.mask] = (0.0, 1.0, 0.0, 0.25)
        ax.imshow(rgba, extent=_extent(item))
    color = "lime" if fill else "cyan"
    ax.contour(item.mask.astype(float), levels=[0.5], colors=color, linewidths=1.1)
    _bare(ax, _extent(item))


def _show_missing(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("0.95")
    ax.text(
        0.5, 0.5, "n/a", ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes
    )


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


# --------------------------------------------------------------------------- profile


def verdict_counts(
    verdicts: pd.DataFrame | None,
    results: pd.DataFrame | None,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
) -> pd.DataFrame:
    """Per detector, real explainer and audit family: the number of metrics in each
    verdict group (:data:`VERDICT_GROUPS`), from the ``"all controls"`` rows.

    Columns: ``detector, explainer, family`` and one per group label; families in the
    order localisation, faithfulness, robustness, sanity, then any other (``"other"``
    where the results give none). Empty when there is nothing to count."""
    labels = [g[0] for g in VERDICT_GROUPS]
    empty = pd.DataFrame(columns=["detector", "explainer", "family", *labels])
    need = {"detector", "explainer", "metric", "control", "verdict"}
    if verdicts is None or len(verdicts) == 0 or not need <= set(verdicts.columns):
        return empty
    controls = frozenset(controls)
    v = verdicts[verdicts["control"].astype(str) == "all controls"]
    v = v.assign(**{c: v[c].astype(str) for c in ("detector", "explainer", "metric")})
    v = v[~v["explainer"].isin(controls)]
    if v.empty:
        return empty
    families: dict[str, str] = {}
    if results is not None and len(results):
        shown = display_frame(results)
        families = dict(zip(shown["metric"].astype(str), shown["family"].astype(str), strict=False))

    def family(m: str) -> str:
        f = families.get(m, "")
        return f if f and f != "nan" else "other"

    group = {verdict: label for label, vs, _, _ in VERDICT_GROUPS for verdict in vs}
    v = v.drop_duplicates(["detector", "explainer", "metric"], keep="last")
    v = v.assign(
        family=v["metric"].map(family),
        group=v["verdict"].astype(str).str.strip().map(lambda s: group.get(s, labels[-1])),
    )
    fams = list(dict.fromkeys(v["family"]))
    fam_order = [f for f in FAMILIES if f in fams] + [f for f in fams if f not in FAMILIES]
    counts = (
        v.groupby(["detector", "explainer", "family", "group"], sort=False)
        .size()
        .unstack("group", fill_value=0)
        .reindex(columns=labels, fill_value=0)
        .reset_index()
    )
    det_order = list(dict.fromkeys(v["detector"]))
    exp_order = list(dict.fromkeys(v["explainer"]))
    counts = counts.sort_values(
        ["detector", "explainer", "family"],
        key=lambda s: s.map(
            {"detector": det_order, "explainer": exp_order, "family": fam_order}[s.name].index
        ),
        kind="stable",
    )
    return counts.reset_index(drop=True)


def profile_figure(
    verdicts: pd.DataFrame | None,
    results: pd.DataFrame | None,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
) -> Figure | None:
    """The figure of :func:`plot_profile`; None when there are no overall verdicts."""
    counts = verdict_counts(verdicts, results, controls=controls)
    if counts.empty:
        return None
    labels = [g[0] for g in VERDICT_GROUPS]
    detectors = list(dict.fromkeys(counts["detector"]))
    heights = [counts.loc[counts["detector"] == d, "explainer"].nunique() for d in detectors]
    lines = max(_wrap(e, 28).count("\n") + 1 for e in counts["explainer"])
    row_h = max(0.4, 0.13 * lines + 0.12)  # inches per explainer: room for its name
    with _style(grid=False):
        fig = Figure(
            figsize=(7.5, row_h * sum(heights) + 0.8 * len(detectors) + 0.9),
            layout="constrained",
        )
        ratios = [row_h * h + 0.6 for h in heights]
        axes = fig.subplots(len(detectors), 1, squeeze=False, height_ratios=ratios)[:, 0]
        for ax, det in zip(axes, detectors, strict=True):
            _draw_profile(ax, counts[counts["detector"] == det])
            if len(detectors) > 1:
                ax.set_title(_wrap(det, 80), fontsize=9, loc="left", pad=16)
        axes[-1].set_xlabel("number of metrics per audit family")
        fig.suptitle("Verdicts against the trivial controls, per audit family")
        handles = [
            Patch(facecolor=c, hatch=h, edgecolor="0.55" if h else "white", label=lab)
            for lab, _, c, h in VERDICT_GROUPS
        ]
        fig.legend(
            handles=handles,
            labels=labels,
            loc="outside lower center",
            ncol=2,
            fontsize=8,
            frameon=False,
        )
    return fig


def plot_profile(
    verdicts: pd.DataFrame | None,
    results: pd.DataFrame | None,
    out_path: str | os.PathLike,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    dpi: int = DPI,
) -> Path | None:
    """The per-explainer verdict profile: one panel per detector, one horizontal bar
    per real explainer, split into its audit families (localisation, faithfulness,
    robustness, sanity, from the results' ``family``); each family's segment counts the
    metrics the explainer beats every control on (or passes), ties (inconclusive),
    loses on (fails), or lacks evidence for (undefined) -- :func:`verdict_counts`.

    Returns
    -------
    Path or None
        ``out_path``, or None (nothing written) without overall verdicts.
    """
    fig = profile_figure(verdicts, results, controls=controls)
    if fig is None:
        return None
    return _save(fig, out_path, dpi=dpi)


def _draw_profile(ax, counts: pd.DataFrame) -> None:
    labels = [g[0] for g in VERDICT_GROUPS]
    explainers = list(dict.fromkeys(counts["explainer"]))
    families = list(dict.fromkeys(counts["family"]))
    totals = counts.assign(total=counts[labels].sum(axis=1))
    span = {f: int(totals.loc[totals["family"] == f, "total"].max()) for f in families}
    gap = 0.8
    offset, x = {}, 0.0
    for f in families:
        offset[f] = x
        x += span[f] + gap
    end = x - gap
    for y, exp in enumerate(explainers):
        for f in families:
            row = counts[(counts["explainer"] == exp) & (counts["family"] == f)]
            left = offset[f]
            if row.empty:
                ax.text(
                    left + span[f] / 2, y, "n/a", ha="center", va="center", fontsize=7, color="0.5"
                )
                continue
            for lab, _, color, hatch in VERDICT_GROUPS:
                k = int(row[lab].iloc[0])
                if not k:
                    continue
                ax.barh(
                    y,
                    k,
                    left=left,
                    height=0.62,
                    color=color,
                    hatch=hatch,
                    edgecolor="0.55" if hatch else "white",
                    linewidth=0.8,
                )
                dark = color in ("#2e8b57", "#d1495b")
                ax.text(
                    left + k / 2,
                    y,
                    str(k),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "0.15",
                )
                left += k
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for f in families:
        ax.text(
            offset[f] + span[f] / 2,
            1.0,
            _t(f),
            transform=trans,
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
        )
        if offset[f] > 0:
            ax.axvline(offset[f] - gap / 2, color="0.75", linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(explainers)), [_wrap(e, 28) for e in explainers], fontsize=8)
    ax.set_ylim(len(explainers) - 0.5, -0.6)
    ax.set_xlim(-0.1, end + 0.1)
    ticks = [offset[f] + k for f in families for k in range(span[f] + 1)]
    ax.set_xticks(ticks, [str(k) for f in families for k in range(span[f] + 1)], fontsize=6)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)


# --------------------------------------------------------------------------- shared


def _check_curves(curves: pd.DataFrame) -> None:
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise InputError(f"curves lacks columns {missing}; expected {CURVE_COLUMNS}")


def _explainer_legend(
    fig, styles: Mapping[str, ExplainerStyle], *, kind: str, extra: Sequence = ()
) -> None:
    """One legend entry per explainer, below the panels, "(control)" for controls."""
    handles = []
    for st in styles.values():
        label = _wrap(st.label, 34)
        if kind == "line":
            handles.append(
                Line2D(
                    [],
                    [],
                    color=st.color,
                    linestyle=st.linestyle,
                    linewidth=st.linewidth,
                    label=label,
                )
            )
        else:
            handles.append(
                Patch(
                    facecolor=st.color,
                    hatch=st.hatch,
                    edgecolor="white",
                    linewidth=0.3,
                    label=label,
                )
            )
    handles.extend(extra)
    longest = max((len(h.get_label().split("\n")[0]) for h in handles), default=10)
    per_col = 0.45 + 0.075 * longest  # inches taken by one entry at fontsize 8
    ncol = max(1, min(len(handles), int(fig.get_figwidth() / per_col)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


@contextmanager
def _style(*, grid: bool = True):
    import seaborn as sns  # imported lazily: ~1.5 s, only needed to draw

    with sns.axes_style("whitegrid" if grid else "white"), sns.plotting_context("paper"):
        yield


@contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _save(fig: Figure, out_path: str | os.PathLike, *, dpi: int) -> Path:
    """Render ``fig`` to PNG in memory and write it atomically.

    The figure is not registered with ``pyplot``, so it is freed with its last reference.
    """
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(out_path, buf.getvalue())


def _wrap(text: object, width: int) -> str:
    """``text`` on lines of at most ``width`` characters, escaped for matplotlib.

    Lines break at spaces; a word longer than a line breaks after a ``/ _ - , =``
    where it can (paths, snake_case names), else anywhere. Nothing is dropped."""
    width = max(4, int(width))
    lines: list[str] = []
    cur = ""
    for word in str(text).split():
        if cur and len(cur) + 1 + len(word) <= width:
            cur += " " + word
            continue
        if cur:
            lines.append(cur)
        while len(word) > width:
            cut = max((i + 1 for i, ch in enumerate(word[:width]) if ch in "/_-,="), default=0)
            cut = cut if cut >= width // 3 else width
            lines.append(word[:cut])
            word = word[cut:]
        cur = word
    if cur:
        lines.append(cur)
    return _t("\n".join(lines))


def _t(text: object) -> str:
    """Text for matplotlib: ``$`` escaped so that names are never parsed as mathtext."""
    return str(text).replace("$", r"\$")
