"""Phase 5 -- probes: metrics of the ``probe`` stage (robustness, randomisation), run
once per explainer on their whole subset of test images after the stream, with an
explanation function they can call on perturbed images or a randomised detector."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

from xeval.adapters.base import Detector
from xeval.data.loader import iter_batches
from xeval.data.sample import Sample
from xeval.engine.evaluate import MetricStates
from xeval.engine.explain import checked_predict, explain_record, explanation_fn
from xeval.errors import UndefinedMetricWarning
from xeval.explainers.base import Explainer
from xeval.metrics.base import Metric
from xeval.progress import progress

__all__ = ["run_probes"]


def run_probes(
    det: Detector,
    explainers: list[Explainer],
    metrics: list[Metric],
    samples: list[Sample],
    states: dict[str, MetricStates],
    *,
    category: str,
    calibration: dict,
    subsets: dict[str, list[str]],
    probe_for: Callable[[Explainer, list[str]], object],
) -> float:
    """Update the probe-stage states in ``states``; returns the seconds it took."""
    t = time.perf_counter()
    by_id = {s.id: s for s in samples}
    groups: dict[tuple, list[str]] = {}
    for m in metrics:
        if m.stage == "probe":
            ids = subsets.get(m.label) if m.subset else [s.id for s in samples]
            groups.setdefault(tuple(ids), []).append(m.label)
    for ids, labels in groups.items():
        if not ids:
            continue
        picks = [by_id[i] for i in ids]
        rec = next(
            iter_batches(
                picks,
                batch_size=len(picks),
                image_size=tuple(det.input_size),
                with_masks=True,
                category=category,
            )
        )
        scores, dmaps = checked_predict(det, rec.inputs.images)
        for e in progress(explainers, desc=f"{category}/{det.name} {', '.join(labels)}"):
            probe = probe_for(e, list(ids))
            probe.explain_fn = explanation_fn(
                e, category=category, ids=list(ids), images=rec.inputs.images
            )
            expl = explain_record(
                e, det, rec, scores, dmaps, calibration=calibration[e.name], probe=probe
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                states[e.name].update(rec, expl, stage="probe", subsets=subsets, only=set(labels))
    return time.perf_counter() - t
