"""The example-importance (contaminated-training) report: ``results.csv``,
``per_seed.csv``, ``curves.csv``, ``results.md``, ``index.html``, ``figures/`` and
``manifest.json``.

What it shows (every string escaped in HTML; a Content-Security-Policy that allows
only the page's own images and inline style):

- the protocol (dataset, detector, seeds, rates and the number planted, conventions);
- a conclusion that compares each method with the best control per rate on the
  headline metric (planted AUROC) and says when the seeds cannot separate them;
- a table per contamination rate: one row per method, controls marked, each metric as
  mean [95 % t-interval over seeds];
- the per-test attribution metrics and the cost (seconds per training / test image,
  peak memory) per method;
- figures: the mean cumulative-detection curve per rate, and a gallery of chosen test
  anomalies with their most and least influential training images per method (planted
  images framed in red and labelled with their defect type).
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xeval._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from xeval.reports.page import markdown_page

__all__ = ["write_influence_report"]


def _fmt(v, d: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else f"{v:.{d}f}"


def _cell(row) -> str:
    v, lo, hi = row["value"], row["ci_low"], row["ci_high"]
    if isinstance(lo, float) and math.isnan(lo):
        return _fmt(v)
    return f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _md(text: object) -> str:
    """Free text from data for the markdown: ``*``, ``|`` and backticks escaped."""
    return str(text).replace("\\", "\\\\").replace("*", "\\*").replace("|", "/").replace("`", "'")


# --------------------------------------------------------------------- tables
def _rate_table(res: pd.DataFrame, rate: float, metrics: list[str]) -> list[str]:
    sel = res[(res["category"] == "mean") & res["label"].isin([f"{m}@{rate:g}" for m in metrics])]
    if sel.empty:
        return []
    present = [m for m in metrics if f"{m}@{rate:g}" in set(sel["label"])]
    head = "| method | control | " + " | ".join(present) + " |"
    lines = [head, "|" + "---|" * (len(present) + 2)]
    for method, g in sel.groupby("explainer", sort=False):
        by = {r["metric"]: r for _, r in g.iterrows()}
        ctrl = "yes" if bool(g["control"].iloc[0]) else ""
        cells = [_cell(by[m]) if m in by else "—" for m in present]
        lines.append(f"| {_md(method)} | {ctrl} | " + " | ".join(cells) + " |")
    return lines


def _cost_table(res: pd.DataFrame) -> list[str]:
    labels = ["seconds_per_train_image", "seconds_per_test_image", "peak_memory_mb"]
    sel = res[(res["category"] == "mean") & res["label"].isin(labels)]
    if sel.empty:
        return []
    present = [m for m in labels if m in set(sel["label"])]
    lines = [
        "| method | control | " + " | ".join(present) + " |",
        "|" + "---|" * (len(present) + 2),
    ]
    for method, g in sel.groupby("explainer", sort=False):
        by = {r["label"]: r for _, r in g.iterrows()}
        ctrl = "yes" if bool(g["control"].iloc[0]) else ""
        cells = [_cell(by[m]) if m in by else "—" for m in present]
        lines.append(f"| {_md(method)} | {ctrl} | " + " | ".join(cells) + " |")
    return lines


def _gt_table(res: pd.DataFrame) -> list[str]:
    sel = res[(res["category"] != "mean") & (res["family"] == "ground_truth")]
    if sel.empty:
        return []
    labels = list(dict.fromkeys(sel["label"]))
    lines = ["| method | control | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 2)]
    for method, g in sel.groupby("explainer", sort=False):
        by = {r["label"]: r for _, r in g.iterrows()}
        ctrl = "yes" if bool(g["control"].iloc[0]) else ""
        lines.append(
            f"| {_md(method)} | {ctrl} | "
            + " | ".join(_cell(by[x]) if x in by else "—" for x in labels)
            + " |"
        )
    return lines


def conclusion(results: pd.DataFrame, rates) -> list[str]:
    """Per rate: each method's planted AUROC against the best control's, with the
    verdict the seeds allow (their 95 % t-intervals disjoint or not)."""
    out = []
    mean = results[results["category"] == "mean"]
    for rate in rates:
        sel = mean[mean["label"] == f"planted_auroc@{rate:g}"]
        ctrl = sel[sel["control"].astype(bool)].dropna(subset=["value"])
        meth = sel[~sel["control"].astype(bool)]
        if ctrl.empty or meth.empty:
            continue
        best = ctrl.loc[ctrl["value"].idxmax()]
        for _, r in meth.iterrows():
            if math.isnan(float(r["value"])):
                out.append(f"rate {rate:g}: {r['explainer']} has no planted AUROC (undefined).")
                continue
            sep = not (math.isnan(float(r["ci_low"])) or math.isnan(float(best["ci_low"]))) and (
                r["ci_low"] > best["ci_high"] or r["ci_high"] < best["ci_low"]
            )
            word = (
                ("beats" if r["value"] > best["value"] else "loses to")
                if sep
                else "is not separable from"
            )
            out.append(
                f"rate {rate:g}: **{r['explainer']}** (planted AUROC {_fmt(r['value'])}) {word} "
                f"the best control **{best['explainer']}** ({_fmt(best['value'])})"
                + ("" if sep else " with these seeds (95 % intervals overlap or are undefined)")
                + "."
            )
    return out or ["No method and control with a defined planted AUROC: nothing to compare."]


# -------------------------------------------------------------------- figures
def _curve_figure(curves: pd.DataFrame, cat: str, rate: float) -> Figure | None:
    sel = curves[(curves["category"] == cat) & (curves["rate"] == rate)]
    if sel.empty:
        return None
    fig = Figure(figsize=(5, 3.6))
    ax = fig.add_subplot()
    for (method, control), g in sel.groupby(["method", "control"], sort=False):
        m = g.groupby("t")["found"].mean()
        ax.plot(
            m.index,
            m.values,
            ls="--" if control else "-",
            lw=1.2 if control else 1.8,
            label=str(method),
        )
    n = int(sel["t"].max())
    ax.plot([0, n], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("training images inspected (most suspicious first)")
    ax.set_ylabel("planted images found (fraction)")
    ax.set_title(f"{cat}, rate {rate:g}: cumulative detection (mean over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def _thumb(img: np.ndarray) -> np.ndarray:
    x = np.asarray(img, dtype=np.float32)
    x = np.moveaxis(x, 0, -1) if x.ndim == 3 else x
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.clip(x, 0, 1)


def _gallery_figure(item: dict, method: str) -> Figure:
    per = item["methods"][method]
    k = len(per["top"])
    fig = Figure(figsize=(1.3 * (2 * k + 1), 1.8))
    axes = fig.subplots(1, 2 * k + 1)
    axes[0].imshow(_thumb(item["image"]))
    axes[0].set_title(f"test: {item['defect']}", fontsize=7)
    for ax, (side, (j, v)) in zip(
        axes[1:],
        [("most", x) for x in per["top"]] + [("least", x) for x in per["bottom"]],
        strict=True,
    ):
        ax.imshow(_thumb(item["train"][j]))
        t = item["train_types"][j]
        planted = t != "good"
        ax.set_title(
            f"{side} {v:.2g}" + (f"\nPLANTED {t}" if planted else ""),
            fontsize=6,
            color="red" if planted else "black",
        )
        if planted:
            for s in ax.spines.values():
                s.set_edgecolor("red")
                s.set_linewidth(3)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


# ---------------------------------------------------------------------- write
def write_influence_report(res, cfg) -> dict:
    """Write every file of an influence run into ``res.out_dir``; returns the paths."""
    out = Path(res.out_dir)
    files: dict = {}
    files["results.csv"] = atomic_write_text(out / "results.csv", res.results.to_csv(index=False))
    files["per_seed.csv"] = atomic_write_text(
        out / "per_seed.csv", res.per_seed.to_csv(index=False)
    )
    files["curves.csv"] = atomic_write_text(out / "curves.csv", res.curves.to_csv(index=False))
    figures: dict[str, Path] = {}
    cats = list(dict.fromkeys(res.per_seed["category"])) if not res.per_seed.empty else []
    if cfg.report.figures and not res.curves.empty:
        for cat in cats:
            for rate in cfg.contamination.rates:
                fig = _curve_figure(res.curves, cat, rate)
                if fig is not None:
                    key = f"cdc_{cat}_{rate:g}"
                    figures[key] = _save(fig, out / "figures" / f"{_safe(key)}.png")
    captions: dict[str, str] = {}
    if cfg.report.gallery:
        for n, item in enumerate(res.gallery):
            for method in item["methods"]:
                key = f"gallery_{n}_{method}"
                figures[key] = _save(
                    _gallery_figure(item, method), out / "figures" / f"{_safe(key)}.png"
                )
                captions[key] = (
                    f"{method}: test anomaly {item['test_id']} ({item['defect']}); its "
                    f"{len(item['methods'][method]['top'])} most influential training images "
                    "(influence value above each; positive = makes it look normal), then the "
                    "least influential; planted training images in red."
                )
    m = res.manifest
    md = [f"# xeval example-importance audit: {cfg.name}", ""]
    det = cfg.detector
    md.append(
        f"Dataset **{_md(cfg.dataset.name)}** "
        f"{_md(json.dumps(cfg.dataset.params, sort_keys=True))}; "
        f"detector **{_md(det['name'])}** ({_md(det['kind'])}) retrained on each contaminated set; "
        f"seeds {list(cfg.seeds)}; contamination rates {list(cfg.contamination.rates)}."
    )
    for key, v in m.get("contamination", {}).items():
        md.append(f"- {_md(key)}: {v['k']} planted among {v['n_train']} training images")
    md += ["", "## Conclusion", ""]
    md += [f"- {s}" for s in conclusion(res.results, cfg.contamination.rates)]
    ranking = ["planted_auroc", "planted_auprc", "planted_precision_at_k", "planted_cdc_auc"]
    per_test = ["attribution_auprc", "similarity_rate", "top_k_cardinality"]
    for rate in cfg.contamination.rates:
        md += ["", f"## Rate {rate:g}: finding the planted images (self-influence ranking)", ""]
        md += _rate_table(res.results, rate, ranking)
        table = _rate_table(res.results, rate, per_test)
        if table:
            md += [
                "",
                f"Per-test attribution at rate {rate:g} (top-k, k = {cfg.per_test.top_k}):",
                "",
            ]
            md += table
    md += ["", "## Cost", ""]
    md += _cost_table(res.results)
    gt = _gt_table(res.results)
    if gt:
        md += ["", "## Ground truth on a tiny model (exact leave-one-out and LDS)", ""]
        for k, v in (m.get("ground_truth") or {}).items():
            md.append(f"- {_md(k)}: {_md(v)}")
        md += [""] + gt
    md += [
        "",
        "Cells: mean over seeds [95 % Student-t interval over seeds]; per-seed values in "
        "per_seed.csv. Controls (random, detector_score, knn_distance) are references, "
        "never methods.",
        "",
        "## Metrics",
        "",
    ]
    md += [
        f"- `{k}` ({'higher' if d['higher_is_better'] else 'lower'} is better): "
        f"{_md(d['definition'])}"
        for k, d in m.get("metrics", {}).items()
    ]
    md += ["", "## Conventions", ""]
    for k, v in m.get("conventions", {}).items():
        if isinstance(v, dict):
            md += [f"- {_md(k)} {_md(kk)}: {_md(vv)}" for kk, vv in v.items()]
        else:
            md.append(f"- {_md(k)}: {_md(v)}")
    md += [
        "",
        f"Total wall time {m['timings'].get('total_s', float('nan')):.1f} s "
        f"({m.get('torch_threads')} torch threads, {m.get('cpu_count')} CPUs).",
    ]
    if figures:
        md += ["", "## Figures", ""] + [
            f"![{k}]({p.relative_to(out).as_posix()})" for k, p in figures.items()
        ]
    text = "\n".join(md) + "\n"
    files["results.md"] = atomic_write_text(out / "results.md", text)
    files["index.html"] = atomic_write_text(
        out / "index.html",
        markdown_page(
            text,
            figures,
            out,
            title="xeval example-importance audit",
            caption=lambda k: captions.get(k, k),
        ),
    )
    files.update({f"figure:{k}": p for k, p in figures.items()})
    files["manifest.json"] = atomic_write_json(out / "manifest.json", m)
    return files


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)
