"""The metric interface every registered metric implements (torchmetrics-style states).

A metric is a small class registered in :data:`xeval.registry.METRICS`::

    @METRICS.register
    class PixelAUROC(Metric):
        '''Definition, direction, reference (the registry test checks these).'''
        name = "pixel_auroc"
        higher_is_better = True
        family = "localisation"

        def __init__(self, *, mode: Literal["exact", "binned"] = "exact"): ...
        def init(self): ...                                  # -> state S
        def update(self, state, record, explanation): ...    # -> S   (per batch / shard)
        def merge(self, a, b): ...                           # -> S   (associative, commutative)
        def compute(self, state): ...                        # -> MetricValue

Options are the keyword-only parameters of ``__init__`` (validated by the config check
against the signature, recorded in the results' ``params`` column). States are
picklable; for any split of the data ``compute(merge(update(A), update(B))) ==
compute(update(A + B))``.

What a metric reads
-------------------
``record.targets`` (labels, masks at native size, regions, reasons) -- the ground
truth that explainers never see -- and the :class:`Explanation` being evaluated: its
maps at the detector's resolution and at each mask's native size, its image scores,
thresholds calibrated on normal validation data, and, for metrics that query the
detector (faithfulness, robustness, sanity), a :class:`ProbeContext` with the detector,
an explanation function and normal reference images. Metrics never call models or
explainers other than through that context.

Stages
------
``stage = "stream"``: updated on every batch of the test set (or on the selected
subset's rows of each batch when ``subset = True``). ``stage = "probe"``: updated once,
after the stream, with the whole selected subset (robustness, randomisation: they
perturb or randomise the detector and are costly per call).

Compute groups
--------------
Metrics whose :meth:`Metric.shares` keys are equal share one state: the engine updates
it once per batch and each metric computes its own value from it (pixel AUROC, AUPR and
AUPRO sort the scores once).

Pooled resampling
-----------------
A metric pooled over a set (pixel AUROC, AUPR, AUPRO: one value, no per-image values)
may declare a per-image summary (:meth:`Metric.summary_key`, :meth:`Metric.init_summary`,
:meth:`Metric.update_summary`) from which :meth:`Metric.compute_weighted` recomputes it
on weighted sets of images: the engine collects the summaries during the stream and the
verdicts resample images (:func:`xeval.engine.verdicts.pooled_verdicts`).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from xeval.errors import InputError
from xeval.metrics._validation import (
    check_ids,
    exact_mean,
    extend_ids,
    merged_ids,
    undefined,
)

__all__ = [
    "FAMILIES",
    "check_aligned",
    "Explanation",
    "Metric",
    "MetricValue",
    "PerImageMetric",
    "PerImageState",
    "ProbeContext",
    "canonical_params",
]

FAMILIES = (
    "detection",
    "localisation",
    "faithfulness",
    "robustness",
    "sanity",
    "complexity",
    "video",
    "reasons",
    "influence",
)
"""Audit families a metric belongs to (the ``family`` column of the results)."""

STAGES = ("stream", "probe")


# ------------------------------------------------------------------------- context
@dataclass
class ProbeContext:
    """What metrics that query the detector receive (faithfulness, robustness, sanity).

    Attributes
    ----------
    detector:
        The fitted detector (metrics call ``score`` / ``predict`` on perturbed images).
    explain_fn:
        ``explain_fn(detector, images (n, C, H, W)) -> maps (n, H, W)``: this
        explanation's method applied to other images or another (randomised) detector.
    reference:
        Normal reference images ``(N, C, H, W)`` at the detector's input size (normal
        training images), for normal-content substrates; None when not prepared.
    normal_batches:
        A callable returning normal training images as a list of ``(B, C, H, W)``
        arrays (refits for the randomisation test), or None.
    seed:
        The run's seed.
    batch_size:
        The run's batch size (images per detector call).
    """

    detector: Any
    explain_fn: Callable[[Any, np.ndarray], np.ndarray] | None = None
    reference: np.ndarray | None = None
    normal_batches: Callable[[], list[np.ndarray]] | None = None
    seed: int = 0
    batch_size: int = 16


@dataclass
class Explanation:
    """One explainer's output on a record, as metrics see it.

    Attributes
    ----------
    explainer:
        The explainer's name.
    maps:
        ``(B, h, w)`` float32 at the detector's working resolution (as explained).
    native:
        Each map bilinearly resized to its sample's mask (native) size.
    scores:
        ``(B,)`` image-level scores of this explanation: the detector's score for its
        native map, the maximum of the map for any other explainer.
    control:
        True for the trivial controls (random, Sobel, centre prior).
    calibration:
        Values fitted on normal validation data, keyed by the request of
        :meth:`Metric.calibrations` (e.g. ``("normal_quantile", 0.99) -> threshold``).
    probe:
        For metrics that query the detector (see :class:`ProbeContext`).
    score_note:
        How :attr:`scores` were obtained (recorded in the results' notes).
    nonfinite:
        ``(B,)`` bool: the explainer returned NaN or inf for the image (its map is
        replaced by zeros, so metrics see a degenerate map; counted, never dropped).
    boxes:
        Video: per sample (frame) an ``(n, 5)`` float64 array of detections
        ``(x1, y1, x2, y2, score)`` in native pixel coordinates, or None (region metrics
        then derive boxes from the native maps with
        :func:`xeval.metrics.regions_from_maps`).
    reasons:
        Video: ``(B, R)`` float64 reason scores (higher = the reason is more likely),
        columns in the order of :attr:`reason_names` ``((coarse, fine), ...)``; None for
        explainers without reasons.
    """

    explainer: str
    maps: np.ndarray
    native: list[np.ndarray]
    scores: np.ndarray
    control: bool = False
    calibration: Mapping[tuple, Any] = field(default_factory=dict)
    probe: ProbeContext | None = None
    score_note: str = ""
    nonfinite: np.ndarray | None = None
    boxes: list[np.ndarray] | None = None
    reasons: np.ndarray | None = None
    reason_names: tuple[tuple[str, str], ...] = ()

    def subset(self, idx: Sequence[int] | np.ndarray) -> Explanation:
        idx = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            maps=self.maps[idx],
            native=[self.native[i] for i in idx],
            scores=np.asarray(self.scores)[idx],
            nonfinite=None if self.nonfinite is None else np.asarray(self.nonfinite)[idx],
            boxes=None if self.boxes is None else [self.boxes[i] for i in idx],
            reasons=None if self.reasons is None else np.asarray(self.reasons)[idx],
        )

    def degenerate(self) -> list[str | None]:
        """Per image: ``"non-finite"``, ``"all zero"``, ``"constant"`` or None (a map
        with some variation)."""
        out: list[str | None] = []
        for i, m in enumerate(self.maps):
            if self.nonfinite is not None and self.nonfinite[i]:
                out.append("non-finite")
            elif not np.any(m):
                out.append("all zero")
            elif float(np.max(m)) == float(np.min(m)):
                out.append("constant")
            else:
                out.append(None)
        return out


@dataclass
class MetricValue:
    """What :meth:`Metric.compute` returns.

    ``value`` is NaN where undefined (a warning says why); ``n`` the number of images it
    rests on; ``per_image`` / ``ids`` the per-image values in update order (NaN where
    undefined) for CIs and paired tests; ``curves`` plotting curves by kind (``"roc"``,
    ``"pro"``, ``"image_roc"``...) as ``(x, y)``.
    """

    value: float
    n: int = 0
    per_image: np.ndarray | None = None
    ids: list | None = None
    threshold: float = math.nan
    note: str = ""
    curves: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)
    excluded: dict = field(default_factory=dict)


def check_aligned(record, explanation: Explanation, metric: str, *, what: str = "metric") -> None:
    """Raise unless ``explanation`` holds one map, native map and score per sample of
    ``record``, in the record's order, and the record's ids are distinct (errors name
    ``what`` ``metric``, e.g. the metric's label)."""
    n = len(record)
    check_ids(record.ids, n, f"{what} {metric!r}")
    sizes = {
        "maps": len(explanation.maps),
        "native maps": len(explanation.native),
        "scores": int(np.size(explanation.scores)) if explanation.scores is not None else n,
    }
    if explanation.nonfinite is not None and np.size(explanation.nonfinite):
        sizes["non-finite flags"] = int(np.size(explanation.nonfinite))
    bad = {k: v for k, v in sizes.items() if v != n}
    if bad:
        got = ", ".join(f"{v} {k}" for k, v in bad.items())
        shown = list(record.ids[:5]) + (["..."] if n > 5 else [])
        raise InputError(
            f"{what} {metric!r}: the explanation holds {got} for the {n} images of the "
            f"record (ids {shown}); expected one per image, in the record's order"
        )


def canonical_params(params: Mapping) -> str:
    """The JSON text of ``params`` with sorted keys (the results' ``params`` column)."""
    return json.dumps(_jsonable(dict(params)), sort_keys=True, separators=(", ", ": "))


def _jsonable(v):
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


# -------------------------------------------------------------------------- metric
class Metric(ABC):
    """Base class of registered metrics (see the module docstring).

    Class attributes
    ----------------
    name:
        Registry and results name.
    higher_is_better:
        Direction.
    family:
        One of :data:`FAMILIES`.
    needs:
        What the metric reads: ``"labels"``, ``"masks"``, ``"regions"``, ``"scores"``
        (image scores), ``"threshold"`` (a calibration), ``"detector"`` (a
        :class:`ProbeContext`), ``"reference"`` (normal reference images),
        ``"gradients"`` (a differentiable detector).
    per_image:
        True when it keeps one value per image (bootstrap CIs, paired verdicts).
    headline:
        1: shown in the summary table, the bar figures and the rank table; 2: in the
        rank table only; 0: in the per-metric tables only.
    stage:
        ``"stream"`` or ``"probe"`` (see the module docstring).
    subset:
        True when it runs on a selected subset of ``max_images`` images (costly
        metrics); the class then has a ``max_images`` option.
    population:
        Which images it is defined on: ``"all"`` or ``"anomalous"`` (a subset is drawn
        from these).
    """

    name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    family: ClassVar[str] = "localisation"
    needs: ClassVar[frozenset[str]] = frozenset()
    per_image: ClassVar[bool] = False
    headline: ClassVar[int] = 0
    stage: ClassVar[str] = "stream"
    subset: ClassVar[bool] = False
    population: ClassVar[str] = "all"

    _options: dict

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kwargs):
            if args:
                raise TypeError(f"{cls.__name__} options are keyword-only")
            bound = sig.bind(self, **kwargs)
            bound.apply_defaults()
            opts = dict(bound.arguments)
            opts.pop("self", None)
            if "_options" not in self.__dict__:  # the outermost __init__ records
                self._options = opts
            init(self, **kwargs)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    # ------------------------------------------------------------------ description
    @property
    def params(self) -> dict:
        """The options (defaults included) this metric was built with."""
        return dict(getattr(self, "_options", {}))

    @property
    def label(self) -> str:
        """Display name, unique within a run (e.g. ``"aupro@0.3"``)."""
        return self.name

    def shares(self) -> Hashable | None:
        """Key of the state this metric shares with others (None: its own state)."""
        return None

    #: Name of a metric this one is read against (e.g. IoU@t against the oracle IoU);
    #: when both are computed, :meth:`relate` may add a note to this one's row.
    compare_with: ClassVar[str | None] = None

    def relate(self, mine: MetricValue, other: MetricValue) -> str:
        """A note when ``mine`` contradicts ``other`` (the :attr:`compare_with`
        metric's value on the same data); empty by default."""
        return ""

    def calibrations(self) -> list[tuple]:
        """Values to fit on normal validation maps before the test set, e.g.
        ``[("normal_quantile", 0.99)]``; read back from ``explanation.calibration``."""
        return []

    @property
    def max_images(self) -> int | None:
        """Images of the subset for ``subset`` metrics (None: all)."""
        return self.params.get("max_images") if self.subset else None

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({opts})"

    # ---------------------------------------------------------------------- states
    @abstractmethod
    def init(self) -> Any:
        """A new, empty state."""

    @abstractmethod
    def update(self, state: Any, record, explanation: Explanation) -> Any:
        """Add a record (a batch of samples) and its explanation to ``state``."""

    @abstractmethod
    def merge(self, a: Any, b: Any) -> Any:
        """The state of the union of the data of ``a`` and ``b``."""

    @abstractmethod
    def compute(self, state: Any) -> MetricValue:
        """The metric's value from ``state``."""

    def confidence_interval(
        self, state: Any, value: MetricValue, *, n_boot: int, seed: int
    ) -> tuple[float, float]:
        """95% CI: the percentile bootstrap of the mean of the per-image values when the
        metric has them, else NaN (override for set-level metrics such as AUROC)."""
        if value.per_image is None:
            return math.nan, math.nan
        from xeval.stats import bootstrap_mean_ci

        return bootstrap_mean_ci(value.per_image, n_boot=n_boot, seed=seed)

    # ------------------------------------------------------- pooled resampling
    def summary_key(self) -> str | None:
        """For a metric pooled over a set (one value, no per-image values): the name of
        the per-image summary its value can be recomputed from on *weighted* sets of
        images (an image bootstrap), e.g. ``"pixel_histograms/512"``; metrics with equal
        keys share one summary. None (the default): no such summary."""
        return None

    def init_summary(self) -> Any:
        """A new summary collector (``update(masks, maps, ids)``-like via
        :meth:`update_summary`, ``merge(other)``, ``finish() -> summary``); the summary
        has ``ids``, ``strata`` (per image, the stratum of the resampling), ``n_images``
        and ``to_payload()`` (JSON-able, read back by
        :func:`xeval.metrics.pooled.summary_from_payload`)."""
        raise NotImplementedError(f"{type(self).__name__} declares no summary")

    def update_summary(self, collector: Any, record, explanation: Explanation) -> Any:
        """Add a record and its explanation to a collector of :meth:`init_summary`."""
        raise NotImplementedError(f"{type(self).__name__} declares no summary")

    def compute_weighted(self, summary: Any, weights: np.ndarray) -> np.ndarray:
        """``(B,)`` values of the metric on ``B`` weighted copies of the set: row ``b``
        of ``weights`` ``(B, n_images)`` counts each image of ``summary`` (in its
        ``ids`` order) that many times; NaN where undefined."""
        raise NotImplementedError(f"{type(self).__name__} declares no summary")


def exclusion_note(excluded: dict, n: int) -> str:
    """``"3 of 12 images excluded (not separated from its substrate: 2; constant map:
    1)"`` (empty when none is)."""
    if not excluded:
        return ""
    counts: dict[str, int] = {}
    for r in excluded.values():
        counts[r] = counts.get(r, 0) + 1
    detail = "; ".join(f"{r}: {k}" for r, k in sorted(counts.items()))
    return f"{len(excluded)} of {n} images excluded ({detail})"


_EXCLUSION = re.compile(r"(\d+) of (\d+) images excluded \((.*?)\)(?:;|$)")


def parse_exclusion_note(note: str) -> tuple[int, int, dict[str, int]]:
    """``(excluded, total, {reason: count})`` from a note written by
    :func:`exclusion_note` (zeros when it has none)."""
    m = _EXCLUSION.search(note or "")
    if not m:
        return 0, 0, {}
    counts: dict[str, int] = {}
    for part in m.group(3).split("; "):
        reason, _, k = part.rpartition(": ")
        if reason and k.isdigit():
            counts[reason] = counts.get(reason, 0) + int(k)
    return int(m.group(1)), int(m.group(2)), counts


def robust_spread(values) -> float:
    """A robust standard deviation: IQR / 1.349 (the sigma of a Gaussian); the standard
    deviation when the IQR is 0; 0 for fewer than two values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return 0.0
    q1, q3 = np.quantile(v, [0.25, 0.75])
    iqr = float(q3 - q1) / 1.349
    return iqr if iqr > 0 else float(v.std(ddof=1))


# ------------------------------------------------------------------ per-image kind
@dataclass
class PerImageState:
    """Per-image values (NaN where undefined), the ids they belong to and, for images
    without a value, why (None where there is a value), in update order."""

    ids: list = field(default_factory=list)
    values: list = field(default_factory=list)
    reasons: list = field(default_factory=list)

    def merge(self, other: PerImageState) -> PerImageState:
        return PerImageState(
            merged_ids(self.ids, other.ids, "merging per-image states"),
            self.values + other.values,
            self.reasons + other.reasons,
        )


class PerImageMetric(Metric):
    """A metric with one value per image whose set value is the mean over the images
    where it is defined (order-exact: :func:`math.fsum`). Subclasses implement
    :meth:`values`."""

    per_image = True
    #: Why a value can be NaN, for the note (e.g. "empty masks excluded").
    excluded_note: ClassVar[str] = ""

    def init(self) -> PerImageState:
        return PerImageState()

    @abstractmethod
    def values(self, record, explanation: Explanation):
        """``(B,)`` per-image values of a record (NaN where undefined), or ``(values,
        reasons)`` with, per image, why it has no value (None where it has one)."""

    def update(self, state: PerImageState, record, explanation: Explanation) -> PerImageState:
        check_aligned(record, explanation, self.label)
        extend_ids(list(state.ids), record.ids, f"metric {self.label!r}")  # before any work
        out = self.values(record, explanation)
        reasons = None
        if isinstance(out, tuple):
            out, reasons = out
        v = np.asarray(out, dtype=float)
        if v.shape != (len(record),):
            raise InputError(
                f"metric {self.name!r}: values() returned shape {v.shape} for {len(record)} images"
            )
        extend_ids(state.ids, record.ids, f"metric {self.label!r}")
        state.values.extend(v.tolist())
        state.reasons.extend(list(reasons) if reasons is not None else [None] * len(v))
        return state

    def merge(self, a: PerImageState, b: PerImageState) -> PerImageState:
        return a.merge(b)

    def compute(self, state: PerImageState) -> MetricValue:
        per = np.asarray(state.values, dtype=float)
        ok = per[~np.isnan(per)]
        value = exact_mean(ok)
        if not ok.size:
            undefined(self.label, "no image where it is defined")
        excluded = {
            i: r
            for i, r, v in zip(state.ids, state.reasons, per, strict=False)
            if r and np.isnan(v)
        }
        return MetricValue(
            value=value,
            n=int(ok.size),
            per_image=per,
            ids=list(state.ids),
            note="; ".join(p for p in (self.note(), exclusion_note(excluded, len(per))) if p),
            excluded=excluded,
        )

    def note(self) -> str:
        """How the value is obtained (the results' ``note``)."""
        return self.excluded_note
