"""A toy detector and a tiny run configuration for the reliability tests.

``score_images`` is a numpy black box (no training; each image's map is its absolute
deviation from mid-grey), so a whole run on a tiny MVTec-layout dataset takes well under
a second after imports. Recipes name it by import path, which the import policy allows
only with ``safe_imports(MODULE)`` / ``--allow-import MODULE``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

MODULE = __name__  # "reliability._toy" under pytest (tests/ is on sys.path)


def score_images(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, maps)``: the map is ``|x - 0.5|`` averaged over channels, the score
    its maximum."""
    maps = np.abs(np.asarray(images, dtype=np.float32) - 0.5).mean(axis=1)
    return maps.reshape(len(maps), -1).max(axis=1), maps


CONFIG = {
    "name": "toy",
    "seed": 0,
    "dataset": {"format": "mvtec", "path": None},
    "detectors": [
        {
            "kind": "blackbox",
            "name": "toy",
            "params": {"function": f"{MODULE}:score_images", "input_size": [32, 32]},
        }
    ],
    "explainers": ["native", "random", "sobel", {"name": "occlusion", "window": 8}],
    "metrics": [
        "image_auroc",
        "pixel_auroc",
        {"name": "aupro", "fpr_limit": 0.3},
        "iou_per_image",
        "relevance_mass",
        "pointing_game",
    ],
    "evaluation": {"bootstrap": 20},
    "report": {"figures": False, "gallery": True},
}


def toy_config(data: Path, **overrides) -> dict:
    """:data:`CONFIG` on the dataset at ``data``, with top-level ``overrides``."""
    cfg = copy.deepcopy(CONFIG)
    cfg["dataset"]["path"] = str(data)
    cfg.update(overrides)
    return cfg
