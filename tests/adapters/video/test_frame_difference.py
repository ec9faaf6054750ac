"""The frame-difference / background-deviation baseline: option validation, shapes, the
definitions against naive references written here, determinism, tiny-scene AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from _video_scenes import H, W, scene, training
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from xeval.adapters.video.frame_difference import FrameDifference
from xeval.errors import InputError
from xeval.registry import VIDEO_DETECTORS


@pytest.fixture(scope="module")
def train():
    return training(n_videos=2, n_frames=60)


# ------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "median"}, "mode must be one of"),
        ({"mode": 1}, "mode must be one of"),
        ({"stride": 0}, "stride must be an integer >= 1"),
        ({"stride": 2.0}, "stride must be an integer"),
        ({"stride": True}, "stride must be an integer"),
        ({"sigma": -1.0}, "sigma must be a finite number >= 0"),
        ({"sigma": float("nan")}, "sigma must be a finite number"),
        ({"sigma": True}, "sigma must be a number"),
        ({"quantile": 1.5}, r"quantile must lie in \[0, 1\]"),
        ({"quantile": -0.1}, "quantile must be a finite number >= 0"),
        ({"quantile": "max"}, "quantile must be a number"),
        ({"max_background_frames": 0}, "max_background_frames must be an integer >= 1"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        FrameDifference(**kwargs)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        FrameDifference("frame_difference")  # type: ignore[misc]


def test_registered():
    assert VIDEO_DETECTORS.get("frame_difference") is FrameDifference


# ------------------------------------------------------------------------- inputs
def test_predict_before_fit():
    with pytest.raises(InputError, match="call fit"):
        FrameDifference().predict(np.zeros((2, 8, 8, 1), np.uint8))


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((2, H, W, 3), np.float32), "uint8"),
        (np.zeros((H, W, 3), np.uint8), r"\(T, H, W, C\)"),
        (np.zeros((0, H, W, 3), np.uint8), "T >= 1"),
        (np.zeros((2, H, W, 2), np.uint8), "C = 1 or 3"),
        ([[0]], "numpy array"),
        (np.zeros((2, H + 1, W, 3), np.uint8), "fitted on frames of size"),
    ],
)
def test_bad_frames(train, frames, match):
    det = FrameDifference().fit(train)
    with pytest.raises(InputError, match=match):
        det.predict(frames)


def test_bad_training_videos():
    with pytest.raises(InputError, match="videos is empty"):
        FrameDifference().fit([])
    with pytest.raises(InputError, match="wrap a single video in a list"):
        FrameDifference().fit(np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(InputError, match=r"videos\[1\] has frames of shape"):
        FrameDifference().fit([np.zeros((2, 8, 8, 1), np.uint8), np.zeros((2, 8, 9, 1), np.uint8)])
    with pytest.raises(InputError, match=r"videos\[0\] must be uint8"):
        FrameDifference().fit([np.zeros((2, 8, 8, 1), np.int16)])


# ---------------------------------------------------------------------- definition
def _naive(det: FrameDifference, train: list[np.ndarray], frames: np.ndarray, mode: str):
    """Straightforward re-implementation of the module docstring."""

    def grey(v):
        return v.astype(np.float64).mean(axis=3) / 255.0

    def raw(g, bg):
        out = []
        for t in range(len(g)):
            parts = []
            if mode in ("background", "both"):
                parts.append(np.abs(g[t] - bg))
            if mode in ("previous", "both"):
                other = g[t - 1] if t > 0 else g[1]
                parts.append(np.abs(g[t] - other))
            d = np.max(parts, axis=0)
            s = det.stride
            blocks = np.array(
                [
                    [d[y : y + s, x : x + s].mean() for x in range(0, d.shape[1], s)]
                    for y in range(0, d.shape[0], s)
                ]
            )
            out.append(ndimage.gaussian_filter(blocks, det.sigma, mode="nearest"))
        return np.array(out)

    def score(m):
        return np.array([np.quantile(x.ravel(), det.quantile) for x in m])

    allf = np.concatenate(train)
    bg = np.median(grey(allf), axis=0)  # every training frame (max_background_frames large)
    tr_scores = np.concatenate([score(raw(grey(v), bg)) for v in train])
    mu, sd = tr_scores.mean(), tr_scores.std()
    maps = (raw(grey(frames), bg) - mu) / sd
    return score(maps), maps


@pytest.mark.parametrize("mode", ["background", "previous", "both"])
def test_matches_naive_definition(train, mode):
    det = FrameDifference(mode=mode, stride=3, sigma=0.8, quantile=0.9, max_background_frames=500)
    det.fit(train)
    frames, _, _ = scene(12, seed=3, anomaly="fast", start=2, stop=10)
    p = det.predict(frames)
    s_ref, m_ref = _naive(det, train, frames, mode)
    assert p.maps.shape == (12, -(-H // 3), -(-W // 3)) == m_ref.shape
    np.testing.assert_allclose(p.maps, m_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(p.scores, s_ref, rtol=1e-4, atol=1e-4)
    # the score is exactly the quantile of the returned map
    np.testing.assert_allclose(
        p.scores, np.quantile(p.maps.reshape(12, -1).astype(np.float64), 0.9, axis=1)
    )
    assert p.boxes is None and p.reasons is None


def test_quantile_one_is_max_and_first_frame(train):
    det = FrameDifference(mode="previous", quantile=1.0).fit(train)
    frames, _, _ = scene(5, seed=4)
    p = det.predict(frames)
    np.testing.assert_array_equal(p.scores, p.maps.reshape(5, -1).max(1))
    # first frame compared with the next one: same map as frame 1
    np.testing.assert_array_equal(p.maps[0], p.maps[1])
    one = det.predict(frames[:1])
    assert one.maps.shape[0] == 1
    np.testing.assert_allclose(one.maps, -det.mu_ / det.sd_, rtol=1e-6)


def test_normalised_by_training_frames(train):
    det = FrameDifference().fit(train)
    s = np.concatenate([det.predict(v).scores for v in train])
    # normal training frames: mean 0, std 1 by construction (all of them were sampled)
    assert abs(s.mean()) < 1e-3 and abs(s.std() - 1) < 1e-3


def test_deterministic_and_grey_frames(train):
    frames, _, _ = scene(20, seed=5, anomaly="large")
    a = FrameDifference().fit(train).predict(frames)
    b = FrameDifference().fit(train).predict(frames)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)
    grey_train = [v[..., :1] for v in train]
    g = FrameDifference().fit(grey_train).predict(frames[..., :1])
    assert g.scores.shape == (20,)


@pytest.mark.parametrize(
    ("mode", "anomaly", "bound"),
    [("background", "large", 0.95), ("background", "object", 0.95), ("previous", "fast", 0.85)],
)
def test_tiny_scene_auroc(train, mode, anomaly, bound):
    """What a frame-difference baseline can see: new appearance and fast motion (it is
    blind to direction, location and loitering by design)."""
    det = FrameDifference(mode=mode).fit(train)
    frames, labels, boxes = scene(60, seed=9, anomaly=anomaly)
    p = det.predict(frames)
    assert roc_auc_score(labels, p.scores) > bound
    # the map's maximum lies on the anomalous agent in a fully visible frame
    t = 30
    y, x = np.unravel_index(np.argmax(p.maps[t]), p.maps[t].shape)
    x1, y1, x2, y2 = boxes[t]
    s = det.stride
    assert x1 - s <= x * s <= x2 + s and y1 - s <= y * s <= y2 + s
