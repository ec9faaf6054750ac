"""Critical-difference diagrams in Demšar's form (Demšar 2006, JMLR 7, Fig. 1 and 2).

What is drawn (the convention, also written in each figure's caption):

- a rank axis from 1 (best, **left**) to k; each method hangs from its **average rank**
  across the blocks (categories) by an elbow line to its name, the better half of the
  methods labelled on the left, the other half on the right;
- above the axis, a bar as long as the **Nemenyi critical difference**
  ``CD = q_alpha sqrt(k(k+1)/(6N))`` at ``alpha`` (:func:`xeval.comparisons.critical_difference`);
- under the axis, thick bars join each **clique**: a maximal set of methods, consecutive
  in rank, whose average ranks differ by less than CD, i.e. that the Nemenyi test does
  not tell apart (:func:`xeval.comparisons.cliques`);
- trivial controls are grey with dashed elbows; real explainers use their report colour;
- when the ranking has insufficient evidence (few blocks), the figure says so under the
  axis: the ranks are then a description only.

Sized for a single column (3.5 in wide by default, text at 7 pt, 200 dpi).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xeval.comparisons.ranking import BlockRanking
from xeval.comparisons.ranking import cliques as find_cliques
from xeval.errors import InputError
from xeval.reports.figures import _save, _style, _t, _wrap, explainer_colors
from xeval.reports.tables import format_value, p_clause

__all__ = [
    "cd_caption",
    "cd_diagram_figure",
    "figure_key",
    "plot_cd_diagram",
    "ranking_figure",
]

COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper
FONT_SIZE = 7.0
_LABEL_CHARS = 16  # a label wraps after this many characters
_CHAR_IN = 0.052  # inches per character at 7 pt (average)
_ROW_IN = 0.2  # inches between two label rows
_CONTROL_COLOR = (0.45, 0.45, 0.45)


def cd_diagram_figure(
    mean_ranks: Mapping[str, float] | pd.Series,
    *,
    cd: float,
    cliques: Iterable[Iterable[str]] | None = None,
    controls: Iterable[str] = (),
    colors: Mapping[str, tuple] | None = None,
    note: str = "",
    width: float = COLUMN_WIDTH,
) -> Figure:
    """Draw a critical-difference diagram (see the module doc for the convention).

    Parameters
    ----------
    mean_ranks : mapping or Series
        Method -> average rank (1 = best).
    cd : float
        Critical difference of average ranks (finite, > 0).
    cliques : iterable of iterables of str, optional
        Groups joined by a thick bar; default: computed from ``mean_ranks`` and ``cd``
        (:func:`xeval.comparisons.cliques`).
    controls : iterable of str
        Methods drawn as trivial controls (grey, dashed).
    colors : mapping, optional
        Method -> colour (e.g. the report's :func:`~xeval.reports.figures.report_colors`).
    note : str
        A line under the diagram (e.g. the test, N, and any lack of evidence).
    width : float
        Figure width in inches.

    Returns
    -------
    Figure
    """
    ranks = pd.Series(mean_ranks, dtype=float).sort_values(kind="stable")
    if ranks.size < 2 or ranks.isna().any():
        raise InputError(f"a CD diagram needs >= 2 methods with an average rank, got {dict(ranks)}")
    if not (isinstance(cd, (int, float)) and math.isfinite(cd) and cd > 0):
        raise InputError(f"cd must be a finite positive number, got {cd!r}")
    k = int(ranks.size)
    groups = find_cliques(ranks, cd) if cliques is None else [tuple(map(str, g)) for g in cliques]
    unknown = sorted({m for g in groups for m in g} - set(ranks.index))
    if unknown:
        raise InputError(f"cliques name methods without a rank: {unknown}")
    controls = frozenset(controls)
    palette = dict(explainer_colors(ranks.index, controls=controls))
    if colors:
        palette.update({str(k_): v for k_, v in colors.items()})
    names = list(ranks.index)
    labels = {m: _wrap(m, _LABEL_CHARS) for m in names}
    longest = max(len(line) for m in names for line in labels[m].split("\n"))
    side = min(0.36 * width, 0.18 + (longest + 7) * _CHAR_IN)  # inches of label per side
    axis_in = max(width - 2 * side, 0.6)
    per_rank = axis_in / max(k - 1, 1)  # inches per unit of rank

    half = math.ceil(k / 2)
    left, right = names[:half], names[half:][::-1]  # right: worst first (no crossings)
    n_lines = [
        max(labels[m].count("\n") + 1 for m in side_) if side_ else 1 for side_ in (left, right)
    ]
    bar_rows = len(groups)
    y_axis = 0.0
    y_first = 0.32 + 0.1 * bar_rows  # label rows start under the clique bars (inches)
    row = _ROW_IN * max(n_lines)
    note_text = _wrap(note, int(width / 0.047)) if note else ""
    note_in = 0.12 * (note_text.count("\n") + 1) + 0.1 if note else 0.05
    height_in = 0.55 + y_first + row * max(len(left), len(right)) + note_in

    with _style(grid=False):
        fig = Figure(figsize=(width, height_in), layout=None)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        x0 = 1 - side / per_rank
        ax.set_xlim(x0, x0 + width / per_rank)
        top = 0.55  # inches above the axis (CD bar and tick labels)
        ax.set_ylim(height_in - top, -top)  # y in inches, growing downwards

        # rank axis with ticks (labels above)
        ax.plot([1, k], [y_axis, y_axis], color="black", lw=0.9, solid_capstyle="butt")
        for t in np.arange(1, k + 0.01, 0.5):
            major = float(t).is_integer()
            ax.plot([t, t], [y_axis, y_axis - (0.07 if major else 0.04)], color="black", lw=0.7)
            if major:
                ax.text(t, y_axis - 0.1, f"{int(t)}", ha="center", va="bottom",
                        fontsize=FONT_SIZE)  # fmt: skip

        # the CD bar, above the axis at the left end
        y_cd = y_axis - 0.38
        end = min(1 + cd, k) if k > 1 else 1 + cd
        ax.plot([1, end], [y_cd, y_cd], color="black", lw=1.0)
        for x in (1, end):
            ax.plot([x, x], [y_cd - 0.04, y_cd + 0.04], color="black", lw=0.8)
        label = f"CD = {cd:.2f}" + (" (> k \u2212 1)" if 1 + cd > k else "")
        ax.text((1 + end) / 2, y_cd - 0.05, label, ha="center", va="bottom", fontsize=FONT_SIZE)

        # elbows and labels
        inner = 0.1 / per_rank  # labels start just outside the ends of the axis
        for i, m in enumerate(left):
            _elbow(ax, m, ranks[m], y_first + i * row, 1 - inner, "right", labels[m],
                   palette, controls, per_rank)  # fmt: skip
        for i, m in enumerate(right):
            _elbow(ax, m, ranks[m], y_first + i * row, k + inner, "left", labels[m],
                   palette, controls, per_rank)  # fmt: skip

        # clique bars, stacked under the axis
        for j, g in enumerate(groups):
            lo, hi = ranks[list(g)].min(), ranks[list(g)].max()
            y = y_axis + 0.16 + 0.1 * j
            pad = 0.04 / per_rank
            ax.plot([lo - pad, hi + pad], [y, y], color="black", lw=2.6, solid_capstyle="round")
        if note:
            ax.text(x0 + 0.05 / per_rank, height_in - top - 0.06, note_text,
                    ha="left", va="bottom", fontsize=FONT_SIZE - 1, color="0.25")  # fmt: skip
    return fig


def _elbow(ax, name, rank, y, x_text, ha, label, palette, controls, per_rank) -> None:
    ctrl = name in controls
    color = _CONTROL_COLOR if ctrl else palette.get(name, (0.1, 0.1, 0.1))
    style = "--" if ctrl else "-"
    ax.plot([rank, rank, x_text], [0.0, y, y], color=color, lw=0.9, ls=style)
    ax.plot([rank], [0.0], marker="o", ms=2.6, color=color)
    text = f"{label} ({rank:.2f})" if ha == "right" else f"({rank:.2f}) {label}"
    gap = 0.03 / per_rank
    ax.text(x_text + (-gap if ha == "right" else gap), y, text, ha=ha, va="center",
            fontsize=FONT_SIZE, color="0.35" if ctrl else "black",
            style="italic" if ctrl else "normal")  # fmt: skip


def _note(br: BlockRanking) -> str:
    r = br.ranking
    line = f"N = {r.n_blocks} categories; Nemenyi \u03b1 = {r.alpha:g}"
    if r.evidence != "sufficient":
        line += "; insufficient evidence: a description only"
    return _t(line)


def ranking_figure(
    br: BlockRanking,
    *,
    colors: Mapping[str, tuple] | None = None,
    width: float = COLUMN_WIDTH,
) -> Figure:
    """The CD diagram of one :class:`~xeval.comparisons.ranking.BlockRanking`."""
    if br.ranking is None:
        raise InputError(f"{br.title} has no ranking: {br.reason}")
    r = br.ranking
    return cd_diagram_figure(
        r.mean_ranks,
        cd=r.cd,
        cliques=r.cliques,
        controls=br.controls,
        colors=colors,
        note=_note(br),
        width=width,
    )


def plot_cd_diagram(
    br: BlockRanking,
    out_path: str | os.PathLike,
    *,
    colors: Mapping[str, tuple] | None = None,
    width: float = COLUMN_WIDTH,
    dpi: int = 200,
) -> Path:
    """Draw :func:`ranking_figure` and write it as PNG (atomically)."""
    return _save(ranking_figure(br, colors=colors, width=width), out_path, dpi=dpi)


def figure_key(index: int, br: BlockRanking) -> str:
    """The report's figure key of the ``index``-th ranking (``figures/<key>.png``):
    ``cd_<index>_<metric>_<detector or explainer>``, file-name safe."""
    scope = br.detector if br.kind == "explainers" else f"detectors_{br.explainer}"
    raw = f"cd_{index}_{br.metric}_{scope}"
    return re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9@._-]+", "_", raw)).strip("._")


def cd_caption(br: BlockRanking) -> str:
    """Plain-text caption stating what the diagram shows and its convention."""
    r = br.ranking
    if r is None:
        return f"{br.title}: no ranking ({br.reason})."
    what = "explainer" if br.kind == "explainers" else "detector"
    text = (
        f"Critical-difference diagram (Dem\u0161ar 2006), {br.title}: average rank of each "
        f"{what} over {r.n_blocks} categories (1 = best, on the left). A thick bar joins "
        f"{what}s the Nemenyi test does not tell apart at \u03b1 = {r.alpha:g} (average "
        f"ranks differing by less than CD = {r.cd:.2f}). Friedman \u03c7\u00b2 = "
        f"{format_value(r.statistic, decimals=2)}, {p_clause(r.p_value)}. Controls grey, dashed."
    )
    if r.evidence != "sufficient":
        text += f" Insufficient evidence: {r.reason}."
    elif r.reason:
        text += f" Note: {r.reason}."
    return text
