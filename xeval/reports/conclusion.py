"""A plain conclusion per detector, generated from the verdicts: which explanation to
trust for localisation and for faithfulness, on which evidence, and where the evidence
is inconclusive -- one sentence per audit family.

Rules (per detector and family, over the explainers that are not controls):

- an explainer's *support* is the number of the family's metrics on which it beats
  every comparator (sanity: on which it passes its threshold);
- the family's conclusion names the explainer with the most support (ties: both), the
  metrics it rests on, and how many metrics were measured;
- no support at all: if every verdict lacks evidence, the family is *inconclusive*
  (with the reason); otherwise no explainer is worth trusting there.
"""

from __future__ import annotations

import pandas as pd

from xeval.reports.data import display_frame

__all__ = [
    "CAVEATS",
    "FAMILIES",
    "conclusions",
    "grouped_caveats",
    "metric_caveats",
    "verdict_caveats",
]

FAMILIES = ("localisation", "faithfulness", "robustness", "sanity")
_GOOD = {"beats", "passes"}
_WHAT = {
    "localisation": "to locate defects",
    "faithfulness": "as evidence of what drives the anomaly score",
    "robustness": "as stable under small input noise",
    "sanity": "as depending on what the detector learned",
}


def _names(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _families(results: pd.DataFrame) -> dict[str, str]:
    shown = display_frame(results)
    return dict(zip(shown["metric"].astype(str), shown["family"].astype(str), strict=False))


def conclusions(verdicts: pd.DataFrame | None, results: pd.DataFrame) -> dict[str, list[str]]:
    """``{detector: [sentence per family]}`` (see the module docstring)."""
    if verdicts is None or len(verdicts) == 0:
        return {}
    overall = verdicts[verdicts["control"] == "all controls"].copy()
    fam = _families(results)
    overall["family"] = overall["metric"].map(lambda m: fam.get(m, "other"))
    out: dict[str, list[str]] = {}
    for det, d in overall.groupby("detector", sort=False):
        lines = []
        for family in FAMILIES:
            part = d[d["family"] == family]
            if part.empty:
                continue
            n_metrics = part["metric"].nunique()
            support = (
                part[part["verdict"].isin(_GOOD)].groupby("explainer", sort=False)["metric"]
                .agg(list)
            )  # fmt: skip
            what = _WHAT[family]
            title = family.capitalize()
            if support.empty:
                states = set(part["verdict"])
                if states <= {"insufficient evidence", "undefined"}:
                    lines.append(
                        f"{title}: inconclusive -- too few images with a defined value for "
                        f"a verdict (at least 10 paired images are needed); add images or "
                        f"raise max_images."
                    )
                elif states <= {"insufficient evidence", "undefined", "inconclusive", "ties"}:
                    lines.append(
                        f"{title}: inconclusive -- no explainer separates from the "
                        f"references on {'the' if n_metrics == 1 else f'any of the {n_metrics}'} "
                        f"metric{'s' if n_metrics > 1 else ''} (ties, or confidence "
                        "intervals that straddle the threshold)."
                    )
                else:
                    lines.append(
                        f"{title}: no explainer is worth trusting {what} -- none does "
                        f"better than the trivial references on any of the {n_metrics} "
                        "metrics."
                    )
                continue
            best = max(len(v) for v in support)
            winners = [e for e, v in support.items() if len(v) == best]
            metrics = ", ".join(support[winners[0]])
            who = _names(winners)
            each = "each " if len(winners) > 1 else ""
            verb = "passes" if family == "sanity" else "beats every reference on"
            lines.append(
                f"{title}: trust {who} {what} -- {each}{verb} {best} of {n_metrics} "
                f"metric{'s' if n_metrics > 1 else ''} ({metrics})."
                + (
                    ""
                    if best == n_metrics
                    else " The other metrics tie, lose or lack evidence (see the verdicts)."
                )
            )
        out[str(det)] = lines
    return out


# --------------------------------------------------------------------------- caveats

SMALL_N = 30
"""Fewer paired images than this: the verdict's interval is wide (said next to it)."""

CAVEATS: dict[str, str] = {
    "localisation": (
        "'beats' means better than a random map, an edge (Sobel) map and a centre prior on "
        "the same images, not that the map localises defects well in absolute terms"
    ),
    "faithfulness": (
        "the score depends on the normal content pixels are replaced with (see the note) "
        "and on the seeded subset of images; an explanation can be faithful to a detector "
        "that is itself wrong"
    ),
    "robustness": (
        "an input-independent map (the centre prior, a constant map) is perfectly stable, "
        "so stability alone never shows an explanation is right; a map can be stable and "
        "wrong: read it with localisation and faithfulness"
    ),
    "sanity": (
        "passing shows the map changes when the detector's weights are randomised (it "
        "depends on what was learned), not that it is correct; the controls ignore the "
        "detector and are no comparators here"
    ),
    "complexity": "a sparser or lower-entropy map is not a more correct one",
}
"""What a verdict of each audit family does not say (family -> caveat)."""

OPTIMISTIC = (
    "the threshold is tuned on the test set (oracle): the value is optimistic, an upper bound"
)
TIES = "'ties' means the 95% interval of the difference contains 0, not that they are equivalent"


def verdict_caveats(verdicts: pd.DataFrame | None, results: pd.DataFrame) -> dict[str, list[str]]:
    """``{metric: [caveat, ...]}``: where each metric's verdicts can mislead.

    From the metric's audit family (:data:`CAVEATS`), an oracle threshold (a label or
    note saying ``oracle`` / ``optimistic``), a verdict ``ties`` (:data:`TIES`), and few
    paired images (fewer than :data:`SMALL_N`: wide intervals; fewer than 10: no
    verdict at all)."""
    if verdicts is None or len(verdicts) == 0:
        return {}
    shown = display_frame(results)
    fam = dict(zip(shown["metric"].astype(str), shown["family"].astype(str), strict=False))
    notes = shown.groupby("metric")["note"].agg(lambda s: " ".join(map(str, s.dropna())))
    out: dict[str, list[str]] = {}
    for metric, rows in verdicts.groupby("metric", sort=False):
        items = metric_caveats(
            str(metric), family=fam.get(str(metric), ""), notes=notes.get(metric, ""), rows=rows
        )
        if items:
            out[str(metric)] = items
    return out


def grouped_caveats(found: dict[str, list[str]]) -> list[tuple[list[str], list[str]]]:
    """:func:`verdict_caveats` with the metrics that share the same caveats together:
    ``[(metrics, caveats), ...]`` in order of first appearance."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for metric, items in found.items():
        groups.setdefault(tuple(items), []).append(metric)
    return [(metrics, list(items)) for items, metrics in groups.items()]


def metric_caveats(metric: str, *, family: str, notes: str, rows: pd.DataFrame) -> list[str]:
    """The caveats of one metric's verdict rows (see :func:`verdict_caveats`)."""
    items = []
    if family in CAVEATS:
        items.append(CAVEATS[family])
    text = f"{metric} {notes}".lower()
    if "oracle" in text or "optimistic" in text:
        items.append(OPTIMISTIC)
    overall = rows[rows["control"] == "all controls"]
    if (overall["verdict"] == "ties").any():
        items.append(TIES)
    n = pd.to_numeric(rows.loc[rows["control"] != "all controls", "n"], errors="coerce")
    n = n[n > 0]
    if len(n) and n.min() < SMALL_N:
        items.append(
            f"few paired images (n = {int(n.min())}"
            + (f" to {int(n.max())}" if n.max() != n.min() else "")
            + "): wide intervals, a few images can change the verdict"
        )
    return items
