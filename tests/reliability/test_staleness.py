"""Staleness: nothing saved by an earlier run is reused unless everything it depends on
is unchanged.

Principles (several inputs each):

- T1 a saved unit is reused only when the dataset's files (byte for byte), the unit's
  resolved configuration and xeval (version and code) all match; after any in-place
  edit of the dataset the resumed run equals a fresh run on the edited data, and the
  manifest says which units were recomputed and why;
- T2 a damaged unit file is named in a warning and recomputed; the run is not blocked;
- T3 the explanation cache is keyed by content (the fitting images' bytes and each
  image's pixels), not by names;
- T4 the manifest of a resumed run records the same resolved configurations as a fresh
  run's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reliability import _toy
from xeval.adapters.imports import safe_imports
from xeval.data import write_tiny_mvtec
from xeval.engine import checkpoint as ckpt_mod
from xeval.engine import run
from xeval.errors import ResumeWarning
from xeval.protocols.config import parse_config

VALUE_COLUMNS = ["detector", "explainer", "category", "metric", "label", "value", "n", "note"]


def _values(res) -> pd.DataFrame:
    df = res.results[VALUE_COLUMNS].copy()
    return df.sort_values(VALUE_COLUMNS[:5]).reset_index(drop=True)


def _run(data: Path, out: Path, *, resume: bool = True, **top):
    with safe_imports(_toy.MODULE):
        cfg = parse_config(_toy.toy_config(data, **top))
        return run(cfg, out_dir=out, resume=resume)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(dataset folder, an untouched copy of it, the output of a first run on it)."""
    root = tmp_path_factory.mktemp("stale")
    data = write_tiny_mvtec(root / "mvtec", categories=("a", "b"), n_train=4, n_good=2)
    shutil.copytree(data, root / "copy")
    _run(data, root / "first")
    return data, root / "copy", root / "first"


@pytest.fixture()
def data(pristine) -> Path:
    """The dataset, restored byte for byte (same path: the path is part of the key)."""
    data, copy, _ = pristine
    shutil.rmtree(data)
    shutil.copytree(copy, data)
    return data


@pytest.fixture()
def out(pristine, data, tmp_path) -> Path:
    """A copy of the first run's output folder (its saved units match ``data``)."""
    shutil.copytree(pristine[2], tmp_path / "out")
    return tmp_path / "out"


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


def _edit_mask(root: Path) -> None:
    p = _first(root, "a/ground_truth/*/*.png")
    m = np.asarray(Image.open(p))
    Image.fromarray(np.where(m > 0, 0, 255).astype(np.uint8)).save(p)


def _edit_mask_same_size_and_mtime(root: Path) -> None:
    p = _first(root, "a/ground_truth/*/*.png")
    st = p.stat()
    m = np.asarray(Image.open(p)).copy()
    m[0, 0] = 255 - m[0, 0]
    Image.fromarray(m).save(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _add_test_image(root: Path) -> None:
    src = _first(root, "a/test/good/*.png")
    shutil.copy(src, src.with_name("900.png"))


def _replace_train_image(root: Path) -> None:
    p = _first(root, "a/train/good/*.png")
    img = np.asarray(Image.open(p)).astype(np.int16)
    Image.fromarray(np.clip(255 - img, 0, 255).astype(np.uint8)).save(p)


def _edit_test_image(root: Path) -> None:
    p = _first(root, "a/test/*[!d]/*.png")
    img = np.asarray(Image.open(p)).copy()
    img[:8, :8] = 255
    Image.fromarray(img).save(p)


EDITS = {
    "mask inverted": _edit_mask,
    "mask pixel, size and mtime kept": _edit_mask_same_size_and_mtime,
    "test image added": _add_test_image,
    "train image replaced": _replace_train_image,
    "test image edited": _edit_test_image,
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_resume_after_editing_the_dataset_equals_a_fresh_run(edit, data, out, tmp_path):
    first = json.loads((out / "manifest.json").read_text())
    assert set(first["resume"].values()) == {"computed"}
    EDITS[edit](data)
    with pytest.warns(ResumeWarning, match="dataset's files changed"):
        resumed = _run(data, out)
    fresh = _run(data, tmp_path / "fresh")
    pd.testing.assert_frame_equal(_values(resumed), _values(fresh))
    status = resumed.manifest["resume"]
    assert status["a/toy"].startswith("recomputed (stale: the dataset's files")
    assert status["b/toy"] == "reused (key matched)"  # category b was not touched
    assert resumed.manifest["dataset_fingerprint"] == fresh.manifest["dataset_fingerprint"]
    assert resumed.manifest["dataset_fingerprint"] != first["dataset_fingerprint"]


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"metrics": ["image_auroc", {"name": "aupro", "fpr_limit": 0.05}]},
    ],
)
def test_changed_configuration_is_not_reused(change, data, out, tmp_path):
    changed = _run(data, out, **change)
    assert set(changed.manifest["resume"].values()) == {"computed"}
    fresh = _run(data, tmp_path / "fresh", **change)
    pd.testing.assert_frame_equal(_values(changed), _values(fresh))


def test_unit_configuration_covers_what_changes_results(data):
    """Every setting that changes a unit's numbers changes its key (checked without
    running: the key of each changed configuration differs from the original's)."""
    from xeval.engine.run import _unit_config

    def key(**top):
        with safe_imports(_toy.MODULE):
            cfg = parse_config(_toy.toy_config(data, **top))
        return ckpt_mod.unit_key(
            dataset_content="x", unit_config=_unit_config(cfg, cfg.detectors[0], "a")
        )

    base = key()
    changes = [
        {"seed": 1},
        {"batch_size": 3},
        {"evaluation": {"bootstrap": 30}},
        {"evaluation": {"validation_fraction": 0.3}},
        {"evaluation": {"subset": "first"}},
        {"explainers": ["native", "random"]},
        {"explainers": ["native", {"name": "occlusion", "window": 4}]},
        {"metrics": ["image_auroc"]},
        {"report": {"gallery": False}},
        {"dataset": {"format": "mvtec", "path": str(data), "categories": ["a"]}},
    ]
    for change in changes:
        assert key(**change) != base, change


def test_changed_code_or_version_is_not_reused(data, out, monkeypatch):
    monkeypatch.setattr(ckpt_mod, "code_fingerprint", lambda: "0" * 16)
    with pytest.warns(ResumeWarning, match="xeval's code changed"):
        res = _run(data, out)
    assert all(v.startswith("recomputed") for v in res.manifest["resume"].values())
    import xeval

    monkeypatch.setattr(xeval, "__version__", "999.0")
    with pytest.warns(ResumeWarning, match="xeval version changed"):
        _run(data, out)


def test_unchanged_run_reuses_everything(data, out, tmp_path):
    first = json.loads((out / "manifest.json").read_text())
    again = _run(data, out)
    assert set(again.manifest["resume"].values()) == {"reused (key matched)"}
    fresh = _run(data, tmp_path / "fresh")
    pd.testing.assert_frame_equal(_values(fresh), _values(again))
    # T4: the resumed manifest records the same resolved configurations as a fresh run
    for unit, resolved in first["units"].items():
        assert json.loads(json.dumps(again.manifest["units"][unit], default=str)) == resolved


def _unit_files(out: Path) -> list[Path]:
    return sorted((out / ".partial").rglob("*.json")) + sorted((out / ".partial").rglob("*.npz"))


DAMAGE = {
    "json truncated": lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]),
    "json empty": lambda p: p.write_text(""),
    "json is a list": lambda p: p.write_text("[1, 2, 3]"),
    "json missing rows": lambda p: p.write_text(
        json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "rows"})
    ),
    "json rows not a list": lambda p: p.write_text(
        json.dumps({**json.loads(p.read_text()), "rows": 5})
    ),
    "json binary": lambda p: p.write_bytes(os.urandom(64)),
    "npz truncated": lambda p: p.write_bytes(p.read_bytes()[:40]),
    "npz garbage": lambda p: p.write_bytes(b"PK\x03\x04" + os.urandom(100)),
    "npz missing array": lambda p: np.savez(p.with_suffix(""), other=np.zeros(2)),
}


def _target(out: Path, damage: str) -> Path:
    suffix = ".npz" if damage.startswith("npz") else ".json"
    return [p for p in _unit_files(out) if p.suffix == suffix][0]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_unit_is_named(damage, out):
    target = _target(out, damage)
    key = json.loads(target.with_suffix(".json").read_text())["key"]
    assert ckpt_mod.load_unit(target.with_suffix(""), key=key)[0] is not None
    DAMAGE[damage](target)
    unit, why = ckpt_mod.load_unit(target.with_suffix(""), key=key)
    assert unit is None
    assert why.startswith("damaged: ") and target.name in why


@pytest.mark.parametrize("damage", ["json truncated", "npz garbage"])
def test_damaged_unit_is_recomputed(damage, data, out):
    first = pd.read_csv(out / "results.csv")
    target = _target(out, damage)
    DAMAGE[damage](target)
    with pytest.warns(ResumeWarning, match=rf"damaged: .*{target.name}"):
        again = _run(data, out)
    assert sum(v.startswith("recomputed (damaged") for v in again.manifest["resume"].values()) == 1
    pd.testing.assert_frame_equal(first, pd.read_csv(out / "results.csv"))


def test_explanation_cache_is_keyed_by_content(data, tmp_path):
    """Same names, other training images: the cached occlusion maps are not reused (the
    detector key covers the fitting images' bytes; each map its own image's pixels)."""
    from xeval.explainers.cache import CachedExplainer

    cache = tmp_path / "cache"
    calls = []
    orig = CachedExplainer.explain

    def counting(self, detector, batch, *, maps=None):
        before = self.misses
        out = orig(self, detector, batch, maps=maps)
        calls.append(self.misses - before)
        return out

    CachedExplainer.explain = counting
    try:
        with safe_imports(_toy.MODULE):
            cfg = parse_config(_toy.toy_config(data))
            run(cfg, out_dir=tmp_path / "o1", cache_dir=cache)
            assert sum(calls) > 0
            calls.clear()
            run(cfg, out_dir=tmp_path / "o2", cache_dir=cache)
            assert sum(calls) == 0  # all hits: nothing changed
            _replace_train_image(data)
            calls.clear()
            run(cfg, out_dir=tmp_path / "o3", cache_dir=cache)
            assert sum(calls) > 0  # category a's fitting images changed: recomputed
    finally:
        CachedExplainer.explain = orig
