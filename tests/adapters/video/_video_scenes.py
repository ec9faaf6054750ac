"""Tiny synthetic scenes for the video detector tests: a static textured background and
moving rectangles ("agents"). Normal agents walk right in the upper lane and left in the
lower lane at ~1.5 px / frame; anomalies are a fast agent, one walking the wrong way, a
large one, one in the forbidden top band and one standing still (loitering)."""

from __future__ import annotations

import numpy as np

H, W = 48, 64
LANES = {"upper": (12, +1), "lower": (30, -1)}  # top row of the agent, direction


def background(seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 90 + 40 * np.sin(xx / 9.0) * np.cos(yy / 7.0) + rng.normal(0, 3, (H, W))
    img = np.stack([base, base * 0.9 + 10, base * 0.8 + 20][:channels], axis=-1)
    return np.clip(img, 0, 255)


def draw(frame: np.ndarray, x: float, y: int, *, w: int = 5, h: int = 8, colour=(220, 60, 60)):
    x0 = int(round(x))
    x1, x2 = max(x0, 0), min(x0 + w, W)
    if x1 < x2:
        frame[y : y + h, x1:x2] = np.asarray(colour)[: frame.shape[2]]
    return (x1, y, x2, y + h) if x1 < x2 else None


def scene(
    n_frames: int,
    *,
    seed: int = 0,
    anomaly: str | None = None,
    start: int = 20,
    stop: int = 40,
    channels: int = 3,
):
    """``(frames (T, H, W, C) uint8, labels (T,) bool, boxes {frame: box})``.

    Two normal agents walk (one per lane, entering at random phases); the anomalous
    agent (``anomaly``) is present in frames ``[start, stop)``, and the normal agent of
    the upper lane, which most anomalies use, stays away meanwhile (so that the two
    never merge into one blob)."""
    rng = np.random.default_rng(seed)
    bg = background(0, channels)
    frames = np.empty((n_frames, H, W, channels), np.uint8)
    labels = np.zeros(n_frames, bool)
    boxes: dict[int, tuple] = {}
    phase = rng.uniform(0, 70, size=2)
    for t in range(n_frames):
        f = bg.copy() + rng.normal(0, 2, bg.shape)
        for (lane, (y, d)), ph in zip(LANES.items(), phase, strict=True):
            busy = anomaly not in (None, "large", "forbidden") and start - 8 <= t < stop + 8
            if lane == "upper" and busy:
                continue
            pos = (ph + 1.5 * t) % 75 - 5
            draw(f, pos if d > 0 else W - pos, y)
        if anomaly is not None and start <= t < stop:
            k = t - start
            if anomaly == "fast":
                b = draw(f, -5 + 6.0 * k, LANES["upper"][0])
            elif anomaly == "wrong_direction":
                b = draw(f, W - 1.5 * k - 5, LANES["upper"][0])
            elif anomaly == "large":
                b = draw(f, 1.5 * k - 5, 28, w=14, h=18)
            elif anomaly == "forbidden":
                b = draw(f, 1.5 * k - 5, 0)
            elif anomaly == "loiter":
                b = draw(f, 30, LANES["upper"][0])
            elif anomaly == "object":
                b = draw(f, 1.5 * k - 5, LANES["upper"][0], colour=(40, 200, 240))
            else:  # pragma: no cover - a typo in a test
                raise ValueError(anomaly)
            if b is not None:
                labels[t] = True
                boxes[t] = b
        frames[t] = np.clip(np.round(f), 0, 255).astype(np.uint8)
    return frames, labels, boxes


def training(n_videos: int = 3, n_frames: int = 80, channels: int = 3) -> list[np.ndarray]:
    return [scene(n_frames, seed=100 + i, channels=channels)[0] for i in range(n_videos)]
