"""Phase 4 -- evaluate: one streaming pass over the test set.

The detector predicts (score, map) once per batch; each explainer explains once; the
maps are upsampled to each mask's native size and every metric's state is updated
(metrics of one compute group share one state). Nothing holds all maps in memory but
the states that need every score (exact pixel ranking) and the per-image summaries of
pooled metrics (:meth:`MetricStates.finished_summaries`, for their image bootstrap).
Metrics of the ``probe`` stage are run afterwards (:mod:`xeval.engine.probes`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import numpy as np

from xeval.adapters.base import Detector
from xeval.data.loader import iter_batches
from xeval.data.sample import Sample
from xeval.engine.explain import checked_predict, explain_record
from xeval.errors import UndefinedMetricWarning
from xeval.explainers.base import Explainer
from xeval.metrics._validation import check_float32_safe
from xeval.metrics.base import Explanation, Metric, MetricValue, check_aligned
from xeval.progress import progress
from xeval.record import Record

__all__ = ["MetricStates", "stream"]


class MetricStates:
    """The metric states of one explainer in one unit: one state per compute group.

    With ``summaries=True``, also one per-image summary collector per
    :meth:`~xeval.metrics.base.Metric.summary_key` of the stream metrics (pooled
    metrics' image bootstrap), updated with every record of the stream."""

    def __init__(self, metrics: list[Metric], *, summaries: bool = False) -> None:
        self.metrics = list(metrics)
        self.key_of: list[tuple] = []
        self.states: dict[tuple, object] = {}
        self.leader: dict[tuple, Metric] = {}
        self.with_summaries = bool(summaries)
        self.summaries: dict[str, object] = {}
        self.summary_leader: dict[str, Metric] = {}
        for m in self.metrics:
            shared = m.shares()
            key = ("own", m.label) if shared is None or m.subset else ("shared", shared)
            self.key_of.append(key)
            if key not in self.states:
                self.states[key] = m.init()
                self.leader[key] = m
            skey = m.summary_key() if summaries and m.stage == "stream" and not m.subset else None
            if skey is not None and skey not in self.summaries:
                self.summaries[skey] = m.init_summary()
                self.summary_leader[skey] = m

    def update(
        self,
        record: Record,
        explanation: Explanation,
        *,
        stage: str,
        subsets: dict[str, list[str]],
        only: set[str] | None = None,
    ) -> None:
        """Update the states of the metrics of ``stage`` (subset metrics: the rows of
        their subset only; ``only``: these metric labels only). The explanation must
        hold one map and score per sample of ``record``, whose ids are distinct."""
        check_aligned(record, explanation, explanation.explainer, what="explainer")
        for key, m in self.leader.items():
            if m.stage != stage or (only is not None and m.label not in only):
                continue
            rec, expl = record, explanation
            if m.subset:
                wanted = set(subsets.get(m.label, ()))
                idx = [i for i, sid in enumerate(record.ids) if sid in wanted]
                if not idx:
                    continue
                if len(idx) < len(record):
                    rec, expl = record.subset(idx), explanation.subset(idx)
            self.states[key] = m.update(self.states[key], rec, expl)
        if only is None:
            for skey, m in self.summary_leader.items():
                if m.stage == stage:
                    self.summaries[skey] = m.update_summary(
                        self.summaries[skey], record, explanation
                    )

    def merge(self, other: MetricStates) -> MetricStates:
        out = MetricStates(self.metrics, summaries=self.with_summaries)
        for key, m in self.leader.items():
            out.states[key] = m.merge(self.states[key], other.states[key])
        for skey in self.summary_leader:
            out.summaries[skey] = self.summaries[skey].merge(other.summaries[skey])
        return out

    def finished_summaries(self) -> dict[str, object]:
        """The per-image summaries (``finish()`` of each collector), by summary key."""
        return {skey: c.finish() for skey, c in self.summaries.items()}

    def state_of(self, i: int):
        return self.states[self.key_of[i]]

    def compute(self, i: int) -> MetricValue:
        return self.metrics[i].compute(self.state_of(i))


def stream(
    det: Detector,
    explainers: list[Explainer],
    metrics: list[Metric],
    samples: list[Sample],
    *,
    batch_size: int,
    category: str,
    calibration: dict,
    subsets: dict[str, list[str]],
    probe_for: Callable[[Explainer], object],
) -> tuple[dict[str, MetricStates], dict[str, dict[str, float]], float]:
    """``(states by explainer, image scores by explainer and id, seconds)``."""
    states = {e.name: MetricStates(metrics, summaries=True) for e in explainers}
    scores_by_id: dict[str, dict[str, float]] = {e.name: {} for e in explainers}
    probes = {e.name: probe_for(e) for e in explainers}
    t = time.perf_counter()
    batches = iter_batches(
        samples,
        batch_size=batch_size,
        image_size=tuple(det.input_size),
        with_masks=True,
        category=category,
    )
    n_batches = math.ceil(len(samples) / batch_size)
    for rec in progress(batches, total=n_batches, desc=f"{category}/{det.name} test"):
        scores, dmaps = checked_predict(det, rec.inputs.images)
        check_float32_safe(dmaps, f"detector {det.name!r}: the maps", rec.ids)
        for e in explainers:
            expl = explain_record(
                e, det, rec, scores, dmaps, calibration=calibration[e.name], probe=probes[e.name]
            )
            scores_by_id[e.name].update(zip(rec.ids, np.asarray(expl.scores).tolist(), strict=True))
            with warnings.catch_warnings():
                # constant maps (a flat control) are NaN by definition; the report says so
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                states[e.name].update(rec, expl, stage="stream", subsets=subsets)
    return states, scores_by_id, time.perf_counter() - t
