"""Pixel/image AUROC of the built-in detectors on the textures benchmark (default build).

Usage: python bench/eval_detectors.py RECIPE_JSON [--seed N]   (N: textures build seed, 0)
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from xeval.adapters import build_detector
from xeval.data.loader import iter_batches
from xeval.data.mvtec import load_mvtec
from xeval.data.textures import build_textures

ap = argparse.ArgumentParser()
ap.add_argument("recipe", help='detector recipe as JSON, e.g. \'{"kind":"patch_features"}\'')
ap.add_argument("--seed", type=int, default=0, help="seed of the textures build")
args = ap.parse_args()
recipe = json.loads(args.recipe)
root = build_textures(seed=args.seed)
out = {}
for cat in ("brick", "grass", "gravel", "tissue"):
    split = load_mvtec(root, cat)
    det = build_detector(recipe)
    size = det.input_size
    train = [
        b.inputs.images
        for b in iter_batches(split.train, batch_size=32, image_size=size, with_masks=False)
    ]
    t0 = time.perf_counter()
    det.fit(train)
    fit_s = time.perf_counter() - t0
    ys, ps, labels, scores = [], [], [], []
    t0 = time.perf_counter()
    for b in iter_batches(split.test, batch_size=32, image_size=size):
        s, m = det.predict(b.inputs.images)
        for mi, mask in zip(m, b.targets.masks, strict=True):
            up = F.interpolate(
                torch.from_numpy(mi)[None, None],
                size=mask.shape,
                mode="bilinear",
                align_corners=False,
            )[0, 0].numpy()
            ys.append(mask.ravel())
            ps.append(up.ravel())
        labels += list(b.targets.labels)
        scores += list(s)
    pred_s = time.perf_counter() - t0
    out[cat] = dict(
        pixel_auroc=round(roc_auc_score(np.concatenate(ys), np.concatenate(ps)), 4),
        image_auroc=round(roc_auc_score(labels, scores), 4),
        fit_s=round(fit_s, 1),
        predict_s=round(pred_s, 1),
        n_train=len(split.train),
        n_test=len(split.test),
    )
    print(cat, out[cat], flush=True)
print(
    json.dumps(recipe),
    f"textures seed {args.seed}",
    "mean pixel AUROC",
    round(np.mean([v["pixel_auroc"] for v in out.values()]), 4),
    "mean image AUROC",
    round(np.mean([v["image_auroc"] for v in out.values()]), 4),
)
