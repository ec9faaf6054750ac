"""Score precomputed anomaly maps against a dataset's ground truth (``xeval score``).

Maps are laid out like the dataset's test split:
``<maps>/<category>/test/<defect>/<stem>.<ext>`` with ``ext`` in tiff/tif/npy/png.
Every test image needs a map; maps of another size than the mask are upsampled
bilinearly to the mask's native size (never the reverse). Image score = max of the map.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from xeval.data.io import read_map
from xeval.data.loader import load_mask
from xeval.data.mvtec import list_categories, load_mvtec
from xeval.errors import InputError
from xeval.metrics import ImageMetrics, PixelRanking, ThresholdMetrics
from xeval.metrics.resize import resize_to

MAP_EXTENSIONS = (".tiff", ".tif", ".npy", ".png")


def find_map(maps_dir: Path, category: str, defect: str, stem: str) -> Path:
    base = maps_dir / category / "test" / defect
    for ext in MAP_EXTENSIONS:
        p = base / f"{stem}{ext}"
        if p.is_file():
            return p
    raise InputError(
        f"no anomaly map for test image {category}/test/{defect}/{stem}: expected "
        f"{base / stem}.<{'|'.join(e[1:] for e in MAP_EXTENSIONS)}>"
    )


def _load_pair(maps_dir: Path, sample) -> tuple[np.ndarray, np.ndarray]:
    stem = Path(sample.image_path).stem
    amap = read_map(find_map(maps_dir, sample.category, sample.defect, stem))
    mask = load_mask(sample)
    if amap.shape != mask.shape:
        amap = resize_to(amap, mask.shape)
    if not np.isfinite(amap).all():
        raise InputError(f"anomaly map for {sample.id} holds NaN or inf values")
    return mask, amap


def score_category(
    maps_dir: Path,
    gt_dir: Path,
    category: str,
    *,
    fpr_limits=(0.3,),
    mode: str = "exact",
    threshold: float | None = None,
    workers: int = 4,
) -> dict:
    """All image and pixel metrics of one category (see module docstring)."""
    split = load_mvtec(gt_dir, category, require_train=False)
    if not split.test:
        raise InputError(f"category {category!r} of {gt_dir} has no test images")
    pix = PixelRanking(fpr_limits=fpr_limits, mode=mode)
    img = ImageMetrics()
    thr = ThresholdMetrics(threshold=threshold) if threshold is not None else None
    ps, ist = pix.init(), img.init()
    ts = thr.init() if thr else None
    with ThreadPoolExecutor(max_workers=workers) as ex:  # decoding releases the GIL
        for s, (mask, amap) in zip(
            split.test, ex.map(lambda s: _load_pair(maps_dir, s), split.test), strict=True
        ):
            pix.update(ps, mask, amap)
            img.update(ist, [s.label], [float(amap.max())], ids=[s.id])
            if thr:
                thr.update(ts, mask, amap)
    out = {"n_images": len(split.test)}
    out.update(img.compute(ist))
    p = pix.compute(ps)
    for k in ("pixel_auroc", "pixel_aupr", *(f"aupro@{x:g}" for x in pix.fpr_limits), "iou_oracle"):
        out[k] = p.get(k, math.nan)
    out.update({k: v for k, v in p.items() if k.startswith("error_bound/")})
    if thr:
        t = thr.compute(ts)
        out.update({k: t[k] for k in ("pro@t", "iou@t", "dice@t", "iou_per_image@t")})
    return out


def score_folder(
    maps_dir, gt_dir, *, categories=None, fpr_limits=(0.3,), mode="exact", threshold=None
) -> pd.DataFrame:
    """One row per category plus a ``mean`` row (unweighted mean over categories)."""
    maps_dir, gt_dir = Path(maps_dir), Path(gt_dir)
    if not maps_dir.is_dir():
        raise InputError(f"--maps {maps_dir} is not a folder")
    cats = categories or [c for c in list_categories(gt_dir) if (maps_dir / c).is_dir()]
    if not cats:
        raise InputError(
            f"no category of {gt_dir} has maps under {maps_dir} (expected "
            f"{maps_dir}/<category>/test/<defect>/<id>.tiff)"
        )
    rows = []
    for c in cats:
        r = score_category(
            maps_dir, gt_dir, c, fpr_limits=fpr_limits, mode=mode, threshold=threshold
        )
        rows.append({"category": c, **r})
    df = pd.DataFrame(rows)
    num = df.drop(columns=["category"]).mean(numeric_only=True)
    mean = {"category": "mean", **num.to_dict()}
    mean["n_images"] = int(df["n_images"].sum())
    return pd.concat([df, pd.DataFrame([mean])], ignore_index=True)
