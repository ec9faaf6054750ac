"""What flows from a dataset to the metrics: a :class:`Record` of :class:`Inputs` (what
detectors and explainers may see) and :class:`Targets` (what only metrics may see).

Conventions
-----------
- ``Inputs.images``: ``(B, C, H, W)`` float32 in ``[0, 1]`` at the detector's working
  resolution; ``Inputs.clips``: ``(B, T, C, H, W)`` for clip detectors (video). A frame
  of a video is an image: ``video_ids`` and ``frame_index`` say which.
- ``Inputs.train_index``: for example-importance explainers, the index of each sample
  in the training set it comes from (``None`` for test samples).
- ``Targets.masks``: one boolean ``(H_i, W_i)`` mask per sample at the dataset's
  **native** resolution (all False for a normal sample); metrics compare maps with masks
  at the mask's resolution (maps are upsampled bilinearly, never the reverse).
- ``Targets.regions``: per sample, a tuple of ground-truth regions when a format has more
  than the union mask (MVTec LOCO: one :class:`DefectRegion` per defect file with its
  saturation area; video: boxes of tracks).
- ``Targets.reasons``: per sample, the reason labels (video, X-MAN).

Explainers receive ``record.inputs`` only; the engine never hands them targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np

from xeval.errors import InputError

__all__ = ["DefectRegion", "Inputs", "Record", "Targets"]


def _take(value, idx: np.ndarray):
    """Rows ``idx`` of an array, or items of a list (None stays None)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value[idx]
    return [value[i] for i in idx]


@dataclass(frozen=True)
class DefectRegion:
    """One ground-truth defect of a sample (a channel of MVTec LOCO's ground truth).

    ``mask`` is boolean at native resolution; ``saturation`` the number of pixels at
    which the defect counts as fully detected (sPRO; ``None`` = its area); ``defect``
    the defect's name."""

    mask: np.ndarray
    saturation: float | None = None
    defect: str = ""

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class Inputs:
    """What detectors and explainers may see (see the module docstring)."""

    ids: list[str]
    category: str
    images: np.ndarray | None = None
    clips: np.ndarray | None = None
    native_sizes: list[tuple[int, int]] = field(default_factory=list)
    video_ids: list[str] | None = None
    frame_index: np.ndarray | None = None
    train_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __post_init__(self) -> None:
        b = len(self.ids)
        if self.images is not None and (self.images.ndim != 4 or self.images.shape[0] != b):
            raise InputError(
                f"Inputs.images must have shape (B, C, H, W) with B={b}, got {self.images.shape}"
            )
        if self.clips is not None and (self.clips.ndim != 5 or self.clips.shape[0] != b):
            raise InputError(
                f"Inputs.clips must have shape (B, T, C, H, W) with B={b}, got {self.clips.shape}"
            )
        for name in ("native_sizes", "video_ids", "frame_index", "train_index"):
            v = getattr(self, name)
            if v is None or (name == "native_sizes" and len(v) == 0):
                continue
            if len(v) != b:
                raise InputError(f"Inputs.{name} must hold {b} entries, got {len(v)}")

    def subset(self, idx: Sequence[int] | np.ndarray) -> Inputs:
        """The inputs of samples ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            ids=[self.ids[i] for i in idx],
            images=_take(self.images, idx),
            clips=_take(self.clips, idx),
            native_sizes=_take(self.native_sizes, idx) if self.native_sizes else [],
            video_ids=_take(self.video_ids, idx),
            frame_index=_take(self.frame_index, idx),
            train_index=_take(self.train_index, idx),
        )


@dataclass
class Targets:
    """What only metrics may see (see the module docstring)."""

    labels: np.ndarray
    masks: list[np.ndarray] | None = None
    defects: list[str] = field(default_factory=list)
    regions: list[tuple] | None = None
    reasons: list | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        b = len(self.labels)
        if self.labels.ndim != 1:
            raise InputError(f"Targets.labels must have shape (B,), got {self.labels.shape}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "labels" or v is None or (f.name == "defects" and not v):
                continue
            if len(v) != b:
                raise InputError(f"Targets.{f.name} must hold {b} entries, got {len(v)}")

    def subset(self, idx: Sequence[int] | np.ndarray) -> Targets:
        idx = np.asarray(idx, dtype=np.int64)
        return Targets(
            labels=self.labels[idx],
            masks=_take(self.masks, idx),
            defects=_take(self.defects, idx) if self.defects else [],
            regions=_take(self.regions, idx),
            reasons=_take(self.reasons, idx),
        )


@dataclass
class Record:
    """A batch of samples: :attr:`inputs` for detectors and explainers, :attr:`targets`
    for metrics only."""

    inputs: Inputs
    targets: Targets

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise InputError(f"Record: {len(self.inputs)} inputs but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def ids(self) -> list[str]:
        return self.inputs.ids

    @property
    def category(self) -> str:
        return self.inputs.category

    def subset(self, idx: Sequence[int] | np.ndarray) -> Record:
        """The samples ``idx`` (in that order) of this record."""
        return Record(self.inputs.subset(idx), self.targets.subset(idx))
