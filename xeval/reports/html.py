"""One static HTML page per report: summary, per-metric tables, figures, manifest.

The page has no JavaScript and no external resources except the figures, which are
referenced by relative path (``figures/*.png`` next to ``index.html``), so the folder
can be zipped, served or opened from disk as is. Every string that comes from the data
(names, notes, ids, manifest values, paths) goes through :func:`html.escape`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from html import escape
from string import Template
from urllib.parse import quote

import pandas as pd

from xeval import __version__
from xeval.reports.data import ReportData, controls_of, display_frame
from xeval.reports.tables import (
    ALPHA,
    DAGGER,
    DOWN,
    MEAN,
    PAIRED_LEGEND,
    RANKING_LEGEND,
    UP,
    MetricTable,
    best_mask,
    comparison_cells,
    comparison_groups,
    format_value,
    headline_metrics,
    metric_tables,
    ranking_rows,
    ranking_summary,
    summary_frame,
)


def _template(name: str) -> str:
    """A report template from the declarative ``reports/templates/`` folder."""
    from xeval.assets import asset_file

    return asset_file("reports", f"templates/{name}").read_text(encoding="utf-8")


_CONTROLS_NOTE = "Trivial controls: grey, dashed."
FIGURE_CAPTIONS = {
    "profile": (
        "Verdict profile: per detector and real explainer, the number of metrics of each "
        "audit family (localisation, faithfulness, robustness, sanity) on which it beats "
        "every trivial control or passes its threshold (green), ties or is inconclusive "
        "(grey), loses or fails (red), or lacks evidence / is undefined (hatched)."
    ),
    "roc_pixel": (
        f"Pixel ROC curves per detector and category (pooled over pixels). {_CONTROLS_NOTE}"
    ),
    "pro": (
        "PRO curves per detector and category; the dotted line is the FPR integration limit "
        f"of AUPRO. {_CONTROLS_NOTE}"
    ),
    "roc_image": f"Image ROC curves per detector and category. {_CONTROLS_NOTE}",
    "gallery": (
        "Best and worst test images per detector and explainer (controls last): image, "
        "ground-truth mask, explanation map (min-max scaled per image) with the mask outline."
    ),
}

DEFAULT_FILES = ("results.csv", "results.md", "manifest.json")


def render_html(
    report: ReportData,
    figure_paths: Mapping[str, str] | None = None,
    tables_md: str | None = None,
    *,
    controls: Sequence[str] | None = None,
    files: Sequence[str] = DEFAULT_FILES,
    decimals: int = 3,
) -> str:
    """Render the report as one HTML page.

    Parameters
    ----------
    report : ReportData
        What to show.
    figure_paths : mapping of str to str, optional
        Figure key (``"profile"``, ``"roc_pixel"``, ``"pro"``, ``"roc_image"``,
        ``"curve_<metric>"``, ``"bars_<metric>"``, ``"gallery_<detector>"``,
        ``"gallery"``) to a path relative to the page (e.g. ``"figures/pro.png"``);
        shown in this order.
    tables_md : str, optional
        The Markdown tables, shown verbatim in a collapsed block.
    controls : sequence of str, optional
        Explainer names treated as trivial controls; default: those the results mark.
    files : sequence of str
        Relative paths of the companion files to link to.
    decimals : int
        Decimals shown.

    Returns
    -------
    str
        The page.
    """
    controls = controls_of(report.results) if controls is None else frozenset(controls)
    tables = metric_tables(report.results, controls=controls)
    body = [
        _conclusion_section(report.verdicts, report.results),
        _summary(report.results, tables, controls=controls, decimals=decimals),
        _verdict_section(report.verdicts, report.results),
        _subset_section(report.per_image),
        _rank_section(report.ranks, decimals=decimals),
        _comparisons_section(report, figure_paths or {}, decimals=decimals),
        _metric_sections(tables, decimals=decimals, verdicts=report.verdicts),
        _figures({k: v for k, v in (figure_paths or {}).items() if not k.startswith("cd_")}),
        _manifest(report.manifest),
    ]
    if tables_md:
        body.append(
            "<section id='markdown'><details><summary>Markdown tables</summary>"
            f"<pre>{escape(tables_md)}</pre></details></section>"
        )
    body = [b for b in body if b]
    present = set(re.findall(r"<section id='([\w-]+)'", "\n".join(body)))
    body.insert(0, _header(report, files, sections=present))
    page = Template(_template("page.html"))
    return page.substitute(
        title=escape(report.title),
        style=_template("style.css").strip(),
        body="\n".join(body),
        version=escape(__version__),
    )


# --------------------------------------------------------------------------- sections


NAV = (
    ("conclusion", "Conclusion"),
    ("summary", "Summary"),
    ("verdicts", "Verdicts"),
    ("subsets", "Subsets"),
    ("comparisons", "Comparisons"),
    ("tables", "Tables"),
    ("figures", "Figures"),
    ("manifest", "Manifest"),
)
"""Sections the page's navigation links to (id, text), each only when it is rendered."""


def _header(report: ReportData, files: Sequence[str], *, sections: set[str]) -> str:
    res = report.results
    facts = []
    labels = (("dataset", "dataset"), ("detector", "detectors"), ("explainer", "explainers"))
    for col, name in labels:
        vals = [str(v) for v in dict.fromkeys(res[col].dropna())]
        if vals:
            facts.append(f"{name}: {escape(', '.join(vals))}")
    cats = [str(c) for c in dict.fromkeys(res["category"].dropna()) if str(c) != MEAN]
    if cats:
        facts.append(f"categories: {escape(', '.join(cats))}")
    links = " ".join(f"<a href='{_href(f)}'>{escape(f)}</a>" for f in files)
    anchors = "".join(f"<a href='#{sid}'>{text}</a>" for sid, text in NAV if sid in sections)
    nav = f"<nav>{anchors}<span class='muted'>files: {links}</span></nav>"
    return (
        f"<header><h1>{escape(report.title)}</h1>"
        f"<p class='muted'>{' · '.join(facts)}</p>{nav}</header>"
    )


def _summary(
    results: pd.DataFrame, tables: list[MetricTable], *, controls: frozenset[str], decimals: int
) -> str:
    frame, directions = summary_frame(results)
    out = ["<section id='summary'><h2>Summary</h2>"]
    if frame.empty:
        out.append("<p class='muted'>No headline metric (pixel AUROC, AUPRO, image AUROC).</p>")
    else:
        out.append(
            "<p class='muted'>Mean over categories. Bold: best explainer of its column "
            "(controls excluded). "
            f"{DAGGER}: trivial control.</p>"
        )
        out.append(_summary_table(frame, directions, controls=controls, decimals=decimals))
    names = set(headline_metrics(results))
    headline = [t for t in tables if t.metric in names]
    out.append(_control_warnings(headline, decimals=decimals))
    out.append("</section>")
    return "\n".join(o for o in out if o)


def _summary_table(
    frame: pd.DataFrame, directions: dict[str, bool], *, controls: frozenset[str], decimals: int
) -> str:
    head = "".join(f"<th>{escape(m)} {UP if directions[m] else DOWN}</th>" for m in frame.columns)
    real = [e not in controls for _, e in frame.index]
    best = {
        m: best_mask(frame.loc[real, [m]], higher_is_better=directions[m], decimals=decimals)[
            m
        ].reindex(frame.index, fill_value=False)
        for m in frame.columns
    }
    rows = []
    for det, exp in frame.index:
        cells = "".join(
            _value_cell(frame.at[(det, exp), m], best=bool(best[m].at[(det, exp)]), d=decimals)
            for m in frame.columns
        )
        rows.append(_row(det, exp, cells, control=exp in controls, first=False))
    return (
        "<table class='summary'><thead><tr><th class='name'>detector</th>"
        f"<th class='name'>explainer</th>{head}</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _control_warnings(tables: list[MetricTable], *, decimals: int) -> str:
    items = []
    for t in tables:
        for f in t.controls_not_beaten():
            items.append(
                f"<li>{escape(t.title)} ({escape(f.column)}): {escape(f.detector)} / "
                f"{escape(f.explainer)} = {format_value(f.value, decimals=decimals)} does not "
                f"beat {escape(f.control)} = {format_value(f.control_value, decimals=decimals)}"
                "</li>"
            )
    if not items:
        return ""
    return (
        "<div class='warn'><p>Explainers that do not beat the best trivial control of "
        f"their detector (headline metrics; see each table for the others):</p>"
        f"<ul>{''.join(items)}</ul></div>"
    )


def _frame_table(df, *, decimals: int) -> str:
    """A plain HTML table of a small DataFrame; every cell escaped."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, r in df.iterrows():
        cells = []
        for v in r:
            if isinstance(v, float):
                cells.append(f"<td class='num'>{escape(format_value(v, decimals=decimals))}</td>")
            else:
                cells.append(f"<td>{escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _verdict_section(verdicts, results) -> str:
    if verdicts is None or len(verdicts) == 0:
        return ""
    overall = verdicts[verdicts["control"] == "all controls"]
    wide = overall.pivot_table(
        index=["detector", "explainer"],
        columns="metric",
        values="verdict",
        aggfunc="first",
        sort=False,
    ).reset_index()
    meanings = overall.drop_duplicates("metric").set_index("metric")["meaning"]
    legend = "".join(
        f"<li><code>{escape(str(m))}</code>: {escape(str(t))}</li>"
        for m, t in meanings.items()
        if isinstance(t, str) and t
    )
    return (
        "<section id='verdicts'><h2>Verdicts against the trivial controls</h2>"
        "<p class='muted'>Per image, paired with each reference on the same images; 95% "
        "bootstrap CI of the mean difference. <b>beats</b>: better than every reference; "
        "<b>loses</b>: worse than some reference; <b>ties</b>: otherwise; "
        "<b>insufficient evidence</b>: fewer than 10 paired images; <b>passes</b> / "
        "<b>fails</b> / <b>inconclusive</b>: against an absolute threshold. Pooled over "
        "categories. Per-reference numbers: verdicts.csv.</p>"
        + _profile(overall, results)
        + "<h3>Per metric</h3>"
        + _frame_table(wide.fillna("n/a"), decimals=3)
        + (f"<p class='legend'>What each verdict compares:</p><ul class='legend'>{legend}</ul>")
        + _caveats_list(verdicts, results)
        + "</section>"
    )


def _caveats_list(verdicts, results) -> str:
    from xeval.reports.conclusion import grouped_caveats, verdict_caveats  # noqa: PLC0415

    found = grouped_caveats(verdict_caveats(verdicts, results))
    if not found:
        return ""
    items = "".join(
        "<li>"
        + ", ".join(f"<code>{escape(m)}</code>" for m in metrics)
        + f": {escape('; '.join(c))}.</li>"
        for metrics, c in found
    )
    return (
        "<div class='warn'><p>Where these verdicts can mislead:</p>"
        f"<ul class='legend'>{items}</ul></div>"
    )


def _subset_section(per_image) -> str:
    """Which images the costly metrics ran on (per detector: count, categories, defect
    types) and how many had no value, and why."""
    if per_image is None or "subsets" not in per_image or not per_image["subsets"].any():
        return ""
    rows = []
    for det, d in per_image.groupby("detector", sort=False):
        real = d[~d["control"].astype(bool)]
        first = (real if len(real) else d)["explainer"].iloc[0]
        one = d[d["explainer"] == first]
        labels = sorted({x for s in one["subsets"].dropna() for x in str(s).split(";") if x})
        for label in labels:
            chosen = one[
                one["subsets"].fillna("").str.split(";").map(lambda xs, la=label: la in xs)
            ]
            cats = chosen["category"].value_counts(sort=False)
            kinds = chosen["defect"].value_counts(sort=False) if "defect" in chosen else {}
            col = f"{label} excluded"
            excl = ""
            if col in d:
                why = d.loc[d[col].notna() & (d[col] != ""), ["explainer", col]]
                if len(why):
                    counts = why.groupby(col)["explainer"].agg(lambda e: len(e))
                    excl = "; ".join(f"{r}: {k}" for r, k in counts.items())
            rows.append(
                {
                    "detector": det,
                    "metric": label,
                    "images": int(len(chosen)),
                    "categories": ", ".join(f"{c} {n}" for c, n in cats.items()),
                    "defect types": ", ".join(f"{c} {n}" for c, n in kinds.items()),
                    "no value (image x explainer)": excl or "none",
                }
            )
    if not rows:
        return ""
    return (
        "<section id='subsets'><h2>Subsets of the costly metrics</h2><p class='muted'>"
        "Faithfulness, robustness and sanity run on a seeded subset of anomalous images per "
        "category and detector (balanced over defect types with the stratified strategy); "
        "the ids are in per_image.csv (column <code>subsets</code>), the reason for each "
        "missing value in its <code>&lt;metric&gt; excluded</code> column.</p>"
        + _frame_table(pd.DataFrame(rows), decimals=3)
        + "</section>"
    )


def _conclusion_section(verdicts, results) -> str:
    from xeval.reports.conclusion import conclusions

    found = conclusions(verdicts, results)
    if not found:
        return ""
    items = []
    for det, lines in found.items():
        body = "".join(f"<li>{escape(line)}</li>" for line in lines)
        items.append(f"<h3>{escape(det)}</h3><ul>{body}</ul>")
    return (
        "<section id='conclusion'><h2>Conclusion</h2><p class='muted'>Generated from the "
        "verdicts below: which explanation to trust, on which evidence, and where the "
        "evidence is inconclusive.</p>" + "".join(items) + "</section>"
    )


def _profile(overall, results) -> str:
    """Per explainer and audit family: metrics where it beats all controls / metrics.
    The family of each metric comes from the results' ``family`` column."""
    shown = display_frame(results)
    families = dict(zip(shown["metric"].astype(str), shown["family"].astype(str), strict=False))
    fam = overall.assign(family=overall["metric"].map(lambda m: families.get(m) or "other"))
    fam = fam[fam["verdict"] != "undefined"]
    if fam.empty:
        return ""

    def cell(v) -> str:
        good = int(v.isin(["beats", "passes"]).sum())
        text = f"{good}/{len(v)} beat/pass"
        for bad in ("loses", "fails", "insufficient evidence"):
            k = int((v == bad).sum())
            if k:
                text += f", {k} {'lack evidence' if bad.startswith('insuff') else bad[:-1]}"
        return text

    cells = fam.groupby(["detector", "explainer", "family"], sort=False)["verdict"].agg(cell)
    wide = cells.unstack("family").reset_index()
    order = [
        c
        for c in ("localisation", "faithfulness", "robustness", "sanity", "other")
        if c in wide.columns
    ]
    wide = wide[["detector", "explainer", *order]].fillna("n/a")
    return (
        "<h3>Profile</h3><p class='muted'>Per audit family: number of metrics on "
        "which the explainer beats every reference (or passes its threshold) / metrics "
        "measured.</p>" + _frame_table(wide, decimals=3)
    )


def _rank_section(ranks, *, decimals: int) -> str:
    if ranks is None or len(ranks) == 0:
        return ""
    return (
        "<section id='ranks'><h2>Rank table</h2><p class='muted'>Rank of each explainer "
        "per detector on each metric (mean over categories; 1 = best, controls "
        "included), and the mean rank.</p>" + _frame_table(ranks, decimals=2) + "</section>"
    )


def _comparisons_section(
    report: ReportData, figure_paths: Mapping[str, str], *, decimals: int
) -> str:
    """Rankings across categories (with their CD diagrams) and the paired comparisons on
    the same images; empty when the report has neither."""
    from xeval.reports.cd_diagram import cd_caption, figure_key  # noqa: PLC0415

    rankings, comparisons = report.rankings or [], report.comparisons
    if not rankings and (comparisons is None or not len(comparisons)):
        return ""
    out = ["<section id='comparisons'><h2>Comparisons</h2>"]
    if rankings:
        out.append(
            "<h3>Rankings across categories</h3>"
            f"<p class='muted'>{escape(RANKING_LEGEND)} All rankings: "
            "rankings.csv.</p>"
        )
        for i, br in enumerate(rankings):
            out.append(f"<h4>{escape(br.title)}</h4>")
            out.append(f"<p class='legend'>{escape(ranking_summary(br))}</p>")
            path = figure_paths.get(figure_key(i, br))
            if path:
                caption = escape(cd_caption(br))
                out.append(
                    f"<figure><img src='{_href(path)}' alt='{caption}' loading='lazy'>"
                    f"<figcaption>{caption}</figcaption></figure>"
                )
            rows = ranking_rows(br)
            if rows:
                out.append(_frame_table(pd.DataFrame(rows), decimals=decimals))
    if comparisons is not None and len(comparisons):
        out.append(
            "<h3>Paired comparisons on the same images</h3>"
            f"<p class='muted'>{escape(PAIRED_LEGEND)} All rows: comparisons.csv.</p>"
        )
        for title, rows in comparison_groups(comparisons):
            kind = rows["kind"].iloc[0]
            sig = int((rows["p_holm"] < ALPHA).sum())
            head = "".join(
                f"<th>{escape(c)}</th>" for c in ["metric", *comparison_cells(rows.iloc[0])]
            )
            body = []
            for _, row in rows.iterrows():
                cells = comparison_cells(row, decimals=decimals, kind=kind)
                strong = not pd.isna(row["p_holm"]) and row["p_holm"] < ALPHA
                tds = [f"<td class='name'>{escape(str(row['metric']))}</td>"]
                for key, text in cells.items():
                    cls = "name" if key in ("a", "b") else "num"
                    text = escape(text)
                    if key == "Holm p" and strong:
                        text, cls = f"<strong>{text}</strong>", "num best"
                    tds.append(f"<td class='{cls}'>{text}</td>")
                control = bool(row["a_control"] or row["b_control"]) and kind == "explainers"
                body.append(f"<tr{_cls('control' if control else '')}>{''.join(tds)}</tr>")
            out.append(
                f"<details><summary>{escape(title)}: {len(rows)} comparisons, {sig} with "
                f"Holm p &lt; {ALPHA:g}</summary><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table></details>"
            )
    out.append("</section>")
    return "\n".join(out)


def _metric_sections(tables: list[MetricTable], *, decimals: int, verdicts=None) -> str:
    out = ["<section id='tables'><h2>Results per metric</h2>"]
    out.append(
        f"<p class='muted'>{UP} higher is better, {DOWN} lower is better. Bold: best "
        f"explainer of its column (controls excluded). {DAGGER}: trivial control. Small "
        "numbers: 95% confidence interval. "
        f"n/a: undefined. <code>{MEAN}</code>: unweighted mean over categories.</p>"
    )
    for i, t in enumerate(tables):
        out.append(_metric_table(t, anchor=f"metric-{i}", decimals=decimals, verdicts=verdicts))
    out.append("</section>")
    return "\n".join(out)


def _metric_table(t: MetricTable, *, anchor: str, decimals: int, verdicts=None) -> str:
    best = t.best_mask(decimals=decimals)
    flag = " <span class='muted'>(optimistic)</span>" if t.optimistic else ""
    head = "".join(f"<th class='{'mean' if c == MEAN else ''}'>{escape(c)}</th>" for c in t.columns)
    rows, previous = [], None
    for det, exp in t.rows:
        cells = "".join(
            _value_cell(
                t.value.at[(det, exp), c],
                best=bool(best.at[(det, exp), c]),
                d=decimals,
                lo=t.ci_low.at[(det, exp), c],
                hi=t.ci_high.at[(det, exp), c],
                n=t.n.at[(det, exp), c],
                mean=c == MEAN,
            )
            for c in t.columns
        )
        first = previous is not None and det != previous
        rows.append(_row(det, exp, cells, control=t.is_control(exp), first=first))
        previous = det
    warn = _verdict_note(t, verdicts) or _failures_note(t, decimals=decimals)
    return (
        f"<h3 id='{anchor}'>{escape(t.title)} {t.arrow}{flag}</h3>"
        "<table><thead><tr><th class='name'>detector</th><th class='name'>explainer</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<p class='legend'>{escape(t.legend(decimals=decimals))}</p>{warn}"
    )


def _verdict_note(t: MetricTable, verdicts) -> str:
    """The verdicts of the table's metric (paired per image, with the right comparators)
    instead of a comparison of means, when the run made verdicts for it."""
    if verdicts is None or len(verdicts) == 0:
        return ""
    rows = verdicts[(verdicts["metric"] == t.metric) & (verdicts["control"] == "all controls")]
    if rows.empty:
        return ""
    parts = "; ".join(
        f"{escape(str(r.detector))} / {escape(str(r.explainer))}: {escape(str(r.verdict))}"
        for r in rows.itertuples()
    )
    meaning = str(rows["meaning"].iloc[0]) if "meaning" in rows and len(rows) else ""
    from xeval.reports.conclusion import metric_caveats  # noqa: PLC0415

    mine = verdicts[verdicts["metric"] == t.metric]
    caveat = "; ".join(
        metric_caveats(t.metric, family=t.family, notes=" ".join(t.notes), rows=mine)
    )
    return (
        f"<p class='legend'>Verdicts (pooled over categories, 95% CI): {parts}."
        + (f" Compared: {escape(meaning)}." if meaning else "")
        + (f" Caveat: {escape(caveat)}." if caveat else "")
        + "</p>"
    )


def _failures_note(t: MetricTable, *, decimals: int) -> str:
    failures = t.controls_not_beaten()
    if not failures:
        return ""
    items = "; ".join(
        f"{escape(f.detector)} / {escape(f.explainer)} "
        f"{format_value(f.value, decimals=decimals)} vs {escape(f.control)} "
        f"{format_value(f.control_value, decimals=decimals)}"
        for f in failures
    )
    column = escape(failures[0].column)
    return f"<p class='legend'>Does not beat the best control ({column}): {items}.</p>"


def _figures(figure_paths: Mapping[str, str]) -> str:
    if not figure_paths:
        return ""
    out = ["<section id='figures'><h2>Figures</h2>"]
    for key, path in figure_paths.items():
        caption = escape(_caption(key))
        out.append(
            f"<figure><img src='{_href(path)}' alt='{caption}' loading='lazy'>"
            f"<figcaption>{caption}</figcaption></figure>"
        )
    out.append("</section>")
    return "\n".join(out)


def _manifest(manifest: Mapping) -> str:
    if not manifest:
        return "<section id='manifest'><h2>Manifest</h2><p class='muted'>Empty.</p></section>"
    return f"<section id='manifest'><h2>Manifest</h2>{_dl(manifest, depth=0)}</section>"


# --------------------------------------------------------------------------- pieces


def _row(det: str, exp: str, cells: str, *, control: bool, first: bool) -> str:
    classes = ("control" if control else "", "first-of-detector" if first else "")
    cls = " ".join(c for c in classes if c)
    mark = DAGGER if control else ""
    return (
        f"<tr{_cls(cls)}><td class='name'>{escape(str(det))}</td>"
        f"<td class='name'>{escape(str(exp))}{mark}</td>{cells}</tr>"
    )


def _value_cell(
    v: float,
    *,
    best: bool,
    d: int,
    lo: float = float("nan"),
    hi: float = float("nan"),
    n: float = float("nan"),
    mean: bool = False,
) -> str:
    text = format_value(v, decimals=d)
    if best:
        text = f"<strong>{text}</strong>"
    if not (pd.isna(lo) or pd.isna(hi)):
        text += (
            f"<span class='ci'>[{format_value(lo, decimals=d)}, {format_value(hi, decimals=d)}]"
            "</span>"
        )
    cls = " ".join(c for c in ("best" if best else "", "mean" if mean else "") if c)
    title = "" if pd.isna(n) else f" title='n = {int(n)}'"
    return f"<td{_cls(cls)}{title}>{text}</td>"


def _cls(name: str) -> str:
    return f" class='{name}'" if name else ""


def _dl(obj: Mapping, *, depth: int) -> str:
    items = []
    for k, v in obj.items():
        items.append(f"<dt>{escape(str(k))}</dt><dd>{_dd(v, depth=depth)}</dd>")
    return f"<dl class='manifest'>{''.join(items)}</dl>"


def _dd(v: object, *, depth: int) -> str:
    if isinstance(v, Mapping) and v and depth < 2:
        return _dl(v, depth=depth + 1)
    if isinstance(v, (Mapping, list, tuple)):
        text = json.dumps(v, indent=2, sort_keys=True, default=str)
        return f"<pre>{escape(text)}</pre>"
    return f"<code>{escape(str(v))}</code>"


def _caption(key: str) -> str:
    if key in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[key]
    if key.startswith("bars_"):
        return (
            f"{key[len('bars_') :]} per category, one panel per detector (error bars: 95% CI "
            "where available). Trivial controls: grey, hatched."
        )
    if key.startswith("curve_"):
        return (
            f"{key[len('curve_') :]} faithfulness curve, one panel per detector: the mean "
            "normalised score against the fraction of pixels perturbed, averaged over "
            "categories (mean of the per-category mean curves); shaded: the mean of the "
            f"per-category 95% band edges. {_CONTROLS_NOTE}"
        )
    if key.startswith("gallery_"):
        return (
            f"Example anomalous images of detector {key[len('gallery_') :]}: the same images "
            "for every explainer (one row each, at most 6, one per category first). "
            "Columns: image, ground-truth mask, then each explainer's map (min-max scaled "
            "per image) with the mask outline; real explainers first, then the controls."
        )
    return key


def _href(path: str) -> str:
    """A relative URL for ``path``, percent-encoded then HTML-escaped."""
    return escape(quote(str(path).replace("\\", "/"), safe="/@.-_~"), quote=True)
