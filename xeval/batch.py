"""The records that flow through a run: :class:`Sample` (a reference to one image on
disk) and :class:`Batch` (loaded pixels for several samples).

Conventions
-----------
- ``images`` are ``(B, C, H, W)`` float32 in ``[0, 1]``, all resized to one working
  resolution chosen by the run (the detector's input size).
- ``masks`` stay at the dataset's **native** resolution, one boolean ``(H_i, W_i)``
  array per sample (all ``False`` for a normal test image). Metrics compare maps with
  masks at the mask's resolution: maps are upsampled bilinearly, never the reverse.
- ``labels``: 0 normal, 1 anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image of a dataset split, not yet loaded.

    ``mask_path`` is None for normal images and for datasets without pixel ground truth.
    ``defect`` is the defect type (``"good"`` for normal images).
    """

    id: str
    category: str
    split: str
    label: int
    defect: str
    image_path: Path
    mask_path: Path | None = None


@dataclass
class Batch:
    """Loaded pixels for a few samples of one category (see module docstring)."""

    ids: list[str]
    category: str
    images: np.ndarray
    labels: np.ndarray
    masks: list[np.ndarray] | None
    defects: list[str] = field(default_factory=list)
    native_sizes: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def __post_init__(self) -> None:
        b = len(self.ids)
        if self.images.ndim != 4 or self.images.shape[0] != b:
            raise ValueError(
                f"Batch.images must have shape (B, C, H, W) with B={b}, got {self.images.shape}"
            )
        if self.labels.shape != (b,):
            raise ValueError(f"Batch.labels must have shape ({b},), got {self.labels.shape}")
        if self.masks is not None and len(self.masks) != b:
            raise ValueError(f"Batch.masks must hold {b} masks, got {len(self.masks)}")
