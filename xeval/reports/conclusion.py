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

__all__ = ["FAMILIES", "conclusions"]

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
