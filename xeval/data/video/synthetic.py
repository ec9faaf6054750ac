"""The built-in synthetic video benchmark ``synthetic_video``: a static scene with a
walkway, pedestrians walking along it, and planted anomalies with known reasons.

Scene
-----
One fixed camera (the same background in every video of a seed): an RGB
``96 x 128`` frame with a horizontal paved **walkway** (rows ``[28, 76)``: staggered
paving stones with darker joints, a light kerb on both sides) between two strips of
**grass** (smooth multi-scale green noise with grain). The background is static; every
frame gets independent Gaussian sensor noise (sigma 2 grey levels, seeded), rounded and
clipped.

**Normal traffic** (training and test videos): pedestrians, drawn as upright ellipses
``h x w`` with ``h`` in 12..16 and ``w`` in 6..8 pixels, a skin-coloured head, a
saturated shirt (plain or striped) and dark trousers, plus a fixed per-pixel texture
that moves with the sprite (a frame-difference detector sees all motion). Each walks
horizontally, left or right, at 1..2 px/frame with a vertical drift of at most
0.08 px/frame, entirely inside the walkway. Two to four pedestrians are in view at
frame 0 and new ones enter at either side (about one every 30 frames). Sprite pixels
differ from the background under them by at least 24 grey levels in some channel
(pushed away from it where the texture came too close), far above the noise.

Planted anomalies (test videos only)
------------------------------------
Each test video holds two planted events (one in each half of its timeline) among its
normal traffic; the event kinds cycle through :data:`EVENT_CYCLE`, so the default test
set plants every kind at least once. A frame is anomalous exactly when a planted agent
is *anomalous in that frame* and at least one of its pixels is in view; its reasons
are the union of the reasons of such agents (X-MAN-style ``(coarse, fine)`` pairs).
The kinds, with the reasons they carry and how they are planted (see also
:data:`EVENTS`):

``too_fast`` - ``("action", "too fast")``:
    a pedestrian that walks normally, then runs horizontally at 3..4 times its walking
    speed (3..8 px/frame, above every normal speed) for the segment, then walks on.
``wrong_direction`` - ``("action", "wrong direction")``:
    a pedestrian that walks along the walkway, then turns and walks vertically across it
    (1..2 px/frame, from one kerb towards the other, staying on the walkway), then
    resumes walking along it.
``loitering`` - ``("action", "loitering")``:
    a pedestrian that walks along the walkway, stands perfectly still for the segment,
    then walks on (invisible to a pure frame-difference detector while it stands).
``unusual_object`` - ``("object", "unusual object")``:
    a vehicle: a dark, wide rectangular box (20..24 x 11..13 pixels, rounded corners,
    light windows, black wheels) driving along the walkway at walking speed.
``unusual_size`` - ``("object", "unusual size")``:
    a pedestrian twice the normal size (26..30 x 12..16 pixels) walking normally.
``forbidden_location`` - ``("location", "forbidden location")``:
    a normal pedestrian walking normally, but on the grass (fully outside the walkway),
    where nobody walks in training.
``fast_vehicle`` - ``("object", "unusual object")`` and ``("action", "too fast")``:
    the vehicle at 3..4 times walking speed.
``loitering_on_grass`` - ``("location", "forbidden location")`` in every frame it is in
    view, plus ``("action", "loitering")`` in the frames where it stands still: a
    pedestrian standing on the grass (at the start of the video, then walking away on
    the grass) or walking onto it and stopping (at the end).

Behaviour events (``too_fast``, ``wrong_direction``, ``loitering``) change what an agent
already in view does, so their segment is a chosen window of frames; whole-agent events
(the others) are anomalous for as long as the agent is in view, so they are planted at
the start of the video (in view at frame 0, leaving after the segment) or at its end
(entering at the segment's first frame). A frame's incoming motion defines its action:
``too fast``/``loitering``/``wrong direction`` hold in the frames whose displacement
from the previous frame is fast/zero/vertical. Every test video therefore has normal
and anomalous frames. Planted agents are drawn above normal ones while anomalous.

Ground truth
------------
Pixel masks are exactly the in-view pixels of the agents that are anomalous in the
frame; tracks are one per anomalous agent and contiguous anomalous segment, with one
box per frame: the tight box of the agent's in-view sprite, in continuous pixel
coordinates ``x2 = last column + 1``. They are written in the ShanghaiTech-like layout
read by :func:`xeval.data.video.shanghaitech.read_shanghaitech`::

    <root>/training/frames/01_VVVV/NNN.png
    <root>/testing/frames/01_VVVV/NNN.png
    <root>/testing/test_frame_mask/01_VVVV.npy     (T,) uint8 0/1
    <root>/testing/test_pixel_mask/01_VVVV.npy     (T, H, W) uint8 0/1
    <root>/testing/test_tracks/01_VVVV.txt         MERL: <file> <track_id> <xc> <yc> <w> <h>
    <root>/xman_reasons.json                       {"01_VVVV/NNN": [[coarse, fine], ...]}
    <root>/benchmark.json                          parameters, version, planted anomalies

Video ids run ``01_0001..`` over the training videos, then on over the test videos (ids
are unique across the dataset); frame files ``000.png, 001.png, ...`` (frame ``n`` is
file ``n``). The dataset is built in a temporary folder renamed atomically into the
cache folder (``$XEVAL_CACHE`` or ``~/.cache/xeval``, ``/synthetic_video/<key>``; the key
holds the version, size, seed and a hash of every parameter); ``benchmark.json`` is
written last. Same seed and parameters: byte-identical files.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import numbers
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from xeval.data.textures import default_cache_dir
from xeval.data.video.base import Reason, VideoDataset
from xeval.errors import InputError
from xeval.progress import progress
from xeval.registry import VIDEO_DATASETS
from xeval.rng import rng as make_rng

__all__ = [
    "SYNTHETIC_VIDEO_VERSION",
    "EVENTS",
    "EVENT_CYCLE",
    "build_synthetic_video",
    "describe",
    "read_synthetic_video",
    "synthetic_video_params",
]

#: Bump when the generated content changes (it is part of the cache key).
SYNTHETIC_VIDEO_VERSION = 1

_DEFAULTS = {"n_train": 4, "n_test": 12, "n_frames": 60}
_QUICK = {"n_train": 2, "n_test": 2, "n_frames": 30}
_SCENE = {
    "height": 96,
    "width": 128,
    "walkway": [28, 76],  # rows [top, bottom)
    "noise_sigma": 2.0,  # grey levels
    "walk_speed": [1.0, 2.0],  # px/frame
    "fast_factor": [3.0, 4.0],
    "max_drift": 0.08,  # px/frame, vertical, normal walkers
    "walker_size": [[12, 16], [6, 8]],  # [h range], [w range]
    "giant_size": [[26, 30], [12, 16]],
    "vehicle_size": [[11, 13], [20, 24]],
    "arrival_rate": 0.035,  # new pedestrians per frame
    "initial_walkers": [2, 4],
    "contrast": 24,  # min grey-level difference sprite vs background (max over channels)
    "events_per_video": 2,
}
_CARD = "benchmark.json"
_SCENE_ID = "01"

_TOO_FAST: Reason = ("action", "too fast")
_WRONG_DIR: Reason = ("action", "wrong direction")
_LOITER: Reason = ("action", "loitering")
_OBJECT: Reason = ("object", "unusual object")
_SIZE: Reason = ("object", "unusual size")
_LOCATION: Reason = ("location", "forbidden location")

#: Planted event kind -> agent, reasons and how it is planted.
EVENTS: dict[str, dict] = {
    "too_fast": {
        "agent": "pedestrian",
        "reasons": [_TOO_FAST],
        "how": "a pedestrian walks normally, then runs horizontally at 3-4x its walking speed "
        "(3-8 px/frame) for the segment, then walks on",
    },
    "wrong_direction": {
        "agent": "pedestrian",
        "reasons": [_WRONG_DIR],
        "how": "a pedestrian walks along the walkway, then walks vertically across it "
        "(1-2 px/frame, staying on the walkway) for the segment, then walks along it again",
    },
    "loitering": {
        "agent": "pedestrian",
        "reasons": [_LOITER],
        "how": "a pedestrian walks along the walkway, stands still for the segment, then walks on",
    },
    "unusual_object": {
        "agent": "vehicle",
        "reasons": [_OBJECT],
        "how": "a dark wide box with windows and wheels (20-24 x 11-13 px) drives along the "
        "walkway at walking speed; anomalous while in view",
    },
    "unusual_size": {
        "agent": "giant pedestrian",
        "reasons": [_SIZE],
        "how": "a pedestrian twice the normal size (26-30 x 12-16 px) walks normally along "
        "the walkway; anomalous while in view",
    },
    "forbidden_location": {
        "agent": "pedestrian",
        "reasons": [_LOCATION],
        "how": "a pedestrian walks normally but on the grass, fully outside the walkway; "
        "anomalous while in view",
    },
    "fast_vehicle": {
        "agent": "vehicle",
        "reasons": [_OBJECT, _TOO_FAST],
        "how": "the vehicle at 3-4x walking speed; both reasons while in view",
    },
    "loitering_on_grass": {
        "agent": "pedestrian",
        "reasons": [_LOCATION, _LOITER],
        "how": "a pedestrian on the grass: forbidden location while in view, loitering in the "
        "frames where it stands still (standing at the start of the video then walking "
        "away, or walking in and stopping at the end)",
    },
}

#: Order in which test videos receive event kinds (two per video, cycling).
EVENT_CYCLE: tuple[str, ...] = (
    "too_fast",
    "unusual_object",
    "forbidden_location",
    "wrong_direction",
    "unusual_size",
    "loitering",
    "fast_vehicle",
    "loitering_on_grass",
)
_BEHAVIOUR = {"too_fast", "wrong_direction", "loitering"}


def describe() -> dict[str, dict]:
    """Every planted event kind: ``{kind: {"agent", "reasons", "how"}}`` (reasons as
    ``[coarse, fine]`` lists), as recorded in ``benchmark.json``."""
    return {
        k: {"agent": e["agent"], "reasons": [list(r) for r in e["reasons"]], "how": e["how"]}
        for k, e in EVENTS.items()
    }


# ----------------------------------------------------------------------------- parameters
def synthetic_video_params(
    *,
    quick: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    n_frames: int | None = None,
) -> dict:
    """The resolved build parameters (defaults filled in), validated.

    Default: 4 training and 6 test videos of 60 frames (360 test frames); ``quick``:
    2 and 2 of 30 frames. Explicit counts win. The scene constants (size, walkway rows,
    speeds, sprite sizes, noise) are part of the result and of the cache key.
    """
    if not isinstance(quick, bool):
        raise InputError(f"quick must be true or false, got {quick!r}")
    base = dict(_QUICK if quick else _DEFAULTS)
    given = {"n_train": n_train, "n_test": n_test, "n_frames": n_frames}
    for k, v in given.items():
        if v is not None and (not isinstance(v, numbers.Integral) or isinstance(v, bool)):
            raise InputError(f"{k} must be an integer, got {v!r}")
    base.update({k: int(v) for k, v in given.items() if v is not None})
    for k in ("n_train", "n_test"):
        if not 1 <= base[k] <= 999:
            raise InputError(f"{k} must be between 1 and 999, got {base[k]}")
    if not 20 <= base["n_frames"] <= 1000:
        raise InputError(
            f"n_frames must be between 20 and 1000 (room for two planted events and normal "
            f"frames; 3-digit frame names), got {base['n_frames']}"
        )
    if base["n_train"] + base["n_test"] > 9999:
        raise InputError("n_train + n_test must be at most 9999 (4-digit video ids)")
    return {**base, **json.loads(json.dumps(_SCENE))}


def _check_seed(seed) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# ----------------------------------------------------------------------------- scene
def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    out = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
    return out / max(float(out.std()), 1e-12)


def _background(seed: int, p: dict) -> np.ndarray:
    """The static scene, ``(H, W, 3)`` uint8: grass, walkway with paving, kerbs."""
    rng = make_rng(seed, "synthetic_video", "background")
    h, w = p["height"], p["width"]
    y0, y1 = p["walkway"]
    grain = rng.standard_normal((h, w, 3))
    g = 0.7 * _smooth(rng, (h, w), 6.0) + 0.4 * _smooth(rng, (h, w), 1.5)
    grass = np.array([72.0, 118.0, 52.0]) + g[..., None] * np.array([10.0, 18.0, 8.0])
    grass = grass + grain * np.array([4.0, 7.0, 3.0])
    stone = 0.8 * _smooth(rng, (h, w), 3.0)
    paving = np.array([150.0, 145.0, 136.0]) + stone[..., None] * 8.0 + grain * 5.0
    yy, xx = np.mgrid[0:h, 0:w]
    row = (yy - y0) // 8
    joints = ((yy - y0) % 8 == 0) | ((xx + 6 * (row % 2)) % 12 == 0)
    paving = paving - 28.0 * joints[..., None]
    img = np.where(((yy >= y0) & (yy < y1))[..., None], paving, grass)
    for r in (y0, y0 + 1, y1 - 2, y1 - 1):  # kerbs
        img[r] = np.array([188.0, 186.0, 180.0]) + grain[r] * 4.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _hsv(hue: float, sat: float, val: float) -> np.ndarray:
    return 255.0 * np.array(colorsys.hsv_to_rgb(hue, sat, val))


_SKIN = np.array([[224, 172, 140], [198, 134, 96], [141, 85, 54], [241, 194, 160]], float)


def _walker_sprite(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured upright ellipse: head, shirt (plain or striped), trousers."""
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1.0
    shirt = _hsv(rng.random(), rng.uniform(0.6, 0.95), rng.uniform(0.55, 0.95))
    trousers = _hsv(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.12, 0.4))
    skin = _SKIN[rng.integers(len(_SKIN))]
    head, waist = int(round(0.28 * h)), int(round(0.6 * h))
    rgb = np.empty((h, w, 3))
    rgb[:head] = skin
    rgb[head:waist] = shirt
    rgb[waist:] = trousers
    if rng.random() < 0.5:  # stripes
        rgb[head:waist][(np.arange(head, waist) % 2 == 0)] *= 0.7
    rgb += rng.normal(0.0, 14.0, rgb.shape)
    return np.clip(rgb, 0, 255), alpha


def _vehicle_sprite(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A dark wide box with rounded corners, light windows and black wheels."""
    alpha = np.ones((h, w), dtype=bool)
    alpha[[0, 0, -1, -1], [0, -1, 0, -1]] = False
    body = _hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.12, 0.28))
    rgb = np.broadcast_to(body, (h, w, 3)).copy()
    wy = slice(2, max(3, h // 2))
    for x0 in range(3, w - 5, 6):
        rgb[wy, x0 : x0 + 4] = np.array([120.0, 140.0, 165.0])
    rgb[h - 3 :, 2:6] = 15.0
    rgb[h - 3 :, w - 6 : w - 2] = 15.0
    rgb += rng.normal(0.0, 8.0, rgb.shape)
    return np.clip(rgb, 0, 255), alpha


def _size(rng: np.random.Generator, spec: list) -> tuple[int, int]:
    (h0, h1), (w0, w1) = spec
    return int(rng.integers(h0, h1 + 1)), int(rng.integers(w0, w1 + 1))


@dataclass
class _Agent:
    """One sprite and its trajectory: ``pos[t] = (x, y)`` of its top-left corner (float,
    rounded half up when drawn) and its reasons in each frame (empty: normal)."""

    kind: str  # "pedestrian", "giant pedestrian", "vehicle"
    event: str | None  # planted event kind, None for normal traffic
    rgb: np.ndarray
    alpha: np.ndarray
    pos: np.ndarray  # (T, 2)
    reasons: list[tuple[Reason, ...]]


def _integrate(vel: np.ndarray, anchor: int, where: tuple[float, float]) -> np.ndarray:
    """Positions whose frame-to-frame displacement ``pos[t] - pos[t - 1]`` is ``vel[t]``
    (``vel[0]`` unused) and ``pos[anchor] == where``."""
    pos = np.cumsum(np.concatenate([np.zeros((1, 2)), vel[1:]]), axis=0)
    return pos - pos[anchor] + np.asarray(where, dtype=np.float64)


def _walker(rng: np.random.Generator, p: dict, *, giant: bool = False):
    h, w = _size(rng, p["giant_size" if giant else "walker_size"])
    rgb, alpha = _walker_sprite(rng, h, w)
    return rgb, alpha, h, w


def _band_y(rng: np.random.Generator, p: dict, h: int, margin: int = 2) -> float:
    y0, y1 = p["walkway"]
    return float(rng.integers(y0 + margin, y1 - margin - h + 1))


def _grass_y(rng: np.random.Generator, p: dict, h: int) -> float:
    y0, y1 = p["walkway"]
    top = (2, y0 - 2 - h)
    bottom = (y1 + 2, p["height"] - 2 - h)
    lo, hi = top if (rng.random() < 0.5 and top[1] >= top[0]) or bottom[1] < bottom[0] else bottom
    return float(rng.integers(lo, hi + 1))


def _normal_traffic(rng: np.random.Generator, p: dict, n_frames: int) -> list[_Agent]:
    """Pedestrians in view at frame 0 plus arrivals at either side."""
    width = p["width"]
    agents = []
    starts = [(0, None)] * int(rng.integers(p["initial_walkers"][0], p["initial_walkers"][1] + 1))
    starts += [(int(t), "edge") for t in np.flatnonzero(rng.random(n_frames) < p["arrival_rate"])]
    y0, y1 = p["walkway"]
    for t0, how in starts:
        rgb, alpha, h, w = _walker(rng, p)
        d = 1.0 if rng.random() < 0.5 else -1.0
        v = rng.uniform(*p["walk_speed"])
        drift = rng.uniform(-p["max_drift"], p["max_drift"])
        x = (
            float(rng.uniform(-w / 2, width - w / 2))
            if how is None
            else (-w + 1.0 if d > 0 else width - 1.0)
        )
        t = np.arange(n_frames) - t0
        pos = np.stack([x + d * v * t, _band_y(rng, p, h) + drift * t], axis=1)
        pos[:, 1] = np.clip(pos[:, 1], y0 + 1, y1 - 1 - h)
        agents.append(_Agent("pedestrian", None, rgb, alpha, pos, [()] * n_frames))
    return agents


# ----------------------------------------------------------------------------- events
def _mirror(x: np.ndarray, w: int, width: int) -> np.ndarray:
    """x of the left-right mirrored motion (top-left corner of a ``w``-wide sprite)."""
    return width - w - x


def _plan_event(
    kind: str, rng: np.random.Generator, p: dict, n_frames: int, part: tuple[int, int], slot: str
) -> _Agent:
    """One planted agent of ``kind`` for the timeline ``part`` ``[p0, p1)``; ``slot`` is
    ``"start"``, ``"end"`` or ``"middle"`` (where whole-agent events are placed)."""
    width, T = p["width"], n_frames
    p0, p1 = part
    plen = p1 - p0
    seg = int(rng.integers(max(3, round(0.5 * plen)), max(4, round(0.7 * plen)) + 1))
    d = 1.0 if rng.random() < 0.5 else -1.0
    v = rng.uniform(*p["walk_speed"])
    fast = v * rng.uniform(*p["fast_factor"])
    reasons: list[tuple[Reason, ...]] = [()] * T
    vel = np.zeros((T, 2))
    giant = kind == "unusual_size"
    if kind in ("unusual_object", "fast_vehicle"):
        h, w = _size(rng, p["vehicle_size"])
        rgb, alpha = _vehicle_sprite(rng, h, w)
        agent_kind = "vehicle"
    else:
        rgb, alpha, h, w = _walker(rng, p, giant=giant)
        agent_kind = "giant pedestrian" if giant else "pedestrian"
    tags = tuple(EVENTS[kind]["reasons"])

    if kind in _BEHAVIOUR:
        s = p0 + int(rng.integers(2, max(3, plen // 6) + 1))
        seg = max(2, min(seg, p1 - 1 - s))
        y = _band_y(rng, p, h)
        vel[:, 0] = v
        if kind == "too_fast":
            seg = max(2, min(seg, int((width - w - 4) // fast)))
            vel[s : s + seg, 0] = fast
            x_s = rng.uniform(2, width - w - 2 - seg * fast)
        elif kind == "loitering":
            vel[s : s + seg, 0] = 0.0
            x_s = rng.uniform(8, width - w - 8)
        else:  # wrong_direction: across the walkway, kerb to kerb at most
            y0, y1 = p["walkway"]
            lo, hi = y0 + 2, y1 - 2 - h
            seg = max(2, min(seg, int((hi - lo) // v)))
            down = rng.random() < 0.5
            y = float(lo if down else hi)
            vel[s : s + seg, 0] = 0.0
            vel[s : s + seg, 1] = v if down else -v
            x_s = rng.uniform(6, width - w - 6)
        pos = _integrate(vel, s - 1, (x_s, y))
        if d < 0:
            pos[:, 0] = _mirror(pos[:, 0], w, width)
        for t in range(s, s + seg):
            reasons[t] = tags
        return _Agent(agent_kind, kind, rgb, alpha, pos, reasons)

    # whole-agent events: anomalous in every frame where the agent is in view
    speed = fast if kind == "fast_vehicle" else v
    if kind in ("forbidden_location", "loitering_on_grass"):
        y = _grass_y(rng, p, h)
    else:
        y = _band_y(rng, p, h)
    vel[:, 0] = speed
    if kind == "loitering_on_grass":
        stand = max(2, int(round(0.6 * seg)))
        if slot == "start":  # standing at frame 0 (in full view), then walking away
            vel[1:stand, 0] = 0.0
            x_stand = min(width - w - 2.0, width - speed * (seg - stand))
            pos = _integrate(vel, 0, (x_stand, y))
            for t in range(T):
                reasons[t] = (_LOCATION, _LOITER) if t < stand else (_LOCATION,)
        else:  # walking in, stopping until the end
            t_in = T - seg if slot == "end" else p0 + 2
            # in full view before it stops, after about 40 % of the segment
            walk_in = max(int(np.ceil((w + 4) / speed)), int(round(0.4 * seg)))
            t_stop = min(T - 3, t_in + walk_in)
            t_end = min(T, t_stop + stand) if slot == "middle" else T
            vel[t_stop:t_end, 0] = 0.0
            pos = _integrate(vel, t_in, (-w + 1.0, y))
            for t in range(T):
                reasons[t] = (_LOCATION, _LOITER) if t_stop <= t < t_end else (_LOCATION,)
    else:
        if slot == "start":  # in view at frame 0, leaving after about seg frames
            x0 = max(width - speed * seg, -w / 2)
            pos = _integrate(vel, 0, (x0, y))
        else:  # entering at the segment's first frame
            t_in = T - seg if slot == "end" else p0 + 2
            pos = _integrate(vel, t_in, (-w + 1.0, y))
        reasons = [tags] * T
    if d < 0:
        pos[:, 0] = _mirror(pos[:, 0], w, width)
    return _Agent(agent_kind, kind, rgb, alpha, pos, reasons)


def _test_events(index: int, p: dict, n_frames: int) -> list[tuple[str, tuple[int, int], str]]:
    """The events of test video ``index``: (kind, timeline part, slot)."""
    n = p["events_per_video"]
    out = []
    for j in range(n):
        kind = EVENT_CYCLE[(index * n + j) % len(EVENT_CYCLE)]
        part = (j * n_frames // n, (j + 1) * n_frames // n)
        slot = "start" if j == 0 else "end" if j == n - 1 else "middle"
        out.append((kind, part, slot))
    return out


# ----------------------------------------------------------------------------- rendering
def _window(pos_xy: np.ndarray, shape: tuple[int, int], frame: tuple[int, int]):
    """The in-view part of a sprite at ``pos_xy``: (frame slices, sprite slices) or None."""
    x = int(np.floor(pos_xy[0] + 0.5))
    y = int(np.floor(pos_xy[1] + 0.5))
    h, w = shape
    fy0, fy1 = max(y, 0), min(y + h, frame[0])
    fx0, fx1 = max(x, 0), min(x + w, frame[1])
    if fy0 >= fy1 or fx0 >= fx1:
        return None
    return (
        (slice(fy0, fy1), slice(fx0, fx1)),
        (slice(fy0 - y, fy1 - y), slice(fx0 - x, fx1 - x)),
    )


def _contrasted(sprite: np.ndarray, under: np.ndarray, margin: float) -> np.ndarray:
    """``sprite`` pixels pushed away from the background ``under`` them so that every
    pixel differs from it by at least ``margin`` in some channel."""
    diff = np.abs(sprite - under).max(axis=-1)
    weak = diff < margin
    if weak.any():
        u = under[weak]
        step = np.where(u.mean(axis=-1, keepdims=True) > 127.5, -margin, margin)
        sprite = sprite.copy()
        sprite[weak] = np.clip(u + step, 0, 255)
    return sprite


@dataclass
class _Rendered:
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) bool
    regions: np.ndarray  # (n, 6) rows (frame, track_id, x1, y1, x2, y2)
    reasons: dict[int, tuple[Reason, ...]]
    anomalies: list[dict]


def _render(
    agents: list[_Agent], bg: np.ndarray, p: dict, n_frames: int, noise: np.random.Generator
) -> _Rendered:
    hw = bg.shape[:2]
    bgf = bg.astype(np.float64)
    frames = np.empty((n_frames, *hw, 3), dtype=np.uint8)
    masks = np.zeros((n_frames, *hw), dtype=bool)
    boxes: dict[int, dict[int, tuple[int, int, int, int]]] = {}  # agent -> frame -> box
    frame_reasons: dict[int, set] = {}
    for t in range(n_frames):
        canvas = bgf.copy()
        # normal-now agents first (farther ones, smaller y, behind), anomalous-now on top
        order = sorted(
            range(len(agents)),
            key=lambda i: (bool(agents[i].reasons[t]), agents[i].pos[t, 1], i),
        )
        for i in order:
            a = agents[i]
            win = _window(a.pos[t], a.alpha.shape, hw)
            if win is None:
                continue
            (fy, fx), (sy, sx) = win
            al = a.alpha[sy, sx]
            if not al.any():
                continue
            sprite = _contrasted(a.rgb[sy, sx], bgf[fy, fx], p["contrast"])
            region = canvas[fy, fx]
            region[al] = sprite[al]
            if a.reasons[t]:
                masks[t, fy, fx] |= al
                rows, cols = np.flatnonzero(al.any(axis=1)), np.flatnonzero(al.any(axis=0))
                boxes.setdefault(i, {})[t] = (
                    fx.start + int(cols[0]),
                    fy.start + int(rows[0]),
                    fx.start + int(cols[-1]) + 1,
                    fy.start + int(rows[-1]) + 1,
                )
                frame_reasons.setdefault(t, set()).update(a.reasons[t])
        canvas += np.rint(noise.normal(0.0, p["noise_sigma"], canvas.shape))
        frames[t] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    regions, anomalies = [], []
    track = 0
    for i in sorted(boxes, key=lambda i: (min(boxes[i]), i)):
        ts = sorted(boxes[i])
        runs = np.split(np.asarray(ts), np.flatnonzero(np.diff(ts) > 1) + 1)
        a = agents[i]
        for run in runs:
            track += 1
            for t in run:
                regions.append((int(t), track, *boxes[i][int(t)]))
            by_reason: dict[str, list[int]] = {}
            for t in run:
                for c, f in a.reasons[int(t)]:
                    by_reason.setdefault(f"{c}: {f}", []).append(int(t))
            anomalies.append(
                {
                    "track_id": track,
                    "event": a.event,
                    "agent": a.kind,
                    "sprite_size": list(a.alpha.shape),
                    "reasons": sorted({r for t in run for r in a.reasons[int(t)]}),
                    "first_frame": int(run[0]),
                    "last_frame": int(run[-1]),
                    "n_frames": len(run),
                    "frames_by_reason": {k: [v[0], v[-1], len(v)] for k, v in by_reason.items()},
                }
            )
    reg = np.asarray(regions, dtype=np.float64).reshape(-1, 6)
    reasons = {t: tuple(sorted(rs)) for t, rs in sorted(frame_reasons.items())}
    return _Rendered(frames, masks, reg, reasons, anomalies)


# ----------------------------------------------------------------------------- writing
def _frame_name(t: int) -> str:
    return f"{t:03d}.png"


def _video_id(k: int) -> str:
    return f"{_SCENE_ID}_{k:04d}"


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / _frame_name(t), format="PNG", compress_level=1)


def _write_tracks(path: Path, regions: np.ndarray, frame_names: list[str]) -> None:
    """MERL / Street Scene region file: ``<file> <track_id> <x_center> <y_center> <width>
    <height>`` per region (frame file name, centre and size in pixels)."""
    try:
        from xeval.data.video.tracks import write_merl_tracks
    except ImportError:
        write_merl_tracks = None
    if write_merl_tracks is not None:
        write_merl_tracks(path, regions, frame_names=frame_names)
        return
    lines = []
    for t, k, x1, y1, x2, y2 in regions:
        lines.append(
            f"{frame_names[int(t)]} {int(k)} {(x1 + x2) / 2:g} {(y1 + y2) / 2:g} "
            f"{x2 - x1:g} {y2 - y1:g}\n"
        )
    path.write_text("".join(lines), encoding="utf-8")


def _make_video(
    seed: int, p: dict, bg: np.ndarray, split: str, vid: str, index: int
) -> tuple[list[_Agent], _Rendered]:
    T = p["n_frames"]
    traffic = make_rng(seed, "synthetic_video", split, vid, "traffic")
    agents = _normal_traffic(traffic, p, T)
    if split == "test":
        for j, (kind, part, slot) in enumerate(_test_events(index, p, T)):
            ev = make_rng(seed, "synthetic_video", split, vid, "event", j)
            agents.append(_plan_event(kind, ev, p, T, part, slot))
    noise = make_rng(seed, "synthetic_video", split, vid, "noise")
    return agents, _render(agents, bg, p, T, noise)


def _cache_key(params: dict, seed: int) -> str:
    blob = json.dumps({**params, "version": SYNTHETIC_VIDEO_VERSION}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    return (
        f"synthetic_video-v{SYNTHETIC_VIDEO_VERSION}-{params['height']}x{params['width']}"
        f"-seed{seed}-{digest}"
    )


def _write_dataset(out: Path, p: dict, seed: int) -> dict:
    bg = _background(seed, p)
    names = [_frame_name(t) for t in range(p["n_frames"])]
    train_ids = [_video_id(k + 1) for k in range(p["n_train"])]
    test_ids = [_video_id(p["n_train"] + k + 1) for k in range(p["n_test"])]
    for vid in progress(train_ids, desc="synthetic video: training videos"):
        _, r = _make_video(seed, p, bg, "train", vid, 0)
        _write_frames(out / "training" / "frames" / vid, r.frames)
    test = out / "testing"
    for sub in ("test_frame_mask", "test_pixel_mask", "test_tracks"):
        (test / sub).mkdir(parents=True)
    xman: dict[str, list[list[str]]] = {}
    videos: dict[str, dict] = {}
    for index, vid in enumerate(progress(test_ids, desc="synthetic video: test videos")):
        _, r = _make_video(seed, p, bg, "test", vid, index)
        _write_frames(test / "frames" / vid, r.frames)
        labels = r.masks.any(axis=(1, 2))
        np.save(test / "test_frame_mask" / f"{vid}.npy", labels.astype(np.uint8))
        np.save(test / "test_pixel_mask" / f"{vid}.npy", r.masks.astype(np.uint8))
        _write_tracks(test / "test_tracks" / f"{vid}.txt", r.regions, names)
        for t, rs in r.reasons.items():
            xman[f"{vid}/{names[t][:-4]}"] = [list(x) for x in rs]
        videos[vid] = {
            "n_frames": p["n_frames"],
            "n_anomalous_frames": int(labels.sum()),
            "planted": [k for k, _, _ in _test_events(index, p, p["n_frames"])],
            "anomalies": r.anomalies,
        }
    (out / "xman_reasons.json").write_text(
        json.dumps(xman, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    vocab = sorted({tuple(r) for rs in xman.values() for r in rs})
    n_test_frames = p["n_test"] * p["n_frames"]
    return {
        "name": "synthetic_video",
        "format": "shanghaitech",
        "version": SYNTHETIC_VIDEO_VERSION,
        "seed": seed,
        "params": p,
        "generator": "xeval.data.video.synthetic.build_synthetic_video",
        "events": describe(),
        "reasons": [list(r) for r in vocab],
        "train_videos": train_ids,
        "test_videos": videos,
        "counts": {
            "train_frames": p["n_train"] * p["n_frames"],
            "test_frames": n_test_frames,
            "anomalous_test_frames": int(sum(v["n_anomalous_frames"] for v in videos.values())),
            "tracks": int(sum(len(v["anomalies"]) for v in videos.values())),
        },
    }


def build_synthetic_video(
    *,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    quick: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    n_frames: int | None = None,
) -> Path:
    """Build (once) the ``synthetic_video`` benchmark and return its dataset root.

    Parameters
    ----------
    root:
        Cache folder; the dataset goes to ``root/<key>`` where the key holds the version,
        the frame size, the seed and a hash of every parameter. Default
        ``$XEVAL_CACHE/synthetic_video`` (or ``~/.cache/xeval/synthetic_video``).
    seed:
        Seed of every random draw (background, traffic, planted events, noise).
    quick:
        Tiny version for tests: 2 training and 2 test videos of 30 frames.
    n_train, n_test, n_frames:
        Override the video counts and the frames per video (default 4, 6, 60).

    Returns
    -------
    pathlib.Path
        The dataset root in the ShanghaiTech-like layout described in the module
        docstring, with ``benchmark.json`` (parameters, version, planted anomalies).
    """
    seed = _check_seed(seed)
    params = synthetic_video_params(quick=quick, n_train=n_train, n_test=n_test, n_frames=n_frames)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise InputError(f"root must be a folder path or None, got {root!r}")
    cache = Path(root) if root is not None else default_cache_dir() / "synthetic_video"
    final = cache / _cache_key(params, seed)
    if (final / _CARD).is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{final.name}.tmp-"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is a shared cache
        card = _write_dataset(tmp, params, seed)
        card["key"] = final.name
        text = json.dumps(card, indent=1, sort_keys=True) + "\n"
        (tmp / _CARD).write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _CARD).is_file():  # not a concurrent build that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@VIDEO_DATASETS.register(name="synthetic_video")
def read_synthetic_video(
    *, seed: int = 0, quick: bool = False, root: str | None = None
) -> VideoDataset:
    """Video dataset format ``synthetic_video``: the built-in benchmark (built on first
    use in the cache, ``$XEVAL_CACHE`` or ``~/.cache/xeval``), read with the ShanghaiTech
    reader together with its MERL tracks and X-MAN-style reasons."""
    path = build_synthetic_video(root=root, seed=seed, quick=quick)
    from xeval.data.video.shanghaitech import read_shanghaitech

    ds = read_shanghaitech(
        path=path,
        tracks=path / "testing" / "test_tracks",
        reasons=path / "xman_reasons.json",
    )
    note = (
        f"built-in synthetic_video v{SYNTHETIC_VIDEO_VERSION}, seed {seed}, quick={quick} "
        f"({path.name}); planted anomalies (agent, reasons, frames) in {path / _CARD}"
    )
    return replace(ds, name="synthetic_video", conventions={**ds.conventions, "benchmark": note})
