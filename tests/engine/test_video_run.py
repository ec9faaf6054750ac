"""The video engine on a tiny in-memory dataset and a transparent detector: results,
per-frame scores, calibration on normal videos only, verdicts, report files, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from xeval.adapters.video.base import VideoDetector, VideoPrediction
from xeval.data.video.base import ReasonVocabulary, Video, VideoDataset
from xeval.engine.video import run_video, split_videos
from xeval.errors import ConfigError
from xeval.protocols.video import parse_video_config
from xeval.registry import VIDEO_DATASETS, VIDEO_DETECTORS

H, W, T = 24, 32, 16
FAST = ("action", "too fast")
BIG = ("object", "unusual size")


def _video(vid: str, *, anomalous: bool, seed: int) -> Video:
    rng = np.random.default_rng(seed)
    frames = np.full((T, H, W, 1), 60, np.uint8)
    frames += rng.integers(0, 3, frames.shape, dtype=np.uint8)
    masks = np.zeros((T, H, W), bool)
    labels = np.zeros(T, bool)
    regions, reasons = [], {}
    for t in range(T):
        x = (2 * t) % (W - 4)
        frames[t, 4:8, x : x + 4] = 200  # a normal walker
        if anomalous and 6 <= t < 12:
            x2 = (4 * t) % (W - 8)
            frames[t, 14:22, x2 : x2 + 8] = 250 if t < 9 else 220  # "fast" ones brighter
            masks[t, 14:22, x2 : x2 + 8] = True
            labels[t] = True
            regions.append((t, 1, x2, 14, x2 + 8, 22))
            reasons[t] = (FAST, BIG) if t < 9 else (BIG,)
    return Video(
        video_id=vid,
        n_frames=T,
        frame_size=(H, W),
        read=lambda a, b: frames[a:b],
        frame_names=[f"{i:03d}.png" for i in range(T)],
        labels=labels,
        read_masks=lambda a, b: masks[a:b],
        regions=np.asarray(regions, dtype=np.float64).reshape(-1, 6),
        reasons=reasons,
        source=f"<memory>/{vid}",
    )


def _toy(*, seed: int = 0, n_test: int = 3) -> VideoDataset:
    train = [_video(f"train_{i}", anomalous=False, seed=100 + i) for i in range(3)]
    test = [_video(f"test_{i}", anomalous=i > 0, seed=i) for i in range(n_test)]
    ds = VideoDataset(
        name="toy_video",
        root=None,
        train=train,
        test=test,
        vocabulary=ReasonVocabulary((FAST, BIG, ("location", "forbidden location"))),
        conventions={"frame_labels": "built in memory"},
    )
    for v in test:
        v.labels = np.asarray(v.labels)
    return ds


class BrightDetector(VideoDetector):
    """Map = brightness above the training maximum per pixel; reasons from the blob
    size (transparent, so the expected numbers are known)."""

    name = "bright_test"
    gives_reasons = True

    def __init__(self, *, margin: float = 10.0) -> None:
        self.margin = float(margin)
        self.fit_ids: list = []

    def fit(self, videos):
        vids = list(videos)
        self.fit_ids.append(len(vids))
        self.ref = np.max([v.max(axis=0)[..., 0] for v in vids], axis=0).astype(float)
        return self

    def set_vocabulary(self, vocabulary) -> None:
        self.names = tuple(vocabulary.fine)

    def predict(self, frames):
        m = np.clip(frames[..., 0].astype(float) - self.ref - self.margin, 0, None)
        area = (m > 0).reshape(len(m), -1).sum(1)
        reasons = np.zeros((len(m), len(self.names)))
        reasons[:, self.names.index(BIG)] = area / 64.0
        reasons[:, self.names.index(FAST)] = m.reshape(len(m), -1).max(1) > 170
        return VideoPrediction(
            scores=m.reshape(len(m), -1).max(1),
            maps=m[:, ::2, ::2],
            reasons=reasons,
            reason_names=self.names,
        )


@pytest.fixture(scope="module", autouse=True)
def _registered():
    if "toy_video" not in VIDEO_DATASETS:
        VIDEO_DATASETS.register(
            lambda *, seed=0, n_test=3: _toy(seed=seed, n_test=n_test), name="toy_video"
        )
    if "bright_test" not in VIDEO_DETECTORS:
        VIDEO_DETECTORS.register(BrightDetector)
    yield


def _cfg(**over):
    raw = {
        "name": "toy",
        "dataset": {"format": "toy_video"},
        "detectors": [{"kind": "bright_test"}],
        "explainers": ["native", "random", "sobel", "centre"],
        "metrics": [
            "frame_auroc",
            {"name": "frame_auroc", "average": "macro"},
            "frame_eer",
            "pixel_auroc",
            "rbdc",
            "tbdc",
            "reason_map",
            {"name": "reason_map", "level": "coarse"},
        ],
        "evaluation": {"jackknife_groups": 20},
        "report": {"figures": True, "filmstrip": True},
    }
    raw.update(over)
    return parse_video_config(raw, source="test")


def test_run_video_end_to_end(tmp_path):
    res = run_video(_cfg(dataset={"format": "toy_video", "n_test": 8}), out_dir=tmp_path / "out")
    r = res.results
    assert set(r["explainer"]) == {"native", "random", "sobel", "centre"}
    assert set(r["family"]) >= {"video", "localisation", "reasons"}
    # frame AUROC (micro) equals sklearn on the per-frame scores written
    pf = res.per_frame[res.per_frame["explainer"] == "native"]
    auc = r[(r["explainer"] == "native") & (r["label"] == "frame_auroc")]["value"].iloc[0]
    assert auc == pytest.approx(roc_auc_score(pf["label"], pf["score"]), abs=1e-12)
    assert auc == 1.0
    # per_frame.csv holds every test frame once per explainer
    assert len(res.per_frame) == 4 * 8 * T
    # the detector was fitted on the held-out split only (2 of 3 training videos)
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    unit = man["units"]["bright_test"]
    assert len(unit["fit_videos"]) == 2 and len(unit["validation_videos"]) == 1
    assert not set(unit["fit_videos"]) & set(unit["validation_videos"])
    assert man["dataset"]["anomalous_test_frames"] == 7 * 6
    assert "frame_auroc" in man["conventions"]["metrics"]
    for f in ("results.csv", "per_frame.csv", "manifest.json", "results.md", "index.html"):
        assert (tmp_path / "out" / f).is_file()
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Conclusion" in md and "Reasons (X-MAN)" in md
    # the random reason scorer is a control and clearly loses to a reason-aware
    # detector (paired jackknife over the 8 videos)
    v = pd.read_csv(tmp_path / "out" / "verdicts.csv")
    rm = v[(v["explainer"] == "native") & (v["metric"] == "reason_map")]
    assert rm["verdict"].iloc[0] == "beats" and rm["min_z"].iloc[0] > 1.96
    # every metric has a jackknife CI around its value (8 videos, 8 groups)
    nat = r[(r["explainer"] == "native") & np.isfinite(r["value"])]
    assert (nat["ci_low"] <= nat["value"] + 1e-12).all()
    assert (nat["value"] <= nat["ci_high"] + 1e-12).all()


def test_jackknife_matches_the_textbook_formula(tmp_path):
    """Delete-one-video jackknife of the micro frame AUROC equals the formula computed
    from scikit-learn on the videos left in."""
    from xeval.engine.video import Z95, jackknife_se

    res = run_video(_cfg(dataset={"format": "toy_video", "n_test": 5}), out_dir=tmp_path)
    pf = res.per_frame[res.per_frame["explainer"] == "random"]
    vids = list(dict.fromkeys(pf["video"]))
    reps = []
    for v in vids:
        keep = pf[pf["video"] != v]
        reps.append(roc_auc_score(keep["label"], keep["score"]))
    reps = np.asarray(reps)
    se = math.sqrt((len(reps) - 1) / len(reps) * np.sum((reps - reps.mean()) ** 2))
    assert jackknife_se(reps) == pytest.approx(se)
    row = res.results[
        (res.results["explainer"] == "random") & (res.results["label"] == "frame_auroc")
    ]
    assert row["ci_high"].iloc[0] - row["value"].iloc[0] == pytest.approx(Z95 * se, rel=1e-9)


def test_html_is_escaped(tmp_path):
    ds_cfg = _cfg(name="<script>alert(1)</script>")
    run_video(ds_cfg, out_dir=tmp_path / "o")
    page = (tmp_path / "o" / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_too_little_evidence_is_said(tmp_path):
    res = run_video(_cfg(dataset={"format": "toy_video", "n_test": 2}), out_dir=tmp_path / "o")
    v = pd.read_csv(tmp_path / "o" / "verdicts.csv")
    assert (v["verdict"] == "insufficient evidence").all()  # 6 anomalous frames < 10
    assert "Too little evidence" in (tmp_path / "o" / "results.md").read_text()
    assert math.isfinite(res.results["value"].iloc[0])


def test_split_videos_holds_out_whole_videos_seeded():
    ds = _toy()
    a1, b1 = split_videos(ds.train, 0.25, 0)
    a2, b2 = split_videos(ds.train, 0.25, 0)
    assert [v.video_id for v in b1] == [v.video_id for v in b2] and len(b1) == 1
    fit, val = split_videos(ds.train[:1], 0.25, 0)
    assert fit[0].n_frames + val[0].n_frames == T and val[0].n_frames == 4
    assert np.array_equal(val[0].frames(), ds.train[0].frames(12, 16))


def test_metric_needing_masks_without_masks_is_an_error_before_fitting(tmp_path, monkeypatch):
    real = _toy()
    for v in real.test:
        v.read_masks = None
    monkeypatch.setitem(VIDEO_DATASETS._entries, "toy_video", lambda *, seed=0, n_test=3: real)
    with pytest.raises(ConfigError, match="needs pixel masks"):
        run_video(_cfg(), out_dir=tmp_path / "o")


def test_unknown_video_names_in_config_are_config_errors():
    with pytest.raises(ConfigError, match="video detector kind"):
        _cfg(detectors=[{"kind": "nope"}])
    with pytest.raises(ConfigError, match="video explainer"):
        _cfg(explainers=["saliencyx"])
    with pytest.raises(ConfigError, match="unknown option"):
        _cfg(detectors=[{"kind": "bright_test", "params": {"nope": 1}}])
    with pytest.raises(ConfigError, match="validation_videos"):
        _cfg(evaluation={"validation_videos": 1.5})


@pytest.mark.parametrize("metric", ["deletion_auc", "max_sensitivity", "auc_spro", "aopc"])
def test_metrics_that_cannot_run_on_video_are_config_errors(metric):
    with pytest.raises(ConfigError, match=f"cannot run on video: {metric}.*Metrics that can"):
        _cfg(metrics=["frame_auroc", metric])


def test_image_metrics_that_can_run_on_frames_are_accepted(tmp_path):
    cfg = _cfg(metrics=["frame_auroc", "pointing_game", {"name": "iou", "quantile": 0.99}])
    res = run_video(cfg, out_dir=tmp_path)
    nat = res.results[res.results["explainer"] == "native"]
    assert set(nat["label"]) == {"frame_auroc", "pointing_game", "iou@t"}
