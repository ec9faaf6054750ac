"""The built-in textures benchmark (quick build) and the defect generators."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xeval.data import (
    DEFECT_KINDS,
    build_textures,
    default_cache_dir,
    list_categories,
    load_mvtec,
    load_textures,
    make_defect,
    read_image,
    read_mask,
)
from xeval.data.textures import QUICK_CATEGORIES, _crop, _photo, _regions, _rng


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return build_textures(tmp_path_factory.mktemp("cache"), quick=True)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_quick_layout_is_mvtec(quick):
    assert list_categories(quick) == sorted(QUICK_CATEGORIES)
    card = json.loads((quick / "dataset.json").read_text())
    assert card["defect_kinds"] == list(DEFECT_KINDS) and card["seed"] == 0
    for cat in QUICK_CATEGORIES:
        split = load_mvtec(quick, cat)
        assert len(split.train) == 12
        assert split.counts()["test/good"] == 4
        assert split.defects == sorted(DEFECT_KINDS)
        assert all(split.counts()[f"test/{k}"] == 2 for k in DEFECT_KINDS)
        assert read_image(split.train[0].image_path).shape == (64, 64, 3)
        for s in split.test:
            if s.label:
                m = read_mask(s.mask_path)
                assert m.shape == (64, 64) and 0 < m.sum() < m.size // 2


def test_deterministic_and_cached(quick, tmp_path):
    again = build_textures(quick.parent, quick=True)
    assert again == quick  # reused, not rebuilt
    other = build_textures(tmp_path / "other", quick=True)
    assert other.name == quick.name
    assert _files(other) == _files(quick)  # byte-identical
    seed1 = build_textures(tmp_path / "other", quick=True, seed=1)
    assert seed1.name != quick.name
    a, b = _files(quick), _files(seed1)
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a if k.endswith(".png")) > len(a) // 2
    assert not [p for p in quick.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_cache_key_depends_on_params(tmp_path):
    a = build_textures(
        tmp_path,
        quick=True,
        categories=["grass"],
        n_train=2,
        n_test_good=1,
        n_test_defect_per_kind=1,
        defects=["hole"],
    )
    b = build_textures(
        tmp_path,
        quick=True,
        categories=["grass"],
        n_train=3,
        n_test_good=1,
        n_test_defect_per_kind=1,
        defects=["hole"],
    )
    assert a != b
    # independent streams: test tiles do not move when n_train changes
    assert (a / "grass/test/hole/000.png").read_bytes() == (
        b / "grass/test/hole/000.png"
    ).read_bytes()
    splits = load_textures(
        tmp_path,
        quick=True,
        categories=["grass"],
        n_train=2,
        n_test_good=1,
        n_test_defect_per_kind=1,
        defects=["hole"],
    )
    assert list(splits) == ["grass"] and len(splits["grass"].train) == 2


def test_interrupted_build_leaves_nothing_complete(tmp_path, monkeypatch):
    import xeval.data.textures as T

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_card", boom)
    with pytest.raises(KeyboardInterrupt):
        build_textures(tmp_path, quick=True, categories=["brick"], n_train=1)
    assert list(tmp_path.iterdir()) == []


def test_train_and_test_areas_are_disjoint():
    for cat in QUICK_CATEGORIES:
        r = _regions(cat, 64)
        assert r["train"][1] <= r["test"][0]


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@pytest.mark.parametrize("cat", ["brick", "tissue"])
def test_mask_is_exactly_the_changed_pixels(kind, cat):
    rng = _rng(3, cat, kind)
    photo = _photo(cat)
    for _ in range(3):
        clean = _crop(photo, (307, 512), 96, rng)
        source = _crop(_photo("grass"), (0, 512), 96, rng) / 255.0 if kind == "cut_paste" else None
        out, mask = make_defect(kind, clean, rng, source=source)
        assert out.dtype == np.uint8 and out.shape == clean.shape
        assert mask.dtype == bool and mask.any()
        changed = (out != clean).any(axis=-1)
        assert np.array_equal(changed, mask)
        delta = np.abs(out.astype(int) - clean.astype(int)).max(axis=-1)
        assert delta[mask].mean() > 15  # visible, not a faint change


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XEVAL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("XEVAL_CACHE")
    assert default_cache_dir().name == "xeval"
