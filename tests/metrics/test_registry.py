"""Walk the metric registry: every registered metric documents its definition,
direction and reference, declares consistent metadata, merges exactly (split states
merged equal the whole), pickles, and shows up in a report."""

from __future__ import annotations

import json
import math
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from _toy_record import toy, video_toy

from xeval.metrics.base import FAMILIES, STAGES, Metric, MetricValue
from xeval.registry import METRICS, check_options, option_spec

NAMES = METRICS.names()
#: options that make a metric defined on the tiny toy record (16 x 16 images)
TOY_OPTIONS = {"aupimo": {"fpr_bounds": (0.01, 0.3)}, "auc_spro": {"fpr_limit": 0.3}}


def make(name: str) -> Metric:
    return METRICS.get(name)(**TOY_OPTIONS.get(name, {}))


#: Families whose metrics read video records (video ids, frame indices, tracks, reasons).
VIDEO_FAMILIES = ("video", "reasons")


def toy_for(name: str):
    """The toy record: as two videos for video and reason metrics."""
    return video_toy() if METRICS.get(name).family in VIDEO_FAMILIES else toy()


def test_the_registry_holds_every_family_we_ship():
    families = {METRICS.get(n).family for n in NAMES}
    assert {"detection", "localisation", "faithfulness", "robustness", "sanity"} <= families
    assert {"aupimo", "auc_spro", "aupro", "pixel_auroc", "deletion_auc"} <= set(NAMES)
    assert {"video", "reasons"} <= families
    assert {"frame_auroc", "rbdc", "tbdc", "reason_map", "pixel_criterion_auc"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_definition_direction_reference(name):
    cls = METRICS.get(name)
    doc = cls.__dict__.get("__doc__") or ""
    assert len(doc) > 120, f"{name}: the class docstring must state the definition"
    text = " ".join(doc.split()).lower()
    direction = "higher is better" if cls.higher_is_better else "lower is better"
    assert direction in text, f"{name}: the docstring must say {direction!r}"
    assert re.search(r"\b(19|20)\d\d\b", doc), f"{name}: the docstring must cite a reference"


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_options(name):
    cls = METRICS.get(name)
    assert cls.name == name and cls.family in FAMILIES and cls.stage in STAGES
    assert isinstance(cls.higher_is_better, bool) and cls.headline in (0, 1, 2)
    spec = option_spec(cls)
    for p in spec.values():
        assert p.kind is p.KEYWORD_ONLY, f"{name}: option {p.name} must be keyword-only"
        assert p.default is not p.empty, f"{name}: option {p.name} needs a default"
    if cls.subset:
        assert "max_images" in spec and cls.population in ("all", "anomalous")
    m = cls()
    json.dumps(m.params)  # recorded in the results as JSON
    check_options(cls, m.params, where=name)  # its own defaults pass the config check
    assert isinstance(m.label, str) and m.label
    with pytest.raises(Exception, match="unknown option"):
        check_options(cls, {"no_such_option": 1}, where=name)


def _values(v: MetricValue) -> dict:
    if v.per_image is None:
        return {}
    return dict(zip(v.ids, np.asarray(v.per_image, float).tolist(), strict=True))


def _same(a: float, b: float, rel: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


#: Metrics that call the detector on batches whose composition depends on the split:
#: float32 convolutions of different batches round differently (~1e-8 relative).
QUERIES_DETECTOR = ("faithfulness", "robustness", "sanity")


@pytest.mark.parametrize("name", NAMES)
def test_merge_of_split_states_equals_the_whole(name):
    record, expl = toy_for(name)
    m = make(name)
    a_idx, b_idx = [0, 3, 4, 7, 8], [1, 2, 5, 6, 9]  # both halves hold both classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = m.compute(m.update(m.init(), record, expl))
        sa = m.update(m.init(), record.subset(a_idx), expl.subset(a_idx))
        sb = m.update(m.init(), record.subset(b_idx), expl.subset(b_idx))
        merged = m.compute(m.merge(sa, sb))
        swapped = m.compute(m.merge(pickle.loads(pickle.dumps(sb)), sa))  # picklable
    rel = 1e-6 if m.family in QUERIES_DETECTOR else 1e-9
    assert _same(merged.value, whole.value, rel), (merged.value, whole.value)
    assert _same(swapped.value, whole.value, rel), (swapped.value, whole.value)
    assert merged.n == whole.n
    vw, vm = _values(whole), _values(merged)
    assert vw.keys() == vm.keys() and all(_same(vw[k], vm[k], rel) for k in vw)
    if m.per_image:
        assert vw, f"{name} is per-image but gave no per-image values"


@pytest.mark.parametrize("name", NAMES)
def test_defined_on_the_toy_record(name):
    """The merge test above would pass on NaN == NaN: each metric must give a number."""
    record, expl = toy_for(name)
    m = make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = m.compute(m.update(m.init(), record, expl))
    assert np.isfinite(v.value), f"{name} is undefined on the toy record"


def test_every_metric_appears_in_the_report(tmp_path):
    from xeval.engine.collect import collect_unit
    from xeval.engine.evaluate import MetricStates
    from xeval.explainers import NativeMap
    from xeval.reports import ReportData, write_report
    from xeval.results import results_frame

    native = NativeMap()
    native.name = "toy"
    rows = []
    for video in (False, True):  # image metrics on images, video metrics on videos
        record, expl = video_toy() if video else toy()
        metrics = [make(n) for n in NAMES if (METRICS.get(n).family in VIDEO_FAMILIES) == video]
        states = MetricStates(metrics)
        subsets = {m.label: list(record.ids) for m in metrics if m.subset}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            states.update(record, expl, stage="stream", subsets=subsets)
            states.update(record, expl, stage="probe", subsets=subsets)

        class Split:  # the part of a CategorySplit that collect reads
            category = "toy"
            test = [
                type("S", (), {"id": i, "label": int(y), "defect": d})
                for i, y, d in zip(
                    record.ids, record.targets.labels, record.targets.defects, strict=True
                )
            ]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            unit = collect_unit(
                detector="toy_conv",
                explainers=[native],
                metrics=metrics,
                states={"toy": states},
                scores_by_id={},
                split=Split,
                dataset="toy",
                protocol="walk",
                n_boot=20,
                seed=0,
                subsets=subsets,
            )
        rows += unit["rows"]
    metrics = [make(n) for n in NAMES]
    results = results_frame(rows)
    assert set(results["label"]) == {m.label for m in metrics}
    write_report(ReportData(results=results), tmp_path, figures=False)
    md = (tmp_path / "results.md").read_text()
    page = (tmp_path / "index.html").read_text()
    for m in metrics:
        assert m.label.replace("_", "\\_") in md and m.label in page, m.label


def test_metrics_import_without_docstrings():
    """``python -OO`` strips docstrings: nothing may assemble them at import."""
    code = (
        "import xeval.metrics; from xeval.registry import METRICS, EXPLAINERS; "
        "assert METRICS.names() and EXPLAINERS.names()"
    )
    subprocess.run([sys.executable, "-OO", "-c", code], check=True, timeout=120)
