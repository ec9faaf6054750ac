"""The video audit report: ``results.md`` and ``index.html`` with figures.

What it shows (every string escaped in HTML; figures drawn on Agg canvases and written
atomically, as for images):

- the dataset (videos, frames, anomalous frames, reason vocabulary) and every
  convention of the run (from the manifest);
- a summary table per detector and explainer with the frame, pixel, region and reason
  metrics side by side (micro and macro frame AUROC together), controls marked, CIs
  where the metric has them, and a verdict against the controls per metric;
- a plain conclusion, which says when there is too little evidence;
- figures: frame ROC per video and pooled, RBDC/TBDC curves, per-reason AP bars (fine
  and coarse) against the random reason scorer, the reason confusion matrix, and a
  filmstrip of frames with map, mask, boxes and reasons.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xeval._io import atomic_write_bytes, atomic_write_text
from xeval.reports.page import markdown_page

__all__ = ["write_video_report", "video_verdicts"]

MIN_ANOMALOUS_FRAMES = 10
"""Fewer anomalous test frames than this: every verdict is 'insufficient evidence'."""
MIN_VIDEOS = 2


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _fmt(v: float, d: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


# ------------------------------------------------------------------------ verdicts
def video_verdicts(
    results: pd.DataFrame, manifest: dict, replicates: dict | None = None
) -> pd.DataFrame:
    """Per detector, real explainer and metric, against every control with a defined
    value (a control cannot win by being undefined):

    - ``beats``: for every control, the paired difference (method - control, signed so
      that positive is better) exceeds ``1.96`` delete-a-group jackknife standard errors
      of that difference (the same video groups left out of both);
    - ``loses``: for some control the difference is below ``-1.96`` standard errors;
    - ``ties``: otherwise (the difference is within the uncertainty);
    - ``inconclusive``: no standard error (fewer than two finite jackknife replicates);
    - ``insufficient evidence``: fewer than :data:`MIN_ANOMALOUS_FRAMES` anomalous frames
      or :data:`MIN_VIDEOS` test videos; ``undefined``: the method's value is NaN.

    ``replicates``: ``{(detector, explainer, label): jackknife replicate values}``."""
    from xeval.engine.video import Z95, jackknife_se

    replicates = replicates or {}
    info = manifest.get("dataset", {})
    thin = (
        info.get("anomalous_test_frames", 0) < MIN_ANOMALOUS_FRAMES
        or info.get("test_videos", 0) < MIN_VIDEOS
    )
    out = []
    for (det, label), g in results.groupby(["detector", "label"], sort=False):
        ctrl = g[g["control"].astype(bool)]
        ctrl = ctrl[np.isfinite(ctrl["value"].astype(float))]
        hib = bool(g["higher_is_better"].iloc[0])
        sign = 1.0 if hib else -1.0
        for _, r in g[~g["control"].astype(bool)].iterrows():
            v = float(r["value"])
            best, best_name, worst_z = math.nan, "", math.inf
            comparisons = []
            for _, c in ctrl.iterrows():
                d = sign * (v - float(c["value"]))
                rm = replicates.get((det, r["explainer"], label))
                rc = replicates.get((det, c["explainer"], label))
                se = math.nan
                if rm is not None and rc is not None and len(rm) == len(rc):
                    se = jackknife_se(sign * (np.asarray(rm) - np.asarray(rc)))
                comparisons.append((d, se, c["explainer"], float(c["value"])))
            if comparisons:
                d0, _, best_name, best = min(comparisons, key=lambda x: x[0])
            if thin:
                verdict = "insufficient evidence"
            elif not math.isfinite(v):
                verdict = "undefined"
            elif not comparisons:
                verdict = "no control"
            elif any(d + Z95 * se < 0 for d, se, _, _ in comparisons if math.isfinite(se)):
                verdict = "loses"
            elif any(not math.isfinite(se) for _, se, _, _ in comparisons):
                verdict = "inconclusive"
            elif all(d - Z95 * se > 0 for d, se, _, _ in comparisons):
                verdict = "beats"
            else:
                verdict = "ties"
            for d, se, _, _ in comparisons:
                if math.isfinite(se) and se > 0:
                    worst_z = min(worst_z, d / se)
            out.append(
                {
                    "detector": det,
                    "explainer": r["explainer"],
                    "metric": label,
                    "family": r["family"],
                    "value": v,
                    "best_control": best_name,
                    "best_control_value": best,
                    "min_z": worst_z if math.isfinite(worst_z) else math.nan,
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(out)


def conclusion(results: pd.DataFrame, verdicts: pd.DataFrame, manifest: dict) -> list[str]:
    """Plain sentences: what each detector's explanations are worth, per family."""
    info = manifest.get("dataset", {})
    lines = [
        f"Test set: {info.get('test_videos')} videos, {info.get('test_frames')} frames, "
        f"{info.get('anomalous_test_frames')} anomalous."
    ]
    if verdicts.empty:
        return lines + ["No real explainer was evaluated."]
    if (verdicts["verdict"] == "insufficient evidence").all():
        return lines + [
            f"Too little evidence for any verdict (fewer than {MIN_ANOMALOUS_FRAMES} anomalous "
            f"frames or {MIN_VIDEOS} test videos)."
        ]
    for (det, exp), g in verdicts.groupby(["detector", "explainer"], sort=False):
        by_fam = []
        for fam, gf in g.groupby("family", sort=False):
            beats = gf[gf["verdict"] == "beats"]["metric"].tolist()
            loses = gf[gf["verdict"] == "loses"]["metric"].tolist()
            ties = gf[gf["verdict"].isin(["ties", "inconclusive"])]["metric"].tolist()
            part = f"{fam}: clearly beats every control on {len(beats)} of {len(gf)} metrics"
            if ties:
                part += f"; not distinguishable from a control on {', '.join(ties)}"
            if loses:
                part += f"; a control is clearly better on {', '.join(loses)}"
            by_fam.append(part)
        lines.append(f"**{det} / {exp}** — " + "; ".join(by_fam) + ".")
    return lines


# ------------------------------------------------------------------------- figures
def _frame_roc_figure(per_frame: pd.DataFrame, det: str) -> Figure | None:
    from sklearn.metrics import roc_auc_score, roc_curve

    sel = per_frame[(per_frame["detector"] == det) & (per_frame["explainer"] == "native")]
    if sel.empty or sel["label"].nunique() < 2:
        return None
    fig = Figure(figsize=(5.2, 4.4))
    ax = fig.add_subplot()
    for vid, g in sel.groupby("video", sort=False):
        if g["label"].nunique() == 2:
            fpr, tpr, _ = roc_curve(g["label"], g["score"])
            ax.plot(
                fpr,
                tpr,
                lw=0.8,
                alpha=0.55,
                label=f"{vid} ({roc_auc_score(g['label'], g['score']):.2f})",
            )
    fpr, tpr, _ = roc_curve(sel["label"], sel["score"])
    auc = roc_auc_score(sel["label"], sel["score"])
    ax.plot(fpr, tpr, color="black", lw=2.2, label=f"pooled, micro ({auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.set(
        xlabel="false positive rate (frames)",
        ylabel="true positive rate",
        title=f"{det}: frame ROC",
    )
    ax.legend(fontsize=6.5, loc="lower right")
    return fig


def _curve_figure(
    curves: pd.DataFrame, det: str, kind: str, title: str, fpr_max: float = 1.0
) -> Figure | None:
    sel = curves[(curves["detector"] == det) & (curves["kind"] == kind)] if len(curves) else curves
    if sel is None or sel.empty:
        return None
    fig = Figure(figsize=(5.2, 4.0))
    ax = fig.add_subplot()
    dashes = iter(["--", ":", "-.", (0, (5, 1, 1, 1))] * 4)
    for _, r in sel.iterrows():
        x, y = json.loads(r["x"]), json.loads(r["y"])
        ctrl = bool(r["control"])
        ax.plot(
            x,
            y,
            ls=next(dashes) if ctrl else "-",
            color="grey" if ctrl else None,
            lw=1.0 if ctrl else 1.8,
            label=f"{r['explainer']}{' (control)' if ctrl else ''}",
        )
    ax.set(xlabel="false positives per frame", ylabel="detection rate", title=f"{det}: {title}")
    ax.set_xlim(0, fpr_max)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    return fig


def _reason_bars(names: list[str], ap_by_method: dict[str, np.ndarray], title: str) -> Figure:
    k = len(ap_by_method)
    fig = Figure(figsize=(max(5.0, 0.9 * len(names) + 2), 3.8))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    w = 0.8 / max(k, 1)
    for i, (m, ap) in enumerate(ap_by_method.items()):
        ctrl = "(control)" in m
        ax.bar(
            x + i * w - 0.4 + w / 2,
            np.nan_to_num(ap, nan=0.0),
            w,
            label=m,
            color="lightgrey" if ctrl else None,
            hatch="///" if ctrl else "",
            edgecolor="grey" if ctrl else None,
        )
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="average precision", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=7)
    return fig


def _confusion_figure(names: list[str], conf: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(0.7 * len(names) + 2.5, 0.6 * len(names) + 2))
    ax = fig.add_subplot()
    rows = conf.sum(axis=1, keepdims=True)
    share = np.divide(conf, rows, out=np.zeros_like(conf, dtype=float), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if conf[i, j]:
                ax.text(
                    j,
                    i,
                    int(conf[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="top-1 predicted reason", ylabel="true reason", title=title)
    return fig


def _filmstrip_figure(res, ds, det: str) -> Figure | None:
    film = res.extras.get("filmstrip", {}).get((det, "native"))
    picks = [(vid, f) for vid, fs in res.extras.get("filmstrip_frames", {}).items() for f in fs]
    if not film or not picks:
        return None
    videos = {v.video_id: v for v in ds.test}
    names = ds.vocabulary.fine if ds.vocabulary else ()
    fig = Figure(figsize=(2.3 * len(picks), 5.4))
    for j, (vid, f) in enumerate(picks):
        v = videos[vid]
        item = film.get((vid, f))
        frame = v.frames(f, f + 1)[0]
        ax = fig.add_subplot(2, len(picks), j + 1)
        ax.imshow(frame.squeeze(), cmap="gray" if frame.shape[-1] == 1 else None)
        mask = v.masks(f, f + 1)
        if mask is not None and mask[0].any():
            ax.contour(mask[0], levels=[0.5], colors="lime", linewidths=0.8)
        for r in np.asarray(v.regions if v.regions is not None else np.zeros((0, 6))):
            if int(r[0]) == f:
                ax.add_patch(
                    Rectangle((r[2], r[3]), r[4] - r[2], r[5] - r[3], fill=False, ec="lime", lw=0.8)
                )
        true = "; ".join(fn for _, fn in (v.reasons or {}).get(f, ())) or "normal"
        ax.set_title(f"{vid} #{f}\ntrue: {true}", fontsize=6.5)
        ax.axis("off")
        ax2 = fig.add_subplot(2, len(picks), len(picks) + j + 1)
        if item is not None:
            ax2.imshow(item["map"], cmap="inferno")
            sub = f"score {item['score']:.2f}"
            if item["reasons"] is not None and len(names):
                top = int(np.argmax(item["reasons"]))
                sub += f"\ntop reason: {names[top][1]}"
            if item["boxes"] is not None:
                sy = item["map"].shape[0] / v.frame_size[0]
                sx = item["map"].shape[1] / v.frame_size[1]
                for b in np.asarray(item["boxes"]).reshape(-1, 5)[:5]:
                    ax2.add_patch(
                        Rectangle(
                            (b[0] * sx, b[1] * sy),
                            (b[2] - b[0]) * sx,
                            (b[3] - b[1]) * sy,
                            fill=False,
                            ec="cyan",
                            lw=0.7,
                        )
                    )
            ax2.set_title(sub, fontsize=6.5)
        ax2.axis("off")
    fig.suptitle(
        f"{det}: frames (mask/tracks in green), native map (detected boxes in cyan)", fontsize=8
    )
    return fig


# --------------------------------------------------------------------------- write
def _reason_sections(res, ds, out: Path, figures: dict) -> tuple[list[str], dict]:
    from xeval.metrics.reasons import coarse_labels, coarse_scores, reason_ap, reason_confusion

    scores = res.extras.get("reason_scores", {})
    if not scores or ds.vocabulary is None:
        return [], {}
    voc = ds.vocabulary
    cm = voc.coarse_matrix()
    md: list[str] = ["## Reasons (X-MAN)", ""]
    md.append(
        "Per-reason average precision over the frames labelled anomalous (X-MAN lists "
        "reasons for anomalous frames only), fine and coarse level; the random reason "
        "scorer is the control. Confusion: for each true reason, which reason the "
        "method ranks first."
    )
    md.append("")
    tables = {}
    # detectors whose own explanation scores reasons (the random scorer alone is no audit)
    for det in dict.fromkeys(k[0] for k in scores if k[1] == "native"):
        fine_ap, coarse_ap = {}, {}
        for (d, exp), (yt, ys, lab) in scores.items():
            if d != det:
                continue
            ctrl = exp != "native" and exp in ("random",)
            tag = f"{exp} (control)" if ctrl else exp
            yt_a, ys_a = yt[lab], ys[lab]
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fine_ap[tag] = reason_ap(yt_a, ys_a)
                    coarse_ap[tag] = reason_ap(coarse_labels(yt_a, cm), coarse_scores(ys_a, cm))
            if exp == "native":
                conf = np.asarray(reason_confusion(yt_a, ys_a))
                fig = _confusion_figure([n[1] for n in voc.fine], conf, f"{det}: reason confusion")
                figures[f"confusion_{det}"] = _save(fig, out / "figures" / f"confusion_{det}.png")
                pairs = []
                for i in range(len(voc.fine)):
                    total = conf[i].sum()
                    for j in np.argsort(-conf[i]):
                        if j != i and conf[i, j] > 0:
                            pairs.append(
                                (
                                    conf[i, j] / total,
                                    voc.fine[i][1],
                                    voc.fine[j][1],
                                    int(conf[i, j]),
                                    int(total),
                                )
                            )
                            break
                pairs.sort(reverse=True)
                if pairs:
                    md.append(
                        f"**{det}** confuses most: "
                        + "; ".join(
                            f"*{a}* taken for *{b}* in {k} of {n} frames"
                            for _, a, b, k, n in pairs[:4]
                        )
                        + "."
                    )
                    md.append("")
        fig = _reason_bars([n[1] for n in voc.fine], fine_ap, f"{det}: per-reason AP (fine)")
        figures[f"reason_ap_fine_{det}"] = _save(fig, out / "figures" / f"reason_ap_fine_{det}.png")
        fig = _reason_bars(list(voc.coarse), coarse_ap, f"{det}: per-reason AP (coarse)")
        figures[f"reason_ap_coarse_{det}"] = _save(
            fig, out / "figures" / f"reason_ap_coarse_{det}.png"
        )
        head = "| reason | " + " | ".join(fine_ap) + " |"
        md += [f"### {det}: per-reason AP (fine)", "", head, "|" + "---|" * (len(fine_ap) + 1)]
        for i, n in enumerate(voc.names):
            md.append(
                f"| {n} | " + " | ".join(_fmt(float(ap[i])) for ap in fine_ap.values()) + " |"
            )
        md.append("")
        tables[det] = (fine_ap, coarse_ap)
    return md, tables


#: How the summary groups metrics (by the ``family`` column; other families follow).
SUMMARY_GROUPS = (
    (
        "Frame level (is the frame anomalous?)",
        lambda r: r["family"] == "video" and r["metric"].startswith("frame_"),
    ),
    (
        "Pixel, region and track level (where?)",
        lambda r: (
            r["family"] == "localisation"
            or (r["family"] == "video" and not r["metric"].startswith("frame_"))
        ),
    ),
    ("Reasons (why?)", lambda r: r["family"] == "reasons"),
)


def _summary_table(results: pd.DataFrame, verdicts: pd.DataFrame) -> list[str]:
    """One table per group of :data:`SUMMARY_GROUPS` (a row per detector and explainer,
    a column per metric, value and jackknife CI)."""
    vmap = {(r.detector, r.explainer, r.metric): r.verdict for r in verdicts.itertuples()}
    md: list[str] = []
    taken = pd.Series(False, index=results.index)
    groups = [(t, results.apply(f, axis=1)) for t, f in SUMMARY_GROUPS]
    for _, sel in groups:
        taken |= sel
    if (~taken).any():
        groups.append(("Other metrics", ~taken))
    for title, sel in groups:
        part = results[sel]
        if part.empty:
            continue
        labels = list(dict.fromkeys(part["label"]))
        arrows = {
            lab: "↑" if bool(part[part["label"] == lab]["higher_is_better"].iloc[0]) else "↓"
            for lab in labels
        }
        md += [f"### {title}", ""]
        md.append(
            "| detector | explainer | " + " | ".join(f"{x} {arrows[x]}" for x in labels) + " |"
        )
        md.append("|" + "---|" * (len(labels) + 2))
        real = set(part[~part["control"].astype(bool)]["detector"])
        for (det, exp), g in part.groupby(["detector", "explainer"], sort=False):
            if det not in real:  # only controls: nothing of this detector's to compare
                continue
            ctrl = bool(g["control"].iloc[0])
            cells = []
            for lab in labels:
                r = g[g["label"] == lab]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                c = _fmt(float(r["value"]))
                if math.isfinite(float(r["ci_low"])):
                    c += f" [{_fmt(float(r['ci_low']), 2)}, {_fmt(float(r['ci_high']), 2)}]"
                vd = vmap.get((det, exp, lab))
                if vd == "beats":
                    c = f"**{c}**"
                elif vd == "loses":
                    c += " ✗"
                cells.append(c)
            md.append(
                f"| {det} | {exp}{' (control)' if ctrl else ''} | " + " | ".join(cells) + " |"
            )
        md.append("")
    md += [
        "Bold: clearly beats every control on that metric (paired difference > 1.96 "
        "jackknife standard errors over videos); ✗: a control is clearly better; plain: "
        "not distinguishable from the best control with this many videos. Brackets: 95% "
        "jackknife CI over videos. Controls are listed for reference; a control never "
        "counts as a method.",
    ]
    return md


def _md_text(text: object) -> str:
    """Free text from data (paths, conventions) for the markdown: ``*`` escaped."""
    return str(text).replace("*", "\\*")


def write_video_report(res, ds, cfg, *, verdicts: pd.DataFrame | None = None) -> dict:
    """Write ``results.md``, ``verdicts.csv``, ``index.html`` and ``figures/`` into the
    run's folder; returns the paths written. ``verdicts``: the run's verdicts table
    (``xeval report`` passes the one the run wrote); default: computed by
    :func:`video_verdicts` from the results and the jackknife replicates."""
    out = Path(res.out_dir)
    # drawn from the manifest as manifest.json holds it (keys sorted), so that
    # `xeval report` rebuilds the same text from the file
    manifest = json.loads(json.dumps(res.manifest, sort_keys=True, default=str))
    results = res.results
    if verdicts is None:
        verdicts = video_verdicts(results, manifest, res.extras.get("replicates"))
    files = {"verdicts": atomic_write_text(out / "verdicts.csv", verdicts.to_csv(index=False))}
    figures: dict[str, Path] = {}
    dets = list(dict.fromkeys(results["detector"]))
    if cfg.report.figures:
        for det in dets:
            fig = _frame_roc_figure(res.per_frame, det)
            if fig is not None:
                figures[f"frame_roc_{det}"] = _save(fig, out / "figures" / f"frame_roc_{det}.png")
            for kind, title in (("rbdc", "RBDC curve"), ("tbdc", "TBDC curve")):
                fig = _curve_figure(res.curves, det, kind, title)
                if fig is not None:
                    figures[f"{kind}_{det}"] = _save(fig, out / "figures" / f"{kind}_{det}.png")
    reason_md, _ = _reason_sections(res, ds, out, figures) if cfg.report.figures else ([], {})
    if cfg.report.filmstrip:
        for det in dets:
            fig = _filmstrip_figure(res, ds, det)
            if fig is not None:
                figures[f"filmstrip_{det}"] = _save(fig, out / "figures" / f"filmstrip_{det}.png")

    info = manifest["dataset"]
    md = [f"# xeval video audit: {cfg.name}", ""]
    md.append(
        f"Dataset **{info['name']}**: {info['train_videos']} normal training videos, "
        f"{info['test_videos']} test videos, {info['test_frames']} test frames of which "
        f"{info['anomalous_test_frames']} anomalous."
    )
    if info.get("reasons"):
        md.append(f"Reason vocabulary (from the label file): {', '.join(info['reasons'])}.")
    md += ["", "## Conclusion", ""]
    md += [f"- {s}" for s in conclusion(results, verdicts, manifest)]
    md += ["", "## Summary", ""]
    md += _summary_table(results, verdicts)
    md += ["", "## Conventions", ""]
    for k, v in manifest["conventions"].items():
        if k == "metrics":
            for lab, d in v.items():
                md.append(f"- `{lab}` {json.dumps(d['params'])}: {_md_text(d['note'] or '—')}")
        elif isinstance(v, dict):
            for kk, vv in v.items():
                md.append(f"- dataset {kk}: {_md_text(vv)}")
        else:
            md.append(f"- {k}: {_md_text(v)}")
    md.append("")
    md += reason_md
    if figures:
        md += ["## Figures", ""] + [f"![{k}]({p.relative_to(out)})" for k, p in figures.items()]
    text = "\n".join(md) + "\n"
    files["markdown"] = atomic_write_text(out / "results.md", text)
    files["html"] = atomic_write_text(
        out / "index.html",
        markdown_page(text, figures, out, title="xeval video audit", caption=_caption),
    )
    files.update({f"figure:{k}": p for k, p in figures.items()})
    return files


CAPTIONS = {
    "frame_roc": "Frame ROC of the detector's own scores: one thin line per test video "
    "(its AUROC in the legend; videos with one class have none) and the pooled (micro) "
    "curve in black.",
    "rbdc": "RBDC curve (Ramachandra & Jones 2020): region detection rate against false "
    "positives per frame, one point per detection score; controls dashed in grey.",
    "tbdc": "TBDC curve: track detection rate (a track is detected when at least alpha of "
    "its regions are) against false positives per frame; controls dashed in grey.",
    "reason_ap_fine": "Average precision of each fine reason over the anomalous frames: "
    "the detector's reason scores against the random reason scorer (hatched).",
    "reason_ap_coarse": "Average precision of each coarse reason class (a class scores "
    "the maximum of its fine reasons).",
    "confusion": "Reason confusion: for each true reason (row), the reason the detector "
    "ranks first (column), counted over anomalous frames; shading = share of the row.",
    "filmstrip": "Frames chosen from the labels only (one per anomalous segment, as many "
    "reasons as possible, and one normal frame): frame with ground-truth mask and tracks "
    "(green) and true reasons; below, the detector's map with its boxes (cyan), frame "
    "score and top reason.",
}


def _caption(key: str) -> str:
    for prefix in sorted(CAPTIONS, key=len, reverse=True):
        if key.startswith(prefix + "_"):
            return f"{key[len(prefix) + 1 :]}: {CAPTIONS[prefix]}"
    return key
