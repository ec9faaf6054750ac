"""The built-in synthetic video benchmark: layout, determinism, cache, exact masks,
reasons, tracks, vocabulary, build time, card, read-back."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from xeval.data.video import synthetic as sv
from xeval.data.video.synthetic import (
    EVENTS,
    SYNTHETIC_VIDEO_VERSION,
    build_synthetic_video,
    describe,
    read_synthetic_video,
    synthetic_video_params,
)
from xeval.data.video.tracks import read_merl_tracks
from xeval.errors import InputError
from xeval.registry import VIDEO_DATASETS, option_spec

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return build_synthetic_video(root=tmp_path_factory.mktemp("cache"), quick=True)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _card(path: Path) -> dict:
    return json.loads((path / "benchmark.json").read_text())


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _video(path: Path, split: str, vid: str) -> np.ndarray:
    folder = path / split / "frames" / vid
    return np.stack([_png(f) for f in sorted(folder.glob("*.png"))])


def _test_ids(path: Path) -> list[str]:
    return sorted(_card(path)["test_videos"])


# ----------------------------------------------------------------------------- layout
def test_quick_layout_and_shapes(quick):
    card = _card(quick)
    p = card["params"]
    assert (p["n_train"], p["n_test"], p["n_frames"]) == (2, 2, 30)
    assert card["version"] == SYNTHETIC_VIDEO_VERSION and card["seed"] == 0
    assert card["key"] == quick.name
    train = sorted(d.name for d in (quick / "training" / "frames").iterdir())
    test = sorted(d.name for d in (quick / "testing" / "frames").iterdir())
    assert train == card["train_videos"] == ["01_0001", "01_0002"]
    assert test == _test_ids(quick) == ["01_0003", "01_0004"]
    names = [f"{t:03d}.png" for t in range(30)]
    for split, ids in (("training", train), ("testing", test)):
        for vid in ids:
            files = sorted(f.name for f in (quick / split / "frames" / vid).iterdir())
            assert files == names
            f = _png(quick / split / "frames" / vid / "000.png")
            assert f.shape == (96, 128, 3) and f.dtype == np.uint8
    for vid in test:
        fm = np.load(quick / "testing" / "test_frame_mask" / f"{vid}.npy", allow_pickle=False)
        pm = np.load(quick / "testing" / "test_pixel_mask" / f"{vid}.npy", allow_pickle=False)
        assert fm.dtype == np.uint8 and fm.shape == (30,) and set(np.unique(fm)) == {0, 1}
        assert pm.dtype == np.uint8 and pm.shape == (30, 96, 128) and set(np.unique(pm)) == {0, 1}
        assert np.array_equal(fm.astype(bool), pm.any(axis=(1, 2)))
        assert (quick / "testing" / "test_tracks" / f"{vid}.txt").is_file()
    assert not list(quick.parent.glob(".*tmp-*"))  # no temporary folder left behind


def test_background_is_static_and_noise_small(quick):
    """Training frames differ from the clean background only by sensor noise (sigma 2)
    and by the pedestrians."""
    p = _card(quick)["params"]
    bg = sv._background(0, p).astype(np.int16)
    frames = _video(quick, "training", "01_0001").astype(np.int16)
    d = np.abs(frames - bg).max(axis=-1)
    quiet = d[d <= 12]
    assert quiet.size > 0.85 * d.size  # most pixels are background
    resid = (frames - bg)[np.broadcast_to((d <= 12)[..., None], frames.shape)]
    assert 1.6 < resid.std() < 2.4 and abs(resid.mean()) < 0.1


# ----------------------------------------------------------------------------- determinism
def test_deterministic_cached_and_keyed(quick, tmp_path, monkeypatch):
    before = (quick / "benchmark.json").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("rebuilt instead of reused")

    with monkeypatch.context() as m:
        m.setattr(sv, "_write_dataset", boom)
        assert build_synthetic_video(root=quick.parent, quick=True) == quick  # reused
    assert (quick / "benchmark.json").stat().st_mtime_ns == before
    again = build_synthetic_video(root=tmp_path / "a", quick=True)
    assert again.name == quick.name and _files(again) == _files(quick)  # same bytes
    # another seed: another key and other content (rendered in memory, no second build)
    p = synthetic_video_params(quick=True)
    assert sv._cache_key(p, 1) != quick.name
    assert not np.array_equal(sv._background(1, p), sv._background(0, p))
    bg = sv._background(0, p)
    _, r0 = sv._make_video(0, p, bg, "test", "01_0003", 0)
    _, r1 = sv._make_video(1, p, bg, "test", "01_0003", 0)
    assert np.array_equal(r0.frames, _video(quick, "testing", "01_0003"))
    assert not np.array_equal(r1.frames, r0.frames)
    assert r1.reasons != r0.reasons or not np.array_equal(r1.masks, r0.masks)
    # other parameters: another key
    for kw in ({"n_frames": 31}, {"n_train": 3}, {"n_test": 1}):
        assert sv._cache_key(synthetic_video_params(quick=True, **kw), 0) != quick.name
    params = synthetic_video_params(quick=True)
    key = sv._cache_key(params, 0)
    assert key == quick.name
    monkeypatch.setattr(sv, "SYNTHETIC_VIDEO_VERSION", SYNTHETIC_VIDEO_VERSION + 1)
    assert sv._cache_key(params, 0) != key


def test_bad_parameters_are_input_errors(tmp_path):
    for kw, word in (
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"quick": "yes"}, "quick"),
        ({"n_frames": 5}, "n_frames"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": 2.0}, "n_test"),
        ({"root": 3}, "root"),
    ):
        with pytest.raises(InputError, match=word):
            build_synthetic_video(**{"root": tmp_path, **kw})
    assert not any(tmp_path.iterdir())  # nothing written


# ----------------------------------------------------------------------------- ground truth
def _expected_masks(agents, n_frames: int, hw: tuple[int, int]) -> np.ndarray:
    """Brute-force reference: paste each anomalous agent's alpha at its rounded position,
    pixel by pixel."""
    out = np.zeros((n_frames, *hw), dtype=bool)
    for a in agents:
        h, w = a.alpha.shape
        for t in range(n_frames):
            if not a.reasons[t]:
                continue
            x0 = int(np.floor(a.pos[t, 0] + 0.5))
            y0 = int(np.floor(a.pos[t, 1] + 0.5))
            for yy in range(h):
                for xx in range(w):
                    y, x = y0 + yy, x0 + xx
                    if a.alpha[yy, xx] and 0 <= y < hw[0] and 0 <= x < hw[1]:
                        out[t, y, x] = True
    return out


def test_masks_are_exactly_the_anomalous_sprites(quick):
    card = _card(quick)
    p = card["params"]
    bg = sv._background(0, p).astype(np.int16)
    for index, vid in enumerate(_test_ids(quick)):
        agents, _ = sv._make_video(0, p, sv._background(0, p), "test", vid, index)
        masks = np.load(quick / "testing" / "test_pixel_mask" / f"{vid}.npy").astype(bool)
        assert np.array_equal(masks, _expected_masks(agents, p["n_frames"], bg.shape[:2]))
        frames = _video(quick, "testing", vid).astype(np.int16)
        changed = np.abs(frames - bg).max(axis=-1) > 12  # 6 sigma of the sensor noise
        assert not (masks & ~changed).any()  # every mask pixel is a visible sprite pixel
        labels = masks.any(axis=(1, 2))
        assert labels.any() and not labels.all()  # normal and anomalous frames
        assert changed[~labels].any()  # normal frames still show (normal) pedestrians


def test_every_anomalous_frame_has_reasons_and_normal_frames_none(quick):
    xman = json.loads((quick / "xman_reasons.json").read_text())
    card = _card(quick)
    vocab = {tuple(r) for e in EVENTS.values() for r in e["reasons"]}
    seen = set()
    for vid in _test_ids(quick):
        labels = np.load(quick / "testing" / "test_frame_mask" / f"{vid}.npy").astype(bool)
        keys = {k for k in xman if k.startswith(vid + "/")}
        assert all(re.fullmatch(rf"{vid}/\d{{3}}", k) for k in keys)
        assert keys == {f"{vid}/{t:03d}" for t in np.flatnonzero(labels)}
        # the reasons of a frame are the union of its anomalies' reasons in that frame
        expected: dict[int, set] = {}
        for a in card["test_videos"][vid]["anomalies"]:
            for name, (first, last, count) in a["frames_by_reason"].items():
                c, f = name.split(": ", 1)
                assert last - first + 1 == count  # one contiguous run per reason
                for t in range(first, last + 1):
                    expected.setdefault(t, set()).add((c, f))
        for k in keys:
            t = int(k.split("/")[1])
            got = {tuple(r) for r in xman[k]}
            assert got and got == expected[t] and got <= vocab
            assert len(got) == len(xman[k])  # no repeats
            seen |= got
    assert len(seen) >= 4 and len({c for c, _ in seen}) == 3


def test_tracks_enclose_the_masks_tightly(quick):
    card = _card(quick)
    names = [f"{t:03d}.png" for t in range(card["params"]["n_frames"])]
    for vid in _test_ids(quick):
        masks = np.load(quick / "testing" / "test_pixel_mask" / f"{vid}.npy").astype(bool)
        path = quick / "testing" / "test_tracks" / f"{vid}.txt"
        regions = read_merl_tracks(path, frame_names=names)
        # the file itself: 6 fields, frame file name, integer track id
        for line in path.read_text().splitlines():
            f = line.split()
            assert len(f) == 6 and f[0] in names and f[1].isdigit()
        anomalies = card["test_videos"][vid]["anomalies"]
        assert sorted(set(regions[:, 1].astype(int))) == [a["track_id"] for a in anomalies]
        for a in anomalies:  # one box per frame of the track's contiguous segment
            fr = regions[regions[:, 1] == a["track_id"], 0].astype(int)
            assert fr.tolist() == list(range(a["first_frame"], a["last_frame"] + 1))
        for t in range(len(masks)):
            boxes = regions[regions[:, 0] == t, 2:].astype(int)
            assert len(boxes) == 0 if not masks[t].any() else len(boxes) > 0
            cover = np.zeros_like(masks[t])
            for x1, y1, x2, y2 in boxes:
                assert 0 <= x1 < x2 <= masks.shape[2] and 0 <= y1 < y2 <= masks.shape[1]
                cover[y1:y2, x1:x2] = True
                inside = masks[t, y1:y2, x1:x2]
                # tight: the mask touches all four sides of the box
                assert inside[0].any() and inside[-1].any()
                assert inside[:, 0].any() and inside[:, -1].any()
            assert not (masks[t] & ~cover).any()


def test_anomalies_are_distinguishable_by_attributes(quick):
    """Normal agents stay in their ranges (speed 1-2 px/frame, horizontal, on the
    walkway, normal size); each planted reason breaks exactly the attribute it names."""
    p = _card(quick)["params"]
    y0, y1 = p["walkway"]
    bg = sv._background(0, p)
    checked = set()
    for split, ids in (("train", ["01_0001", "01_0002"]), ("test", ["01_0003", "01_0004"])):
        for index, vid in enumerate(ids):
            agents, _ = sv._make_video(0, p, bg, split, vid, index)
            for a in agents:
                h, w = a.alpha.shape
                vel = np.diff(a.pos, axis=0)
                for t in range(1, len(a.pos)):
                    rs = set(a.reasons[t])
                    speed = np.hypot(*vel[t - 1])
                    top, bottom = a.pos[t, 1], a.pos[t, 1] + h
                    if ("action", "too fast") in rs:
                        assert speed >= 3.0
                    elif ("action", "loitering") in rs:
                        assert speed == 0.0
                    elif ("action", "wrong direction") in rs:
                        assert vel[t - 1, 0] == 0 and 1.0 <= abs(vel[t - 1, 1]) <= 2.0
                    else:
                        assert 1.0 <= speed <= 2.0 + 1e-9
                        assert abs(vel[t - 1, 1]) <= p["max_drift"] + 1e-12
                    if ("location", "forbidden location") in rs:
                        assert bottom <= y0 or top >= y1
                    elif a.kind != "vehicle" or not rs:
                        assert y0 <= top and bottom <= y1
                    if ("object", "unusual size") in rs:
                        assert h >= 26
                    elif ("object", "unusual object") in rs:
                        assert a.kind == "vehicle" and w > h
                    else:
                        assert a.kind == "pedestrian" and 12 <= h <= 16 and 6 <= w <= 8
                    checked |= rs
            if split == "train":
                assert all(a.event is None for a in agents)
    assert len(checked) == 4


# ----------------------------------------------------------------------------- default build
def test_default_plan_size_and_vocabulary():
    """The default test set, rendered in memory (no files): 600-800 frames, every event
    kind planted with a track, >= 5 fine reasons in >= 3 coarse classes, normal and
    anomalous frames in every video, multi-reason frames."""
    p = synthetic_video_params()
    bg = sv._background(0, p)
    reasons, planted, n_frames, n_anomalous, multi = set(), set(), 0, 0, 0
    for index in range(p["n_test"]):
        vid = sv._video_id(p["n_train"] + index + 1)
        _, r = sv._make_video(0, p, bg, "test", vid, index)
        labels = r.masks.any(axis=(1, 2))
        assert 0 < labels.sum() < len(labels), vid
        assert sorted(r.reasons) == np.flatnonzero(labels).tolist()
        for rs in r.reasons.values():
            reasons |= set(rs)
            multi += len(rs) > 1
        for a in r.anomalies:
            planted.add(a["event"])
            assert a["n_frames"] >= 8 and a["last_frame"] - a["first_frame"] + 1 == a["n_frames"]
        n_frames += len(labels)
        n_anomalous += int(labels.sum())
    assert 600 <= n_frames <= 800
    assert 0.3 < n_anomalous / n_frames < 0.75
    assert planted == set(EVENTS)
    assert len(reasons) >= 5 and len({c for c, _ in reasons}) >= 3
    assert reasons == {tuple(r) for e in EVENTS.values() for r in e["reasons"]}
    assert multi > 0  # fast vehicle, loitering on the grass
    assert set(describe()) == set(EVENTS) and all(d["how"] for d in describe().values())


@pytest.mark.parametrize("seed", [1, 2, 3, 7])
def test_every_planted_event_gives_one_track_whatever_the_seed(seed):
    p = synthetic_video_params(quick=True)
    bg = sv._background(seed, p)
    for index in range(p["n_test"]):
        vid = sv._video_id(p["n_train"] + index + 1)
        _, r = sv._make_video(seed, p, bg, "test", vid, index)
        planted = [k for k, _, _ in sv._test_events(index, p, p["n_frames"])]
        assert sorted(a["event"] for a in r.anomalies) == sorted(planted)
        labels = r.masks.any(axis=(1, 2))
        assert 0 < labels.sum() < len(labels)
        assert sorted(r.reasons) == np.flatnonzero(labels).tolist()
        assert sorted(set(r.regions[:, 0].astype(int))) == sorted(r.reasons)


@pytest.mark.slow
def test_default_build_time_and_card(tmp_path):
    t0 = time.perf_counter()
    path = build_synthetic_video(root=tmp_path)
    seconds = time.perf_counter() - t0
    assert seconds < 20.0, f"default build took {seconds:.1f} s"
    card = _card(path)
    c = card["counts"]
    assert c["test_frames"] == 720 and c["train_frames"] == 240 and c["tracks"] == 24
    xman = json.loads((path / "xman_reasons.json").read_text())
    assert len(xman) == c["anomalous_test_frames"]
    assert {tuple(r) for r in card["reasons"]} == {tuple(r) for rs in xman.values() for r in rs}
    assert card["events"] == describe()
    print(f"default synthetic_video build: {seconds:.2f} s")


# ----------------------------------------------------------------------------- card, read-back
def test_card_matches_the_reader():
    card = yaml.safe_load((ROOT / "datasets" / "synthetic_video.yaml").read_text())
    assert card["format"] == "synthetic_video" and card["name"] == "synthetic_video"
    for key in ("name", "description", "layout", "license", "source", "options"):
        assert key in card, key
    # registered on import (VIDEO_DATASETS.get would import every video reader module)
    assert VIDEO_DATASETS._entries["synthetic_video"] is read_synthetic_video
    reader = set(option_spec(read_synthetic_video)) - {"seed"}
    assert set(card["options"]) - {"seed"} == reader
    assert card["version"] == SYNTHETIC_VIDEO_VERSION


@pytest.mark.skipif(
    importlib.util.find_spec("xeval.data.video.shanghaitech") is None,
    reason="the ShanghaiTech reader is not there yet",
)
def test_read_back_with_the_shanghaitech_reader(quick):
    ds = read_synthetic_video(quick=True, root=str(quick.parent))
    ds.validate()
    assert ds.name == "synthetic_video" and ds.root == quick
    assert quick.name in ds.conventions["benchmark"]
    card = _card(quick)
    assert [v.video_id for v in ds.train] == card["train_videos"]
    assert [v.video_id for v in ds.test] == _test_ids(quick)
    xman = json.loads((quick / "xman_reasons.json").read_text())
    assert set(ds.vocabulary.fine) == {tuple(r) for rs in xman.values() for r in rs}
    names = [f"{t:03d}.png" for t in range(30)]
    for v in ds.test:
        assert v.n_frames == 30 and v.frame_size == (96, 128)
        assert np.array_equal(v.frames(), _video(quick, "testing", v.video_id))
        masks = np.load(quick / "testing" / "test_pixel_mask" / f"{v.video_id}.npy")
        assert np.array_equal(v.masks(), masks.astype(bool))
        assert np.array_equal(v.labels, masks.any(axis=(1, 2)))
        want = read_merl_tracks(
            quick / "testing" / "test_tracks" / f"{v.video_id}.txt", frame_names=names
        )
        assert np.array_equal(v.regions, want)
        got = {t: set(rs) for t, rs in v.reasons.items()}
        assert got == {
            int(k.split("/")[1]): {tuple(r) for r in rs}
            for k, rs in xman.items()
            if k.startswith(v.video_id + "/")
        }
