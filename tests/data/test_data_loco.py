"""MVTec LOCO AD reader, on tiny fixture trees in the exact layout (valid and broken)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from xeval.data.loader import iter_batches
from xeval.data.loco import (
    TINY_DEFECTS,
    list_loco_categories,
    load_mvtec_loco,
    read_defects_config,
    write_tiny_loco,
)
from xeval.errors import DatasetError

CONFIG = {d["pixel_value"]: d for d in TINY_DEFECTS}


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_loco(tmp_path / "ds", categories=("a", "b"))


def _gt(tiny, kind="logical_anomalies", stem="001", k=0):
    return tiny / "a" / "ground_truth" / kind / stem / f"{k:03d}.png"


def _expected_saturation(value: int, area: int) -> int:
    d = CONFIG[value]
    if d["relative_saturation"]:
        return math.floor(d["saturation_threshold"] * area)
    return min(d["saturation_threshold"], area)


def test_reads_tiny_loco(tiny):
    assert list_loco_categories(tiny) == ["a", "b"]
    split = load_mvtec_loco(tiny, "a")
    assert split.category == "a" and split.root == tiny
    assert split.counts() == {
        "train": 3,
        "validation": 2,
        "test": 6,
        "test/good": 2,
        "test/logical_anomalies": 2,
        "test/structural_anomalies": 2,
    }
    assert split.defects == ["logical_anomalies", "structural_anomalies"]
    assert [s.id for s in split.train] == [
        "a/train/good/000",
        "a/train/good/001",
        "a/train/good/002",
    ]
    assert [s.id for s in split.validation] == ["a/validation/good/000", "a/validation/good/001"]
    assert all(s.label == 0 and s.split == "validation" for s in split.validation)
    ids = [s.id for s in split.test]
    assert ids == sorted(ids) and "a/test/logical_anomalies/001" in ids
    for s in split.test:
        assert s.label == int(s.defect != "good") and s.split == "test"
        assert s.mask_path is None
        assert bool(s.regions) == (s.label == 1)
    by_id = {s.id: s for s in split.test}
    regs = by_id["a/test/logical_anomalies/001"].regions
    assert [r.path.name for r in regs] == ["000.png", "001.png"]
    assert [(r.defect, r.value, r.relative, r.saturation) for r in regs] == [
        ("missing_part", 255, True, 0.5),
        ("extra_part", 254, False, 12.0),
    ]
    assert [r.defect for r in by_id["a/test/structural_anomalies/000"].regions] == ["extra_part"]
    assert [r.defect for r in by_id["a/test/structural_anomalies/001"].regions] == [
        "extra_part",
        "missing_part",
    ]
    assert load_mvtec_loco(tiny, "a") == split  # deterministic
    # the ground-truth files are part of the fingerprint
    fp = split.fingerprint(content=True)
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(_gt(tiny, k=1))
    assert split.fingerprint(content=True) != fp


def test_iter_batches_loads_regions_and_union(tiny):
    split = load_mvtec_loco(tiny, "a")
    seen = {"relative": 0, "capped": 0, "uncapped": 0}
    n = 0
    for rec in iter_batches(split.test, batch_size=4, image_size=(8, 8)):
        t = rec.targets
        assert t.regions is not None and len(t.regions) == len(rec)
        for sid, label, mask, regs in zip(rec.ids, t.labels, t.masks, t.regions, strict=True):
            n += 1
            s = next(x for x in split.test if x.id == sid)
            assert len(regs) == len(s.regions)
            if label == 0:
                assert regs == () and not mask.any() and mask.shape == (16, 20)
                continue
            union = np.zeros((16, 20), bool)
            for ref, reg in zip(s.regions, regs, strict=True):
                raw = np.asarray(Image.open(ref.path))
                assert set(np.unique(raw).tolist()) == {0, ref.value}
                assert np.array_equal(reg.mask, raw > 0)
                area = int(reg.mask.sum())
                assert reg.saturation == _expected_saturation(ref.value, area)
                assert reg.defect == ref.defect
                if ref.relative:
                    seen["relative"] += 1
                else:
                    seen["capped" if area < 12 else "uncapped"] += 1
                union |= raw > 0
            assert np.array_equal(mask, union)
    assert n == 6
    assert all(v > 0 for v in seen.values()), seen


def test_registry_entry(tiny):
    from xeval.registry import DATASETS

    read = DATASETS.get("mvtec_loco")
    out = read(path=str(tiny))
    assert sorted(out) == ["a", "b"]
    assert out["a"] == load_mvtec_loco(tiny, "a")
    assert list(read(path=str(tiny), categories=["b"])) == ["b"]
    DATASETS.check_options("mvtec_loco", {"path": "x", "validate": False})


def test_missing_category_and_root(tiny):
    with pytest.raises(DatasetError, match=r"zzz.*a, b"):
        load_mvtec_loco(tiny, "zzz")
    with pytest.raises(DatasetError, match="nowhere"):
        load_mvtec_loco(tiny / "nowhere", "a")
    with pytest.raises(DatasetError, match="no category folder"):
        list_loco_categories(tiny / "a" / "train" / "good")


def test_missing_config_names_file(tiny):
    (tiny / "a" / "defects_config.json").unlink()
    with pytest.raises(DatasetError, match=r"a/defects_config\.json does not exist"):
        load_mvtec_loco(tiny, "a")


def _entry(**kw):
    e = dict(TINY_DEFECTS[0])
    e.update(kw)
    return e


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "cannot read"),
        ({"defect_name": "x"}, "holds dict"),
        ([], "holds list"),
        (["x"], r"entry 0 is str"),
        ([{"defect_name": "x", "pixel_value": 3}], r"lacks key.*saturation_threshold"),
        ([_entry(defect_name="")], "defect_name is ''"),
        ([_entry(pixel_value="255")], r"pixel_value is '255'.*int in 1\.\.255"),
        ([_entry(pixel_value=0)], "pixel_value is 0"),
        ([_entry(pixel_value=256)], "pixel_value is 256"),
        ([_entry(pixel_value=True)], "pixel_value is True"),
        ([_entry(relative_saturation="yes")], "relative_saturation is 'yes'"),
        ([_entry(saturation_threshold=1.5)], r"saturation_threshold is 1\.5.*\(0, 1\]"),
        ([_entry(saturation_threshold=0.0)], r"saturation_threshold is 0\.0"),
        (
            [_entry(relative_saturation=False, saturation_threshold=12.5)],
            r"saturation_threshold is 12\.5.*int > 0",
        ),
        ([_entry(relative_saturation=False, saturation_threshold=0)], "saturation_threshold is 0"),
        ([_entry(), _entry(defect_name="other")], "pixel_value 255 is already used"),
    ],
)
def test_bad_config_names_file_and_value(tiny, content, match):
    path = tiny / "a" / "defects_config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DatasetError, match=r"defects_config\.json") as err:
        load_mvtec_loco(tiny, "a")
    assert err.match(match)


def test_config_accepts_int_fraction_and_reads_entries(tiny):
    path = tiny / "a" / "defects_config.json"
    path.write_text(json.dumps([_entry(saturation_threshold=1)]))
    cfg = read_defects_config(path)
    assert cfg[255].saturation_threshold == 1.0 and cfg[255].relative


def _write(path, arr):
    Image.fromarray(arr.astype(np.uint8)).save(path)


def test_gt_value_not_in_config(tiny):
    gt = _gt(tiny)
    arr = np.asarray(Image.open(gt)).copy()
    arr[arr > 0] = 7
    _write(gt, arr)
    with pytest.raises(DatasetError, match=r"001/000\.png marks its defect with value 7.*254, 255"):
        load_mvtec_loco(tiny, "a")


def test_gt_with_two_values(tiny):
    gt = _gt(tiny)
    arr = np.zeros((16, 20), np.uint8)
    arr[0, 0] = 255
    arr[5, 5] = 254
    _write(gt, arr)
    with pytest.raises(DatasetError, match=r"001/000\.png holds values \[254, 255\]"):
        load_mvtec_loco(tiny, "a")


def test_gt_with_two_values_16_bit(tiny):
    gt = _gt(tiny)
    arr = np.zeros((16, 20), np.uint16)
    arr[0, 0] = 255
    arr[5, 5] = 254
    Image.fromarray(arr).save(gt)
    with pytest.raises(DatasetError, match=r"001/000\.png holds values \[254, 255\]"):
        load_mvtec_loco(tiny, "a")


def test_empty_gt_file(tiny):
    _write(_gt(tiny), np.zeros((16, 20)))
    with pytest.raises(DatasetError, match=r"001/000\.png holds no defect pixel"):
        load_mvtec_loco(tiny, "a")


def test_empty_gt_folder(tiny):
    d = _gt(tiny).parent
    for p in d.iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match=r"logical_anomalies/001\.png.*001 is empty"):
        load_mvtec_loco(tiny, "a")


def test_missing_gt_folder(tiny):
    shutil.rmtree(_gt(tiny).parent)
    with pytest.raises(DatasetError, match=r"logical_anomalies/001\.png.*does not exist"):
        load_mvtec_loco(tiny, "a")
    split = load_mvtec_loco(tiny, "a", validate=False)  # listing only
    s = next(x for x in split.test if x.id == "a/test/logical_anomalies/001")
    assert s.label == 1 and s.regions == ()


def test_gt_size_mismatch_names_both_files(tiny):
    arr = np.zeros((8, 20), np.uint8)
    arr[2, 2] = 255
    _write(_gt(tiny), arr)
    with pytest.raises(
        DatasetError, match=r"001/000\.png has size 8x20.*logical_anomalies/001\.png is 16x20"
    ):
        load_mvtec_loco(tiny, "a")


def test_gt_folder_without_image(tiny):
    (tiny / "a" / "test" / "structural_anomalies" / "000.png").unlink()
    with pytest.raises(
        DatasetError, match=r"ground-truth folder .*structural_anomalies/000 has no anomalous"
    ):
        load_mvtec_loco(tiny, "a")


def test_empty_train_set(tiny):
    shutil.rmtree(tiny / "a" / "train")
    with pytest.raises(DatasetError, match=r"train set.*a/train/good"):
        load_mvtec_loco(tiny, "a")
