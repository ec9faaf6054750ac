"""Comparative tables from the results long table: Markdown, LaTeX and a shared model.

One table per metric (and per dataset / protocol when a run has several): rows are
(detector, explainer), columns are the categories followed by ``mean``. The best value
of each column is bold, taking the metric's direction into account; trivial controls
(random map, Sobel edges, centre prior) are marked with a dagger, and every real
explainer that does not beat the best control of its detector is listed.

:func:`metric_tables` builds the format-free model (:class:`MetricTable`) that the
Markdown, LaTeX and HTML writers render.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xeval.errors import InputError
from xeval.reports.data import DEFAULT_CONTROLS, check_results, display_frame

MEAN = "mean"
DAGGER = "\u2020"
UP, DOWN = "\u2191", "\u2193"
HEADLINE_METRICS = ("pixel_auroc", "aupro@0.3", "image_auroc")
"""Metrics of the summary table of results tables without a ``headline`` column."""

_KEY = ["detector", "explainer", "dataset", "category", "protocol", "metric"]


# --------------------------------------------------------------------------- model


@dataclass
class MetricTable:
    """One metric as a (detector, explainer) x category grid.

    Attributes
    ----------
    metric : str
        Metric name.
    dataset, protocol : str or None
        Set only when the results hold several datasets / protocols.
    higher_is_better : bool
        Direction of the metric.
    rows : list of (detector, explainer)
        Row order: detectors in order of appearance, real explainers before controls.
    columns : list of str
        Categories in order of appearance, then ``"mean"`` when present.
    value, ci_low, ci_high, n : DataFrame
        Indexed by ``rows`` (MultiIndex detector, explainer) with ``columns``.
    notes : list of str
        Distinct non-empty notes of the metric's rows.
    thresholds : list of float
        Distinct thresholds of the metric's rows (``@t`` metrics).
    controls : frozenset of str
        Explainer names treated as controls.
    """

    metric: str
    dataset: str | None
    protocol: str | None
    higher_is_better: bool
    rows: list[tuple[str, str]]
    columns: list[str]
    value: pd.DataFrame
    ci_low: pd.DataFrame
    ci_high: pd.DataFrame
    n: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    controls: frozenset[str] = DEFAULT_CONTROLS
    family: str = ""

    @property
    def title(self) -> str:
        """Metric name with the dataset / protocol when they disambiguate."""
        extra = [s for s in (self.dataset, self.protocol) if s]
        return f"{self.metric} ({', '.join(extra)})" if extra else self.metric

    @property
    def optimistic(self) -> bool:
        """True when the metric uses an oracle (test-set) threshold."""
        text = " ".join([self.metric, *self.notes]).lower()
        return "optimistic" in text or "oracle" in text

    @property
    def arrow(self) -> str:
        return UP if self.higher_is_better else DOWN

    def is_control(self, explainer: str) -> bool:
        return explainer in self.controls

    def best_mask(self, *, decimals: int = 3) -> pd.DataFrame:
        """Boolean frame: True where a value is the best of its column among the real
        explainers (ties included); controls are never marked best -- whether an
        explainer beats them is what the failure notes and the verdicts say.

        Values are compared after rounding to ``decimals`` so that two values printed
        the same are both bold.
        """
        real = [not self.is_control(e) for _, e in self.rows]
        if not any(real):
            return best_mask(self.value, higher_is_better=self.higher_is_better, decimals=decimals)
        mask = best_mask(
            self.value[real], higher_is_better=self.higher_is_better, decimals=decimals
        )
        return mask.reindex(self.value.index, fill_value=False)

    def controls_not_beaten(self, *, column: str | None = None) -> list[ControlFailure]:
        """Real explainers whose value does not beat the best control of their detector.

        Parameters
        ----------
        column : str, optional
            Column compared; ``"mean"`` when present, else the only category. With
            several categories and no mean, nothing is compared.
        """
        col = column or _summary_column(self.columns)
        if col is None or self.family == "detection":
            # image-level numbers are detector metrics: an explainer's max-of-map score
            # is not judged against the controls
            return []
        return _controls_not_beaten(self, col)

    def legend(self, *, decimals: int = 3) -> str:
        """A one-line plain-text legend: direction, thresholds, notes."""
        parts = ["higher is better" if self.higher_is_better else "lower is better"]
        if self.thresholds:
            parts.append(_threshold_text(self.thresholds, decimals=decimals))
        parts.extend(self.notes)
        if self.optimistic and not any("optimistic" in p.lower() for p in parts):
            parts.append("optimistic (threshold tuned on the test set)")
        return "; ".join(parts)


@dataclass(frozen=True)
class ControlFailure:
    """A real explainer that does not beat the best control of its detector."""

    detector: str
    explainer: str
    value: float
    control: str
    control_value: float
    column: str


def metric_tables(
    results: pd.DataFrame, *, controls: Iterable[str] = DEFAULT_CONTROLS
) -> list[MetricTable]:
    """Split the long table into one :class:`MetricTable` per metric (x dataset x protocol).

    Parameters
    ----------
    results : DataFrame
        The long results table.
    controls : iterable of str
        Explainer names treated as trivial controls.

    Returns
    -------
    list of MetricTable
        In order of first appearance of each metric.
    """
    check_results(results)
    controls = frozenset(controls)
    df = _normalise(results)
    multi_ds = df["dataset"].nunique() > 1
    multi_pr = df["protocol"].nunique() > 1
    tables = []
    for (metric, dataset, protocol), part in df.groupby(
        ["metric", "dataset", "protocol"], sort=False
    ):
        tables.append(
            _build_table(
                part,
                metric=metric,
                dataset=dataset if multi_ds else None,
                protocol=protocol if multi_pr else None,
                controls=controls,
            )
        )
    return tables


def summary_frame(
    results: pd.DataFrame,
    *,
    metrics: Iterable[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, bool]]:
    """Headline table: one value per (detector, explainer) and metric, over categories.

    Uses the ``mean`` rows; where a metric has none, the unweighted mean over its
    categories (or the only category's value) is used instead. With several datasets
    (or protocols) there is one column per metric and dataset, labelled
    ``"metric (dataset)"``.

    Parameters
    ----------
    results : DataFrame
        The long results table.
    metrics : iterable of str, optional
        Metrics to show; defaults to :func:`headline_metrics`.

    Returns
    -------
    frame : DataFrame
        Index (detector, explainer), one column per metric (and dataset).
    directions : dict
        ``higher_is_better`` per column of ``frame``.
    """
    check_results(results)
    df = _normalise(results)
    metrics = list(metrics) if metrics is not None else headline_metrics(df)
    split = [c for c in ("dataset", "protocol") if df[c].nunique() > 1]
    cols, directions = {}, {}
    rows: list[tuple[str, str]] = []
    for metric in metrics:
        for key, part in df[df["metric"] == metric].groupby(split or ["metric"], sort=False):
            label = metric
            if split:
                key = key if isinstance(key, tuple) else (key,)
                label = f"{metric} ({', '.join(map(str, key))})"
            directions[label] = _direction(part)
            mean = part[part["category"] == MEAN]
            if mean.empty:
                mean = part
            cols[label] = mean.groupby(["detector", "explainer"], sort=False)["value"].mean()
            rows.extend(k for k in cols[label].index if k not in rows)
    index = pd.MultiIndex.from_tuples(rows, names=["detector", "explainer"])
    frame = pd.DataFrame({m: s.reindex(index) for m, s in cols.items()}, index=index)
    return frame, directions


def headline_metrics(results: pd.DataFrame) -> list[str]:
    """The summary metrics of ``results`` (labels): those whose ``headline`` is 1 (the
    metric's own metadata), localisation first, then detection; for tables without a
    ``headline`` column, pixel AUROC, AUPRO and image AUROC.

    ``aupro@0.3`` falls back to the first other ``aupro@L`` present.
    """
    if "headline" in results.columns:
        df = display_frame(results)
        top = df[df["headline"] == 1]
        order = {"localisation": 0, "detection": 2}
        labels = list(dict.fromkeys(top["metric"].astype(str)))
        fam = dict(zip(top["metric"].astype(str), top["family"].astype(str), strict=False))
        return sorted(labels, key=lambda m: order.get(fam.get(m, ""), 1))
    present = list(dict.fromkeys(results["metric"].astype(str)))
    out = []
    for m in HEADLINE_METRICS:
        if m in present:
            out.append(m)
        elif m.startswith("aupro@"):
            alt = [p for p in present if p.startswith("aupro@")]
            if alt:
                out.append(alt[0])
    return out


def best_mask(values: pd.DataFrame, *, higher_is_better: bool, decimals: int = 3) -> pd.DataFrame:
    """True where a value is the best of its column after rounding to ``decimals``."""
    rounded = values.astype(float).round(decimals)
    best = rounded.max(axis=0) if higher_is_better else rounded.min(axis=0)
    return rounded.eq(best, axis=1) & rounded.notna()


def format_value(value: float, *, decimals: int = 3) -> str:
    """``value`` with ``decimals`` decimals, ``"n/a"`` for NaN / missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "n/a"
    return f"{float(value):.{decimals}f}"


# --------------------------------------------------------------------------- markdown


def markdown_tables(
    results: pd.DataFrame,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    decimals: int = 3,
) -> str:
    """Markdown tables, one per metric, with a legend.

    Parameters
    ----------
    results : DataFrame
        The long results table (:data:`xeval.results.RESULT_COLUMNS`).
    controls : iterable of str
        Explainer names treated as trivial controls (marked with a dagger).
    decimals : int
        Decimals shown.

    Returns
    -------
    str
        Markdown text: a general legend, then per metric a heading, a table whose best
        value per column is bold (``higher_is_better`` respected) and a one-line legend
        (direction, thresholds, notes, optimistic flag, controls not beaten).
    """
    tables = metric_tables(results, controls=controls)
    out = ["# Results", "", _general_legend(controls), ""]
    for t in tables:
        out.extend(_markdown_table(t, decimals=decimals))
    return "\n".join(out).rstrip() + "\n"


def _general_legend(controls: Iterable[str]) -> str:
    names = ", ".join(sorted(controls)) or "none"
    return (
        f"{UP} higher is better, {DOWN} lower is better. **Bold**: best explainer of its "
        "column (controls excluded). "
        f"{DAGGER}: trivial control ({_md_escape(names)}); a real explainer should beat it. "
        "n/a: undefined (e.g. no anomalous image in the category). "
        f"`{MEAN}`: unweighted mean over categories."
    )


def _markdown_table(t: MetricTable, *, decimals: int) -> list[str]:
    head = f"## {_md_escape(t.title)} {t.arrow}"
    if t.optimistic:
        head += " (optimistic)"
    best = t.best_mask(decimals=decimals)
    cols = ["detector", "explainer", *t.columns]
    lines = [head, "", _md_row([_md_escape(c) for c in cols])]
    lines.append("| " + " | ".join(["---", "---"] + ["---:"] * len(t.columns)) + " |")
    for det, exp in t.rows:
        cells = [_md_escape(det), _md_escape(exp) + (DAGGER if t.is_control(exp) else "")]
        for c in t.columns:
            text = format_value(t.value.at[(det, exp), c], decimals=decimals)
            cells.append(f"**{text}**" if best.at[(det, exp), c] else text)
        lines.append(_md_row(cells))
    lines += ["", f"*{t.arrow} {_md_escape(t.legend(decimals=decimals))}*"]
    failures = t.controls_not_beaten()
    if failures:
        lines += ["", _md_escape(_failure_text(failures, decimals=decimals))]
    return lines + [""]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def _md_escape(text: object) -> str:
    """Backslash-escape Markdown punctuation (incl. ``|`` and ``<``) on one line."""
    s = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", s)


def _failure_text(failures: list[ControlFailure], *, decimals: int) -> str:
    items = [
        f"{f.detector} / {f.explainer} {format_value(f.value, decimals=decimals)} "
        f"vs {f.control} {format_value(f.control_value, decimals=decimals)}"
        for f in failures
    ]
    return f"Does not beat the best control ({failures[0].column}): " + "; ".join(items) + "."


# --------------------------------------------------------------------------- latex


def latex_table(
    results: pd.DataFrame,
    metric: str,
    *,
    controls: Iterable[str] = DEFAULT_CONTROLS,
    decimals: int = 3,
    caption: str | None = None,
    label: str | None = None,
) -> str:
    """A booktabs LaTeX table for one metric (first dataset / protocol if several).

    Parameters
    ----------
    results : DataFrame
        The long results table.
    metric : str
        Metric to tabulate.
    controls : iterable of str
        Explainer names marked with ``$^\\dagger$``.
    decimals : int
        Decimals shown.
    caption, label : str, optional
        Table caption (default: metric and direction) and ``\\label``.

    Returns
    -------
    str
        A ``table`` environment; needs ``\\usepackage{booktabs}``.
    """
    tables = [t for t in metric_tables(results, controls=controls) if t.metric == metric]
    if not tables:
        raise InputError(f"metric {metric!r} is not in the results")
    t = tables[0]
    arrow = r"$\uparrow$" if t.higher_is_better else r"$\downarrow$"
    cap = caption if caption is not None else f"{_tex(t.title)} ({arrow})."
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{cap}}}",
    ]
    if label:
        lines.append(rf"\label{{{_tex(label)}}}")
    lines += tabular_lines(t, decimals=decimals)
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def tabular_lines(t: MetricTable, *, decimals: int, cell=None) -> list[str]:
    """The ``tabular`` of a metric table up to its last row: the header, a
    ``\\midrule`` between detectors, controls marked ``$^\\dagger$``, the best real
    explainer of each column bold, and ``cell(text, ci_low, ci_high, decimals)`` (when
    given) writing a value with its CI where the value and both bounds are defined."""
    best = t.best_mask(decimals=decimals)
    lines = [
        r"\begin{tabular}{ll" + "r" * len(t.columns) + "}",
        r"\toprule",
        " & ".join(["Detector", "Explainer", *(_tex(c) for c in t.columns)]) + r" \\",
        r"\midrule",
    ]
    previous = None
    for det, exp in t.rows:
        if previous is not None and det != previous:
            lines.append(r"\midrule")
        previous = det
        cells = [_tex(det), _tex(exp) + (r"$^\dagger$" if t.is_control(exp) else "")]
        for c in t.columns:
            v = t.value.at[(det, exp), c]
            text = format_value(v, decimals=decimals)
            if best.at[(det, exp), c]:
                text = rf"\textbf{{{text}}}"
            lo, hi = t.ci_low.at[(det, exp), c], t.ci_high.at[(det, exp), c]
            if cell is not None and not (math.isnan(v) or pd.isna(lo) or pd.isna(hi)):
                text = cell(text, float(lo), float(hi), decimals)
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    return lines


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


_TEX_SYMBOLS = {
    # symbols the report's own text uses, which pdflatex cannot typeset from UTF-8
    "\u03c7\u00b2": r"$\chi^2$",
    "\u03c7": r"$\chi$",
    "\u00b2": r"$^2$",
    "\u03b1": r"$\alpha$",
    "\u2212": r"$-$",
    "\u2013": "--",
    "\u2020": r"$^\dagger$",
    "\u2191": r"$\uparrow$",
    "\u2193": r"$\downarrow$",
    "\u00b1": r"$\pm$",
    "\u00d7": r"$\times$",
    "\u2264": r"$\leq$",
    "\u2265": r"$\geq$",
    "\u0161": r"\v{s}",
}
_TEX_PATTERN = re.compile(
    "|".join(re.escape(k) for k in sorted(_TEX_SYMBOLS, key=len, reverse=True)) + "|."
)


def tex_escape(text: object) -> str:
    """``text`` on one line with LaTeX's special characters escaped
    (``\\ & % $ # _ { } ~ ^ < >``) and the report's symbols (``χ² α − – † ↑ ↓ ±``...)
    written as LaTeX commands: safe in text mode and inside ``\\caption``."""
    one_line = " ".join(str(text).split())
    return "".join(
        _TEX_SYMBOLS.get(m, _TEX_SPECIAL.get(m, m)) for m in _TEX_PATTERN.findall(one_line)
    )


_tex = tex_escape


# --------------------------------------------------------------------------- helpers


def _normalise(results: pd.DataFrame) -> pd.DataFrame:
    """Display keys (metric = label), string keys, float values, bool direction; NaN
    keys become ``""``."""
    df = display_frame(results)
    for c in _KEY + ["note"]:
        df[c] = df[c].where(df[c].notna(), "").astype(str)
    for c in ["value", "ci_low", "ci_high", "threshold", "n"]:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["higher_is_better"] = df["higher_is_better"].map(_as_bool)
    return df


def _as_bool(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in {"true", "1", "yes", "y", "t"}
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return True
    return bool(v)


def _direction(part: pd.DataFrame) -> bool:
    """Majority direction of a metric's rows (they should all agree)."""
    return bool(part["higher_is_better"].mean() >= 0.5)


def _ordered_rows(part: pd.DataFrame, controls: frozenset[str]) -> list[tuple[str, str]]:
    detectors = list(dict.fromkeys(part["detector"]))
    explainers = list(dict.fromkeys(part["explainer"]))
    explainers = [e for e in explainers if e not in controls] + [
        e for e in explainers if e in controls
    ]
    pairs = set(zip(part["detector"], part["explainer"], strict=True))
    return [(d, e) for d in detectors for e in explainers if (d, e) in pairs]


def _ordered_columns(part: pd.DataFrame) -> list[str]:
    cats = [c for c in dict.fromkeys(part["category"]) if c != MEAN]
    return cats + ([MEAN] if (part["category"] == MEAN).any() else [])


def _build_table(
    part: pd.DataFrame,
    *,
    metric: str,
    dataset: str | None,
    protocol: str | None,
    controls: frozenset[str],
) -> MetricTable:
    part = part.drop_duplicates(subset=["detector", "explainer", "category"], keep="last")
    rows = _ordered_rows(part, controls)
    columns = _ordered_columns(part)
    index = pd.MultiIndex.from_tuples(rows, names=["detector", "explainer"])
    keyed = part.set_index(["detector", "explainer", "category"])

    def grid(col: str) -> pd.DataFrame:
        g = keyed[col].unstack("category").reindex(index=index, columns=columns)
        return g.astype(float)

    thresholds = sorted({float(t) for t in part["threshold"] if not np.isnan(t)})
    notes = [n for n in dict.fromkeys(part["note"]) if n.strip()]
    return MetricTable(
        metric=metric,
        dataset=dataset,
        protocol=protocol,
        higher_is_better=_direction(part),
        rows=rows,
        columns=columns,
        value=grid("value"),
        ci_low=grid("ci_low"),
        ci_high=grid("ci_high"),
        n=grid("n"),
        notes=notes,
        thresholds=thresholds,
        controls=controls,
        family=str(part["family"].iloc[0]) if "family" in part and len(part) else "",
    )


def _summary_column(columns: list[str]) -> str | None:
    if MEAN in columns:
        return MEAN
    return columns[0] if len(columns) == 1 else None


def _controls_not_beaten(t: MetricTable, column: str) -> list[ControlFailure]:
    out = []
    sign = 1.0 if t.higher_is_better else -1.0
    for det in dict.fromkeys(d for d, _ in t.rows):
        ctrl = {
            e: t.value.at[(d, e), column]
            for d, e in t.rows
            if d == det and t.is_control(e) and not np.isnan(t.value.at[(d, e), column])
        }
        if not ctrl:
            continue
        best_ctrl = max(ctrl, key=lambda e: sign * ctrl[e])
        for d, e in t.rows:
            if d != det or t.is_control(e):
                continue
            v = t.value.at[(d, e), column]
            if not np.isnan(v) and sign * v <= sign * ctrl[best_ctrl]:
                out.append(ControlFailure(det, e, float(v), best_ctrl, ctrl[best_ctrl], column))
    return out


def _threshold_text(thresholds: list[float], *, decimals: int) -> str:
    fmt = f"{{:.{decimals + 1}g}}"
    if len(thresholds) <= 4:
        vals = ", ".join(fmt.format(t) for t in thresholds)
        return f"threshold t = {vals} (chosen on normal validation data unless noted)"
    lo, hi = fmt.format(thresholds[0]), fmt.format(thresholds[-1])
    return f"threshold t in [{lo}, {hi}] ({len(thresholds)} values, see results.csv)"


# --------------------------------------------------------------------------- comparisons

ALPHA = 0.05
"""Level at which the comparison tables mark a Holm-adjusted p-value as significant."""

PAIRED_LEGEND = (
    "Per image, on the images where both have a value: mean difference a \u2212 b in the "
    "metric's direction (positive: a is better) with its 95% paired percentile bootstrap "
    "CI; p: two-sided Wilcoxon signed-rank test (zero differences dropped, mid-ranks for "
    "ties); Holm p: Holm-adjusted within the family (one family per detector and metric "
    "for explainers, per explainer and metric for detectors; its size in brackets). "
    f"Bold: Holm p < {ALPHA:g}. {DAGGER}: trivial control."
)

RANKING_LEGEND = (
    "Blocks = categories (the per-category values of results.csv), methods ranked per "
    "category (1 = best, mid-ranks for ties) and averaged. Friedman test (tie-corrected "
    "\u03c7\u00b2; Iman\u2013Davenport F), Nemenyi critical difference CD at "
    f"\u03b1 = {ALPHA:g}: methods in the same group differ by less than CD (not told "
    "apart); Holm post-hoc: pairwise z-tests on the average ranks, Holm-adjusted. With "
    "few categories these tests have little power: then the ranking is reported as "
    "insufficient evidence and is a description only."
)


def p_clause(p: float) -> str:
    """``"p = 0.123"``, ``"p < 0.001"`` or ``"p n/a"``."""
    text = format_p(p)
    return f"p {text}" if text == "n/a" else "p < 0.001" if text == "<0.001" else f"p = {text}"


def format_p(p: float) -> str:
    """A p-value for display: ``"<0.001"``, else 3 decimals; ``"n/a"`` when undefined."""
    if p is None or pd.isna(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{float(p):.3f}"


def comparison_groups(comparisons: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The rows of a comparisons table grouped for display: ``("explainers of D", rows)``
    per detector, then ``("detectors on E", rows)`` per shared explainer."""
    out = []
    for kind, key in (("explainers", "detector"), ("detectors", "explainer")):
        part = comparisons[comparisons["kind"] == kind]
        for name, rows in part.groupby(key, sort=False):
            title = f"explainers of {name}" if kind == "explainers" else f"detectors on {name}"
            out.append((title, rows))
    return out


def comparison_cells(row, *, decimals: int = 3, kind: str = "explainers") -> dict[str, str]:
    """Display strings of one comparisons row (plain text, not escaped)."""
    mark = DAGGER if kind == "explainers" else ""
    return {
        "a": str(row["a"]) + (mark if row["a_control"] else ""),
        "b": str(row["b"]) + (mark if row["b_control"] else ""),
        "n": f"{int(row['n'])}",
        "mean a": format_value(row["mean_a"], decimals=decimals),
        "mean b": format_value(row["mean_b"], decimals=decimals),
        "a \u2212 b": format_value(row["mean_diff"], decimals=decimals),
        "95% CI": (
            "n/a"
            if pd.isna(row["ci_low"])
            else f"[{format_value(row['ci_low'], decimals=decimals)}, "
            f"{format_value(row['ci_high'], decimals=decimals)}]"
        ),
        "p": format_p(row["p_value"]),
        "Holm p": format_p(row["p_holm"]) + f" ({int(row['family_size'])})",
    }


def ranking_summary(br, *, decimals: int = 2) -> str:
    """One plain-text line with a ranking's tests, CD and evidence."""
    r = br.ranking
    if r is None:
        return f"no ranking: {br.reason}"
    ff = "inf" if r.iman_davenport == math.inf else format_value(r.iman_davenport, decimals=2)
    text = (
        f"N = {r.n_blocks} categories, k = {r.k}; Friedman \u03c7\u00b2 = "
        f"{format_value(r.statistic, decimals=2)} ({p_clause(r.p_value)}), "
        f"Iman\u2013Davenport F = {ff} ({p_clause(r.iman_davenport_p)}); "
        f"CD = {r.cd:.{decimals}f} (Nemenyi, \u03b1 = {r.alpha:g})"
    )
    if r.dropped_blocks:
        text += f"; categories without every value, left out: {', '.join(r.dropped_blocks)}"
    if r.evidence != "sufficient":
        return f"Insufficient evidence: {r.reason}. Description only: {text}."
    pairs = r.pairs()
    nem = [f"{a} vs {b}" for a, b, s in pairs[["method_a", "method_b", "significant"]].values if s]
    holm = [f"{a} vs {b}" for a, b, p in pairs[["method_a", "method_b", "holm_p"]].values
            if p < r.alpha]  # fmt: skip
    text += f". Different by Nemenyi: {'; '.join(nem) or 'none'}"
    text += f". Different by Holm: {'; '.join(holm) or 'none'}."
    return text + (f" Note: {r.reason}." if r.reason else "")


def ranking_rows(br) -> list[dict[str, str]]:
    """Display rows (best first) of a ranking: rank position, method, average rank,
    the CD groups it belongs to (1-based)."""
    r = br.ranking
    if r is None:
        return []
    rows = []
    for i, (m, v) in enumerate(r.mean_ranks.items()):
        groups = [str(j + 1) for j, g in enumerate(r.cliques) if m in g]
        rows.append(
            {
                "#": str(i + 1),
                "method": m + (DAGGER if m in br.controls else ""),
                "mean rank": f"{v:.2f}",
                "group": ", ".join(groups) or "\u2013",
            }
        )
    return rows


def comparisons_markdown(
    comparisons: pd.DataFrame | None, rankings: list | None, *, decimals: int = 3
) -> str:
    """The comparisons section of ``results.md``: rankings across categories, then the
    paired comparisons on the same images (empty string when there is neither)."""
    out = []
    if rankings:
        out += ["# Rankings across categories", "", _md_escape(RANKING_LEGEND), ""]
        for br in rankings:
            out += [f"## {_md_escape(br.title)}", "", _md_escape(ranking_summary(br)), ""]
            rows = ranking_rows(br)
            if rows:
                out.append(_md_row(list(rows[0])))
                out.append("| ---: | --- | ---: | --- |")
                out += [_md_row([_md_escape(v) for v in row.values()]) for row in rows]
                out.append("")
    if comparisons is not None and len(comparisons):
        out += ["# Paired comparisons on the same images", "", _md_escape(PAIRED_LEGEND), ""]
        for title, rows in comparison_groups(comparisons):
            kind = rows["kind"].iloc[0]
            out += [f"## {_md_escape(title)}", ""]
            head = ["metric", *comparison_cells(rows.iloc[0], kind=kind)]
            out.append(_md_row(head))
            out.append("| " + " | ".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + " |")
            for _, row in rows.iterrows():
                cells = [_md_escape(row["metric"])] + [
                    _md_escape(v)
                    for v in comparison_cells(row, decimals=decimals, kind=kind).values()
                ]
                if not pd.isna(row["p_holm"]) and row["p_holm"] < ALPHA:
                    cells[-1] = f"**{cells[-1]}**"
                out.append(_md_row(cells))
            out.append("")
    return "\n".join(out).rstrip() + "\n" if out else ""
