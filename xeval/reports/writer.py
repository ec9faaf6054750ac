"""Write a report folder: CSV, Markdown, manifest, figures and an HTML page.

Layout of ``out_dir``::

    results.csv          the long results table (one row per detector, explainer,
                         dataset, category, protocol, metric); read it back with
                         :func:`read_results_csv`
    results.md           the generated conclusion, then Markdown tables, one per
                         metric, with a legend
    manifest.json        versions, seed, config hash, dataset fingerprint, timings
    tables.tex           booktabs LaTeX tables, one per metric (:func:`latex_tables`)
    verdicts.csv, ranks.csv   verdicts against the references, rank table (when made)
    comparisons.csv      paired tests between explainers / detectors on the same images,
                         Holm-corrected per family (with a per-image table)
    rankings.csv         Friedman rankings across categories of the headline metrics
    figures/cd_<i>_<metric>_<scope>.png   their critical-difference diagrams
    figures/profile.png  the verdicts per explainer and audit family
    figures/roc_pixel.png, figures/pro.png, figures/roc_image.png   (when curves exist)
    figures/curve_<metric>.png   mean faithfulness curves with 95% bands
    figures/bars_<metric>.png    the headline metrics per category
    figures/gallery_<detector>.png   the same example images for every explainer
    figures/gallery.png  best / worst images (when the report has a gallery)
    index.html           the page tying it together (figures by relative path)

Every file is written atomically and every path is checked to stay inside ``out_dir``.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from xeval._io import atomic_write_json, atomic_write_text, safe_join
from xeval.comparisons.ranking import rankings_frame
from xeval.progress import progress
from xeval.reports.cd_diagram import figure_key, plot_cd_diagram
from xeval.reports.data import (
    ReportData,
    check_results,
    controls_of,
    display_frame,
    with_statistics,
)
from xeval.reports.figures import (
    faithfulness_kinds,
    gallery_columns,
    plot_category_bars,
    plot_curves,
    plot_example_gallery,
    plot_faithfulness_curves,
    plot_gallery,
    plot_profile,
    report_colors,
    verdict_counts,
)
from xeval.reports.html import render_html
from xeval.reports.latex import latex_tables
from xeval.reports.tables import comparisons_markdown, headline_metrics, markdown_tables
from xeval.results import RESULT_COLUMNS

FIGURES_DIR = "figures"
CURVE_FILES = {"roc": "roc_pixel", "pro": "pro", "image_roc": "roc_image"}
_FLOAT_COLUMNS = ["value", "ci_low", "ci_high", "threshold"]
_STRING_COLUMNS = [
    c
    for c in RESULT_COLUMNS
    if c not in (*_FLOAT_COLUMNS, "n", "higher_is_better", "control", "headline")
]


def write_report(
    report: ReportData,
    out_dir: str | os.PathLike,
    *,
    figures: bool = True,
    bar_metrics: Sequence[str] | None = None,
    controls: Iterable[str] | None = None,
    decimals: int = 3,
) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created if needed).

    Parameters
    ----------
    report : ReportData
        What to write.
    out_dir : path
        Output folder; existing files of the same names are replaced atomically.
    figures : bool
        Draw the figures (the slowest part); without them the page has tables only.
    bar_metrics : sequence of str, optional
        Metrics drawn as per-category bars; default: pixel_auroc, aupro@0.3 (or the
        first aupro@L) and image_auroc, those present.
    controls : iterable of str, optional
        Explainer names treated as trivial controls; default: those the results mark
        (``control`` column).
    decimals : int
        Decimals in the tables.

    Returns
    -------
    dict of str to Path
        Path relative to ``out_dir`` (e.g. ``"figures/pro.png"``) -> absolute path,
        in writing order; ``index.html`` last.
    """
    controls = controls_of(report.results) if controls is None else frozenset(controls)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(rel: str, writer, payload) -> Path:
        written[rel] = writer(safe_join(root, *rel.split("/")), payload)
        return written[rel]

    put("results.csv", atomic_write_text, results_csv(report.results))
    with_statistics(report, controls=controls)
    tables_md = (
        conclusion_markdown(report)
        + markdown_tables(report.results, controls=controls, decimals=decimals)
        + _section_break(
            comparisons_markdown(report.comparisons, report.rankings, decimals=decimals)
        )
    )
    put("results.md", atomic_write_text, tables_md)
    put("manifest.json", atomic_write_json, report.manifest)
    put("tables.tex", atomic_write_text, latex_tables(report, controls=controls, decimals=decimals))
    files = ["results.csv", "results.md", "manifest.json", "tables.tex"]
    rankings = rankings_frame(report.rankings) if report.rankings else None
    for name, frame in (
        ("verdicts.csv", report.verdicts),
        ("ranks.csv", report.ranks),
        ("comparisons.csv", report.comparisons),
        ("rankings.csv", rankings),
    ):
        if frame is not None and len(frame):
            put(name, atomic_write_text, frame.to_csv(index=False))
            files.append(name)
    figure_paths: dict[str, str] = {}
    if figures:
        figure_paths = _write_figures(report, root, written, bar_metrics, controls)
    page = render_html(
        report,
        figure_paths,
        tables_md,
        controls=tuple(controls),
        files=files,
        decimals=decimals,
    )
    put("index.html", atomic_write_text, page)
    return written


def _section_break(text: str) -> str:
    return "\n" + text if text else ""


def conclusion_markdown(report: ReportData) -> str:
    """The generated conclusion as Markdown (empty without verdicts)."""
    from xeval.reports.conclusion import conclusions, grouped_caveats, verdict_caveats
    from xeval.reports.tables import _md_escape

    found = conclusions(report.verdicts, report.results)
    if not found:
        return ""
    out = ["# Conclusion", ""]
    for det, lines in found.items():
        out += [f"## {det}", "", *(f"- {line}" for line in lines), ""]
    caveats = grouped_caveats(verdict_caveats(report.verdicts, report.results))
    if caveats:
        out += ["## Where the verdicts can mislead", ""]
        out += ["- " + _md_escape(f"{', '.join(m)}: {'; '.join(c)}.") for m, c in caveats]
        out.append("")
    return "\n".join(out) + "\n"


def results_csv(results: pd.DataFrame) -> str:
    """The long table as CSV text: canonical columns first, then any extra ones."""
    check_results(results)
    extra = [c for c in results.columns if c not in RESULT_COLUMNS]
    buf = io.StringIO()
    results[RESULT_COLUMNS + extra].to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def read_results_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``results.csv`` back with the long table's dtypes.

    String columns keep ``""`` (and names like ``"nan"``) as strings; float columns
    read empty cells as NaN; ``n`` is int and ``higher_is_better`` bool.
    """
    na = dict.fromkeys(_FLOAT_COLUMNS, [""])
    dtypes = dict.fromkeys(_STRING_COLUMNS, str) | dict.fromkeys(_FLOAT_COLUMNS, float)
    df = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=na)
    df["n"] = pd.to_numeric(df["n"]).astype(int)
    df["higher_is_better"] = df["higher_is_better"].map(_parse_bool).astype(bool)
    if "control" in df.columns:
        df["control"] = df["control"].map(_parse_bool).astype(bool)
    if "headline" in df.columns:
        df["headline"] = pd.to_numeric(df["headline"], errors="coerce").fillna(0).astype(int)
    return df


def _parse_bool(v: object) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in {"true", "1"}


# --------------------------------------------------------------------------- figures


def _write_figures(
    report: ReportData,
    root: Path,
    written: dict[str, Path],
    bar_metrics: Sequence[str] | None,
    controls: frozenset[str],
) -> dict[str, str]:
    """Draw every figure the data allows; returns figure key -> relative path.

    In page order: the verdict profile, ROC / PRO curves, faithfulness curves
    (``curve_<kind>``), per-category bars (``bars_<metric>``), the example gallery of
    each detector (``gallery_<detector>``) and the best / worst gallery. Every figure
    uses one explainer -> colour mapping (controls grey, dashed / hatched)."""
    rel_paths: dict[str, str] = {}
    used: set[str] = set()

    def target(key: str) -> Path:
        key = _unique(key, used)
        rel = f"{FIGURES_DIR}/{key}.png"
        path = safe_join(root, FIGURES_DIR, f"{key}.png")
        rel_paths[key] = rel
        return path

    curves = report.curves if report.curves is not None else pd.DataFrame()
    gallery = list(report.gallery or [])
    colors = report_colors(
        report.results["explainer"], curves, report.verdicts, gallery, controls=controls
    )
    order = list(dict.fromkeys(report.results["explainer"].dropna().astype(str)))
    if len(verdict_counts(report.verdicts, report.results, controls=controls)):
        plot_profile(report.verdicts, report.results, target("profile"), controls=controls)
    kinds = set(curves["curve"].astype(str)) if len(curves) else set()
    limit = _fpr_limit(report.results)
    for kind, key in CURVE_FILES.items():
        if kind in kinds:
            plot_curves(
                curves, kind, target(key), fpr_limit=limit, controls=controls, colors=colors
            )
    for kind in faithfulness_kinds(curves, report.results):
        plot_faithfulness_curves(
            curves,
            kind,
            target(f"curve_{slug(kind)}"),
            controls=controls,
            colors=colors,
            higher_is_better=_direction_of(report.results, kind),
        )
    present = set(display_frame(report.results)["metric"].astype(str))
    metrics = headline_metrics(report.results) if bar_metrics is None else bar_metrics
    for metric in progress(metrics, desc="report figures"):
        if metric not in present:
            continue
        path = target(f"bars_{slug(metric)}")
        plot_category_bars(report.results, metric, path, controls=controls, colors=colors)
    for i, br in enumerate(report.rankings or []):
        if br.ranking is not None:
            plot_cd_diagram(br, target(figure_key(i, br)), colors=colors)
    examples = [g for g in gallery if g.rank == "example"]
    for det in dict.fromkeys(str(g.detector) for g in examples):
        plot_example_gallery(
            examples,
            target(f"gallery_{slug(det)}"),
            detector=det,
            controls=controls,
            explainers=order,
        )
    ranked = [g for g in gallery if g.rank != "example"]
    if ranked:
        explainers = gallery_columns(ranked, controls=controls, explainers=order)
        plot_gallery(ranked, target("gallery"), controls=controls, explainers=explainers)
    for rel in rel_paths.values():
        written[rel] = safe_join(root, *rel.split("/"))
    return rel_paths


def _direction_of(results: pd.DataFrame, label: str) -> bool | None:
    """``higher_is_better`` of the metric labelled ``label``, None when unknown."""
    shown = display_frame(results)
    rows = shown.loc[shown["metric"].astype(str) == str(label), "higher_is_better"]
    if rows.empty:
        return None
    return bool(rows.map(_parse_bool).mean() >= 0.5)


def slug(name: str) -> str:
    """A file-name-safe version of ``name`` (letters, digits, ``@ . _ -``; no ``..``)."""
    s = re.sub(r"[^A-Za-z0-9@._-]+", "_", str(name))
    s = re.sub(r"\.{2,}", "_", s).strip("._")
    return s or "metric"


def _unique(key: str, used: set[str]) -> str:
    out, k = key, 2
    while out in used:
        out, k = f"{key}_{k}", k + 1
    used.add(out)
    return out


def _fpr_limit(results: pd.DataFrame, default: float = 0.3) -> float:
    """The FPR limit of the first ``aupro`` metric (from its ``params``), else
    ``default``; tables without ``params`` (xeval 0.1) are read from the name."""
    import json

    if "params" in results.columns:
        rows = results[results["metric"].astype(str) == "aupro"]
        for p in dict.fromkeys(rows["params"].astype(str)):
            try:
                value = float(json.loads(p).get("fpr_limit", default))
            except (ValueError, TypeError, AttributeError):
                continue
            if 0 < value <= 1:
                return value
    for m in dict.fromkeys(results["metric"].astype(str)):
        match = re.fullmatch(r"aupro@([0-9.eE+-]+)", m)
        if match:
            try:
                value = float(match.group(1))
            except ValueError:
                continue
            if 0 < value <= 1:
                return value
    return default
