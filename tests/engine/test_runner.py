"""The engine on a tiny MVTec tree with a transparent fake detector: the numbers in the
results table equal the metric functions applied to independently computed maps."""

from __future__ import annotations

import numpy as np
import pytest

from xeval import metrics as M
from xeval.adapters.base import Detector
from xeval.data import iter_batches, load_masks, load_mvtec, write_tiny_mvtec
from xeval.engine import evaluate_unit
from xeval.engine.load import holdout
from xeval.errors import InputError
from xeval.explainers.base import Explainer
from xeval.protocols import parse_config


class MeanDiff(Detector):
    """map = mean over channels of |x - mean training image|; score = max of map."""

    name = "meandiff"
    input_size = (16, 16)
    differentiable = False

    def fit(self, batches):
        imgs = np.concatenate(list(batches))
        self.mean = imgs.mean(axis=0)
        return self

    def predict(self, images):
        maps = np.abs(images - self.mean).mean(axis=1).astype(np.float32)
        return maps.reshape(len(maps), -1).max(axis=1), maps


class Native(Explainer):
    name = "native"
    requires = frozenset({"map"})
    image_score = "detector"

    def explain(self, detector, batch, *, maps=None):
        return maps


class Flat(Explainer):
    name = "flat"
    control = True

    def explain(self, detector, batch, *, maps=None):
        return np.zeros(batch.images.shape[:1] + batch.images.shape[2:], np.float32)


class NeedsGradients(Explainer):
    name = "grad"
    requires = frozenset({"gradients"})

    def explain(self, detector, batch, *, maps=None):  # pragma: no cover
        raise AssertionError


@pytest.fixture()
def split(tmp_path):
    root = write_tiny_mvtec(
        tmp_path / "d", n_train=6, n_good=3, n_defect=4, size=(24, 20), defects=("scratch", "stain")
    )
    return load_mvtec(root, "a")


def _cfg(**metrics):
    """A config in the 0.1 form (a mapping of metric families), as older users wrote."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return parse_config(
            {
                "name": "t",
                "dataset": {"format": "textures"},
                "detectors": [{"kind": "patch_features"}],
                "explainers": ["native"],
                "metrics": {"bootstrap": 50, **metrics},
                "batch_size": 4,
            }
        )


def _rows(unit):
    return {(r["explainer"], r["label"]): r for r in unit["rows"]}


def test_numbers_equal_direct_metric_calls(split):
    cfg = _cfg()
    unit = evaluate_unit(MeanDiff(), [Native(), Flat()], split, cfg)
    rows = _rows(unit)
    # recompute independently
    fit, val = holdout(split.train, fraction=0.2, seed=0)
    det = MeanDiff().fit(
        b.inputs.images
        for b in iter_batches(fit, batch_size=8, image_size=(16, 16), with_masks=False)
    )
    masks = load_masks(split.test)
    maps, scores = [], []
    for b in iter_batches(split.test, batch_size=3, image_size=(16, 16)):
        s, mm = det.predict(b.inputs.images)
        scores += s.tolist()
        maps += [
            M.resize_to(m, sz, frame=m.shape)  # the 24x20 images were squashed to 16x16
            for m, sz in zip(mm, b.inputs.native_sizes, strict=True)
        ]
    labels = [s.label for s in split.test]
    assert rows["native", "pixel_auroc"]["value"] == pytest.approx(M.pixel_auroc(masks, maps))
    assert rows["native", "aupro@0.3"]["value"] == pytest.approx(M.aupro(masks, maps))
    assert rows["native", "image_auroc"]["value"] == pytest.approx(M.image_auroc(labels, scores))
    vmaps = []
    for b in iter_batches(val, batch_size=8, image_size=(16, 16), with_masks=False):
        vmaps += [
            M.resize_to(m, sz, frame=m.shape)
            for m, sz in zip(det.predict(b.inputs.images)[1], b.inputs.native_sizes, strict=True)
        ]
    t = M.normal_threshold(vmaps, quantile=0.99)
    assert rows["native", "iou@t"]["threshold"] == pytest.approx(t)
    assert rows["native", "iou@t"]["value"] == pytest.approx(M.iou(masks, maps, threshold=t))
    # a constant map: pixel AUROC exactly 1/2 (all ties), defined
    assert rows["flat", "pixel_auroc"]["value"] == pytest.approx(0.5)
    assert rows["native", "image_auroc"]["ci_low"] <= rows["native", "image_auroc"]["value"]
    assert {g["rank"] for g in unit["gallery"]} == {"example", "best", "worst"}
    assert len(unit["per_image"]) == 2 * len(split.test)


def test_binned_mode_reports_bound(split):
    unit = evaluate_unit(MeanDiff(), [Native()], split, _cfg(mode="binned"))
    note = _rows(unit)["native", "pixel_auroc"]["note"]
    assert note.startswith("binned, |error| <=")


def test_impossible_pairing_lists_what_works(split):
    with pytest.raises(InputError, match=r"'grad'.*needs \['gradients'\].*work with this"):
        evaluate_unit(MeanDiff(), [Native(), NeedsGradients()], split, _cfg())


class BadShape(MeanDiff):
    name = "bad"

    def predict(self, images):
        s, m = super().predict(images)
        return s[:1], m


class NaNMap(MeanDiff):
    name = "nanmap"

    def predict(self, images):
        s, m = super().predict(images)
        m[0, 0, 0] = np.nan
        return s, m


@pytest.mark.parametrize(
    ("det", "match"), [(BadShape(), "scores of shape"), (NaNMap(), "NaN or inf")]
)
def test_bad_detector_output_names_the_detector(split, det, match):
    with pytest.raises(InputError, match=f"detector '{det.name}'.*{match}"):
        evaluate_unit(det, [Native()], split, _cfg())


class Counting(Explainer):
    """A non-control explainer that counts its calls (cached by the engine)."""

    name = "counting"
    calls = 0

    def explain(self, detector, batch, *, maps=None):
        Counting.calls += len(batch)
        return maps * 2


def test_explanation_cache_is_reused(split, tmp_path):
    cfg = _cfg()
    Counting.calls = 0
    a = evaluate_unit(MeanDiff(), [Native(), Counting()], split, cfg, cache_dir=tmp_path)
    first = Counting.calls
    assert first > 0
    b = evaluate_unit(MeanDiff(), [Native(), Counting()], split, cfg, cache_dir=tmp_path)
    assert Counting.calls == first  # everything came from the cache
    ra, rb = _rows(a), _rows(b)
    assert ra["counting", "aupro@0.3"]["value"] == rb["counting", "aupro@0.3"]["value"]


def test_verdicts_and_ranks():
    import pandas as pd

    from xeval.engine.verdicts import rank_table, verdicts

    rng = np.random.default_rng(0)
    n = 40
    good = rng.random(n) * 0.2 + 0.7  # clearly above the control
    ctrl = rng.random(n) * 0.2 + 0.1
    same = ctrl + rng.normal(0, 0.01, n)  # indistinguishable from the control
    rows = []
    for e, vals, c in (("good", good, False), ("same", same, False), ("ctrl", ctrl, True)):
        for i in range(n):
            rows.append(
                dict(
                    detector="d",
                    explainer=e,
                    control=c,
                    category="a",
                    id=str(i),
                    relevance_mass=vals[i],
                    deletion_auc=1 - vals[i],
                )
            )
    v = verdicts(
        pd.DataFrame(rows), metrics={"relevance_mass": True, "deletion_auc": False}, n_boot=500
    )
    overall = v[v.control == "all controls"].set_index(["explainer", "metric"])["verdict"]
    assert overall["good", "relevance_mass"] == "beats"
    assert overall["good", "deletion_auc"] == "beats"  # lower is better: sign flipped
    assert overall["same", "relevance_mass"] == "ties"
    res = pd.DataFrame(
        [
            dict(
                detector="d",
                explainer=e,
                category="mean",
                metric="m",
                value=val,
                higher_is_better=True,
            )
            for e, val in (("good", 0.9), ("same", 0.2), ("ctrl", 0.2))
        ]
    )
    r = rank_table(res, metrics=["m"])
    assert r.iloc[0]["explainer"] == "good" and r.iloc[0]["mean_rank"] == 1.0
    assert set(r.loc[r.explainer != "good", "m"]) == {2.5}  # ties share the average rank


class Oracle(Explainer):
    """The true defect mask as the explanation (an upper bound for localisation). The
    engine never hands explainers the ground truth, so the test gives it the masks."""

    name = "oracle"

    def __init__(self, masks_by_id):
        self.masks_by_id = masks_by_id

    def explain(self, detector, inputs, *, maps=None):
        b, _, h, w = inputs.images.shape
        out = np.zeros((b, h, w), np.float32)  # normal (validation) images: nothing
        for i, sid in enumerate(inputs.ids):
            if sid in self.masks_by_id:
                out[i] = M.resize_to(self.masks_by_id[sid].astype(np.float32), (h, w))
        return out


class CentreCtl(Flat):
    name = "centre"

    def explain(self, detector, batch, *, maps=None):
        b, _, h, w = batch.images.shape
        yy, xx = np.mgrid[0:h, 0:w]
        g = np.exp(-(((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2) * 8)
        return np.repeat(g[None].astype(np.float32), b, axis=0)


class RandomCtl(Flat):
    name = "random"

    def explain(self, detector, batch, *, maps=None):
        rng = np.random.default_rng(len(batch.ids[0]))
        return rng.random((len(batch),) + batch.images.shape[2:]).astype(np.float32)


def test_oracle_beats_every_control(tmp_path):
    import pandas as pd

    from xeval.engine.verdicts import verdicts

    root = write_tiny_mvtec(
        tmp_path / "o", n_train=8, n_good=3, n_defect=8, size=(24, 24), defects=("scratch", "stain")
    )
    sp = load_mvtec(root, "a")
    cfg = _cfg(faithfulness={"steps": 6, "max_images": 16})
    masks = dict(zip([s.id for s in sp.test], load_masks(sp.test), strict=True))
    unit = evaluate_unit(MeanDiff(), [Oracle(masks), RandomCtl(), CentreCtl()], sp, cfg)
    rows = _rows(unit)
    for ctl in ("random", "centre"):
        assert rows["oracle", "aupro@0.3"]["value"] > rows[ctl, "aupro@0.3"]["value"]
        assert rows["oracle", "relevance_mass"]["value"] > rows[ctl, "relevance_mass"]["value"]
        assert rows["oracle", "deletion_auc"]["value"] < rows[ctl, "deletion_auc"]["value"]
    assert rows["oracle", "relevance_mass"]["value"] > 0.5  # < 1: 24px mask seen at 16px
    v = verdicts(
        pd.DataFrame(unit["per_image"]),
        metrics={"relevance_mass": True, "deletion_auc": False},
        n_boot=300,
    )
    overall = v[v.control == "all controls"].set_index("metric")["verdict"]
    assert overall["relevance_mass"] == "beats"
    assert overall["deletion_auc"] == "beats"


class Peeking(Explainer):
    """Records what the engine hands an explainer."""

    name = "peeking"
    seen: list = []

    def explain(self, detector, inputs, *, maps=None):
        Peeking.seen.append(inputs)
        return np.asarray(maps) * 1.0 if maps is not None else maps


def test_explainers_never_receive_targets(split):
    from xeval.record import Inputs

    Peeking.seen = []
    Peeking.requires = frozenset({"map"})
    evaluate_unit(MeanDiff(), [Native(), Peeking()], split, _cfg())
    assert Peeking.seen  # validation, test and gallery calls
    for inputs in Peeking.seen:
        assert isinstance(inputs, Inputs)
        for field in ("masks", "labels", "defects", "regions", "targets"):
            assert not hasattr(inputs, field), field
