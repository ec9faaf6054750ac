"""A small record and explanation that every registered metric can consume: images,
masks, per-defect regions, labels, defect types, a differentiable torch detector, its
maps, an explanation function and normal reference images."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import Detector
from xeval.metrics.base import Explanation, ProbeContext
from xeval.record import DefectRegion, Inputs, Record, Targets

H = W = 16


class ToyConvDetector(Detector):
    """map = (conv(x))^2 with a seeded 3x3 conv; score = mean of the map."""

    name = "toy_conv"
    input_size = (H, W)
    differentiable = True

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Conv2d(3, 1, 3, padding=1)
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
                p.requires_grad_(False)

    def fit(self, batches):
        return self

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0] ** 2

    def predict(self, images):
        with torch.no_grad():
            m = self._map(torch.from_numpy(np.asarray(images, np.float32)))
        return m.flatten(1).mean(1).numpy(), m.numpy()

    def torch_score(self):
        return lambda x: self._map(x).flatten(1).mean(1)

    def torch_module(self):
        return self.net


def toy(n: int = 10, seed: int = 0) -> tuple[Record, Explanation]:
    """``n`` images (every other one anomalous, with one or two defects), the toy
    detector's maps as the explanation, calibrations for any request."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, 3, H, W), dtype=np.float32) * 0.2 + 0.4
    labels = np.arange(n) % 2
    masks, regions, defects = [], [], []
    for i in range(n):
        m = np.zeros((H, W), bool)
        regs = []
        if labels[i]:
            y, x = rng.integers(1, H - 6, 2)
            m[y : y + 4, x : x + 5] = True
            images[i, :, y : y + 4, x : x + 5] += 0.4
            regs.append(DefectRegion(m.copy(), saturation=10.0, defect="blob"))
            if i % 4 == 1:
                m2 = np.zeros((H, W), bool)
                m2[H - 3 :, : W // 2] = True
                images[i, :, H - 3 :, : W // 2] -= 0.3
                regs.append(DefectRegion(m2, saturation=4.0, defect="edge"))
                m |= m2
        masks.append(m)
        regions.append(tuple(regs))
        defects.append(("structural" if i % 4 == 1 else "logical") if labels[i] else "good")
    det = ToyConvDetector()
    scores, maps = det.predict(images)
    ids = [f"img{i:02d}" for i in range(n)]
    inputs = Inputs(ids=ids, category="toy", images=images, native_sizes=[(H, W)] * n)
    targets = Targets(labels=labels, masks=masks, defects=defects, regions=regions)
    reference = rng.random((6, 3, H, W), dtype=np.float32) * 0.2 + 0.4

    def explain_fn(detector, x):
        return detector.predict(x)[1]

    class AnyCalibration(dict):
        def __missing__(self, key):
            if key[0] == "normal_quantile":
                return float(np.quantile(maps[labels == 0], key[1]))
            return np.asarray(scores[labels == 0], float)

    probe = ProbeContext(
        detector=det,
        explain_fn=explain_fn,
        reference=reference,
        normal_batches=lambda: [reference],
        seed=0,
        batch_size=4,
    )
    expl = Explanation(
        explainer="toy",
        maps=maps,
        native=[m for m in maps],
        scores=scores,
        calibration=AnyCalibration(),
        probe=probe,
        score_note="image score = detector score",
    )
    return Record(inputs, targets), expl


VIDEO_REASONS = (("action", "too fast"), ("object", "unusual size"))


def video_toy(n: int = 10, seed: int = 0) -> tuple[Record, Explanation]:
    """The toy record as two videos of ``n // 2`` frames (ids ``v0``/``v1``, frame
    indices 0..), with the targets video metrics read: ground-truth regions as rows
    ``(frame, track, x1, y1, x2, y2)`` (one track per video: the box of each anomalous
    frame's mask), X-MAN-style reasons on anomalous frames, and reason scores that
    mostly -- not always -- rank the true reason first."""
    record, expl = toy(n, seed)
    rng = np.random.default_rng(seed + 1)
    half = n // 2
    inputs = record.inputs
    inputs.video_ids = ["v0"] * half + ["v1"] * (n - half)
    inputs.frame_index = np.r_[np.arange(half), np.arange(n - half)]
    regions, reasons = [], []
    scores = rng.random((n, len(VIDEO_REASONS))) * 0.6
    for i, m in enumerate(record.targets.masks):
        if not m.any():
            regions.append(np.zeros((0, 6)))
            reasons.append(())
            continue
        ys, xs = np.nonzero(m)
        f = inputs.frame_index[i]
        regions.append(
            np.array([[f, i // half, xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]])
        )
        r = i % len(VIDEO_REASONS)
        reasons.append((VIDEO_REASONS[r],))
        scores[i, r] += 0.5
    record.targets.regions = regions
    record.targets.reasons = reasons
    expl.reasons = scores
    expl.reason_names = VIDEO_REASONS
    return record, expl
