"""Video explainers: the controls and the native map per frame, and every image
attribution method applied frame by frame through frame_view ("a frame is an image")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xeval.adapters.video.base import VideoPrediction
from xeval.adapters.video.clip import ClipAdapter
from xeval.adapters.video.clip_autoencoder import ClipAutoencoder
from xeval.adapters.video.frame_view import frame_view
from xeval.data.video.base import ReasonVocabulary
from xeval.errors import ConfigError, InputError
from xeval.explainers.api import explain
from xeval.explainers.video import boxes_per_frame, frames_to_images
from xeval.protocols.video import parse_video_config
from xeval.registry import EXPLAINERS, VIDEO_EXPLAINERS


class Doubler(nn.Module):
    """Reconstruction = 2 * clip (error = x**2 per pixel): gradients known in closed form."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return 2.0 * clips


def _frames(t=6, h=8, w=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_every_image_attribution_method_is_a_video_explainer():
    image = {n for n in EXPLAINERS.names() if not getattr(EXPLAINERS.get(n), "control", False)}
    assert image - {"native"} <= set(VIDEO_EXPLAINERS.names())
    assert {"native", "random", "sobel", "centre"} <= set(VIDEO_EXPLAINERS.names())


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient"])
def test_frame_attribution_equals_explain_on_the_frame_view(method):
    frames = _frames()
    det = ClipAdapter(Doubler(), clip_length=3, stride=1)
    pred = det.predict(frames)
    e = VIDEO_EXPLAINERS.get(method)()
    out = e.explain(
        frames,
        pred,
        video_id="v",
        frame_names=[str(i) for i in range(6)],
        vocabulary=None,
        detector=det,
    )
    assert out.maps.shape == (6, 8, 12)
    for t in range(6):
        view = frame_view(det, frames, t)
        x = frames_to_images(frames[t : t + 1], view.input_size)
        assert np.array_equal(out.maps[t], explain(view, x, method)[0])
    assert np.array_equal(out.scores, out.maps.reshape(6, -1).max(1))


def test_saliency_of_a_known_clip_model_is_analytic():
    """score_t = mean over pixels and channels of x**2 (reconstruction 2x, error x**2,
    averaged over the windows covering t: all identical), so d score / d x = 2x / (C H W)
    and saliency (abs, summed over channels) = sum_c 2 x_c / (C H W)."""
    frames = _frames(t=5)
    det = ClipAdapter(Doubler(), clip_length=2, stride=1)
    out = VIDEO_EXPLAINERS.get("saliency")().explain(
        frames,
        det.predict(frames),
        video_id="v",
        frame_names=list("abcde"),
        vocabulary=None,
        detector=det,
    )
    x = frames.astype(np.float64) / 255.0
    expected = (2 * x / (3 * 8 * 12)).sum(axis=3)
    np.testing.assert_allclose(out.maps, expected, rtol=1e-5, atol=1e-9)


def test_integrated_gradients_uses_normal_reference_frames():
    frames = _frames(t=4)
    det = ClipAdapter(Doubler(), clip_length=2, stride=1)
    e = VIDEO_EXPLAINERS.get("integrated_gradients")(n_steps=4)
    ref = _frames(t=3, seed=1)
    e.fit_reference(ref)
    out = e.explain(
        frames,
        det.predict(frames),
        video_id="v",
        frame_names=list("abcd"),
        vocabulary=None,
        detector=det,
    )
    view = frame_view(det, frames, 2)
    x = frames_to_images(frames[2:3], view.input_size)
    want = explain(
        view, x, "integrated_gradients", n_steps=4, reference=frames_to_images(ref, view.input_size)
    )
    assert np.array_equal(out.maps[2], want[0])


def test_attribution_options_are_checked_when_built():
    with pytest.raises((InputError, TypeError)):
        VIDEO_EXPLAINERS.get("integrated_gradients")(no_such_option=1)
    with pytest.raises(InputError, match="reference"):
        VIDEO_EXPLAINERS.get("integrated_gradients")(reference=np.zeros((1, 3, 4, 4)))


def test_gradient_methods_on_a_detector_without_gradients_are_a_config_error():
    raw = {
        "dataset": {"format": "synthetic_video", "quick": True},
        "detectors": [{"kind": "reasoning", "explainers": ["native", "saliency"]}],
        "metrics": ["frame_auroc"],
    }
    with pytest.raises(ConfigError, match="cannot explain it.*occlusion"):
        parse_video_config(raw, source="t")
    raw["detectors"] = [{"kind": "clip_autoencoder", "explainers": ["native", "saliency"]}]
    cfg = parse_video_config(raw, source="t")
    assert cfg.detectors[0].gradients


def test_clip_autoencoder_learns_and_is_seeded():
    rng = np.random.default_rng(0)
    bg = rng.integers(60, 80, (1, 16, 20, 3), dtype=np.uint8)
    normal = [np.repeat(bg, 8, axis=0) for _ in range(2)]
    test = np.repeat(bg, 8, axis=0).copy()
    test[4, 4:10, 6:12] = 250  # a bright blob in frame 4
    a = ClipAutoencoder(clip_length=2, input_size=(16, 20), width=4, epochs=30, seed=3)
    b = ClipAutoencoder(clip_length=2, input_size=(16, 20), width=4, epochs=30, seed=3)
    pa, pb = a.fit(normal).predict(test), b.fit(normal).predict(test)
    assert np.array_equal(pa.scores, pb.scores)  # same seed, same numbers
    assert int(np.argmax(pa.scores)) == 4
    m = pa.maps[4]
    blob = np.zeros(m.shape, bool)
    blob[4:10, 6:12] = True
    assert m[blob].mean() > 3 * m[~blob].mean()  # the error map points at the blob


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"input_size": (15, 20)}, "multiples of 4"), ({"lr": 0}, "lr"), ({"width": 0}, "width")],
)
def test_clip_autoencoder_options(kw, match):
    with pytest.raises(InputError, match=match):
        ClipAutoencoder(**kw)


def test_controls_and_boxes_per_frame():
    frames = _frames(t=3)
    pred = VideoPrediction(
        scores=np.zeros(3),
        maps=np.zeros((3, 4, 6)),
        boxes=np.array([[2, 0, 0, 1, 1, 0.5], [0, 1, 1, 2, 2, 0.9]]),
    )
    per = boxes_per_frame(pred.boxes, 3)
    assert [len(b) for b in per] == [1, 0, 1] and per[0][0, 4] == 0.9
    vocab = ReasonVocabulary((("action", "run"), ("object", "car")))
    r1 = VIDEO_EXPLAINERS.get("random")(seed=1).explain(
        frames, pred, video_id="v", frame_names=list("abc"), vocabulary=vocab
    )
    r2 = VIDEO_EXPLAINERS.get("random")(seed=1).explain(
        frames, pred, video_id="v", frame_names=list("abc"), vocabulary=vocab
    )
    assert np.array_equal(r1.reasons, r2.reasons) and r1.reasons.shape == (3, 2)
    assert r1.reason_names == vocab.fine and r1.maps.shape == (3, 4, 6)
    c = VIDEO_EXPLAINERS.get("centre")().explain(
        frames, pred, video_id="v", frame_names=list("abc"), vocabulary=vocab
    )
    assert c.reasons is None and np.array_equal(c.maps[0], c.maps[2])
