"""References to samples on disk, before loading: :class:`Sample` and :class:`RegionRef`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RegionRef", "Sample"]


@dataclass(frozen=True)
class RegionRef:
    """One ground-truth defect file of a sample (MVTec LOCO: one PNG per defect).

    ``saturation`` is the sPRO saturation threshold: a fraction of the defect's area when
    ``relative`` is True (``floor(saturation * area)`` pixels), else a number of pixels
    (at most the area). ``value`` is the pixel value identifying the defect in the file
    (0 = any non-zero pixel)."""

    path: Path
    saturation: float = 1.0
    relative: bool = True
    defect: str = ""
    value: int = 0


@dataclass(frozen=True)
class Sample:
    """One image of a dataset split, not yet loaded.

    ``mask_path`` is None for normal images and for datasets without pixel ground truth.
    ``defect`` is the defect type (``"good"`` for normal images). ``regions`` lists the
    per-defect ground-truth files of formats that have them (MVTec LOCO); the union of
    their masks is the sample's mask. ``video`` / ``frame`` locate a video frame.
    """

    id: str
    category: str
    split: str
    label: int
    defect: str
    image_path: Path
    mask_path: Path | None = None
    regions: tuple[RegionRef, ...] = ()
    video: str | None = None
    frame: int | None = None
