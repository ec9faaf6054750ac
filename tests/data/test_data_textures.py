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
from xeval.data.textures import (
    QUICK_CATEGORIES,
    TEXTURES_VERSION,
    _crop,
    _photo,
    _regions,
    _rng,
)


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


def _draw_many(kind, n, tile=64):
    """``n`` defects of ``kind`` on test tiles of the four photographs, one seed each."""
    cats = ["brick", "grass", "gravel", "tissue"]
    for i in range(n):
        cat = cats[i % 4]
        rng = _rng(i, cat, kind, "spread")
        clean = _crop(_photo(cat), _regions(cat, tile)["test"], tile, rng)
        other = cats[(i + 1) % 4]
        source = _crop(_photo(other), (0, 512), tile, rng) / 255.0 if kind == "cut_paste" else None
        yield clean, make_defect(kind, clean, rng, source=source)


def _touches_border(mask):
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defects_are_spread_uniformly_over_the_tile(kind):
    # every pixel equally likely to be defective: the central square (half the side,
    # 25 % of the area) holds about 25 % of the mask pixels (centre-biased placement:
    # ~45 %), the band along the border as much as the rest, many masks touch the border
    tile, n = 64, 120
    q = tile // 4
    band = np.ones((tile, tile), bool)
    band[tile // 8 : -tile // 8, tile // 8 : -tile // 8] = False
    total = np.zeros((tile, tile))
    touching = 0
    for clean, (out, mask) in _draw_many(kind, n, tile):
        assert mask.any() and np.array_equal((out != clean).any(axis=-1), mask)
        total += mask
        touching += _touches_border(mask)
    share = total[q:-q, q:-q].sum() / total.sum()
    assert 0.15 <= share <= 0.37, share
    assert total[band].mean() / total.mean() > 0.75
    assert touching / n > 0.4


def test_clipped_defects_keep_exact_masks():
    # defects cut by the border: still exact, non-empty, at least the minimum area
    seen = 0
    for kind in DEFECT_KINDS:
        for clean, (out, mask) in _draw_many(kind, 40, 48):
            assert mask.sum() >= max(6, int(0.003 * mask.size))
            assert np.array_equal((out != clean).any(axis=-1), mask)
            seen += _touches_border(mask)
    assert seen > 40


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defects_are_deterministic(kind):
    clean = _crop(_photo("tissue"), (307, 512), 64, _rng(0, "clean"))
    source = _crop(_photo("grass"), (0, 512), 64, _rng(0, "source")) / 255.0
    draws = [make_defect(kind, clean, _rng(s, kind), source=source) for s in (5, 5, 6)]
    assert np.array_equal(draws[0][0], draws[1][0]) and np.array_equal(draws[0][1], draws[1][1])
    assert not np.array_equal(draws[0][1], draws[2][1])


def test_quick_build_masks_reach_the_border(quick):
    touching = defective = 0
    for cat in QUICK_CATEGORIES:
        for s in load_mvtec(quick, cat).test:
            if s.label:
                defective += 1
                touching += _touches_border(read_mask(s.mask_path))
    assert defective == 24 and touching >= 6


def test_version_is_in_the_cache_key(tmp_path, monkeypatch):
    import xeval.data.textures as T

    kw = {"quick": True, "categories": ["brick"], "n_train": 1, "n_test_good": 1}
    kw.update(n_test_defect_per_kind=1, defects=["hole"])
    a = build_textures(tmp_path, **kw)
    assert a.name.startswith(f"textures-v{TEXTURES_VERSION}-")
    assert json.loads((a / "dataset.json").read_text())["version"] == TEXTURES_VERSION
    monkeypatch.setattr(T, "TEXTURES_VERSION", TEXTURES_VERSION + 1)
    b = build_textures(tmp_path, **kw)  # a new version is rebuilt, not read from the old
    assert b != a and b.name.startswith(f"textures-v{TEXTURES_VERSION + 1}-")


def test_card_states_the_current_version():
    from xeval.data.cards import dataset_card

    card = dataset_card("textures")
    assert card["version"] == TEXTURES_VERSION
    assert "measured" in card


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XEVAL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("XEVAL_CACHE")
    assert default_cache_dir().name == "xeval"
