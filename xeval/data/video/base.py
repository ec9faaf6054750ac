"""The video data model every video reader returns and every video detector and metric
reads.

Conventions (recorded in each dataset's :attr:`VideoDataset.conventions` and in the run
manifest):

- **Frames** are indexed from 0 in display order inside each video, whatever the file
  names say (UCSD's ``001.tif`` is frame 0); :attr:`Video.frame_names` keeps the file
  name (or ``"<n>"`` for a container) of every frame so that errors and label files can
  name them.
- **Pixels**: frames are ``(T, H, W, C)`` uint8 (``C`` = 1 or 3) at native size; masks
  ``(T, H, W)`` bool at the same size. Boxes are continuous pixel coordinates
  ``x1 <= x2``, ``y1 <= y2`` with area ``(x2 - x1) * (y2 - y1)``.
- **Regions** (ground-truth boxes of anomalous tracks): a float64 array of rows
  ``(frame, track_id, x1, y1, x2, y2)``, the input of :func:`xeval.metrics.rbdc` and
  :func:`xeval.metrics.tbdc`.
- **Reasons** (X-MAN): per anomalous frame a tuple of ``(coarse, fine)`` pairs such as
  ``("action", "run / jog")``; the vocabulary is read from the label file
  (:class:`ReasonVocabulary`), never hard-coded.
- A training video is normal throughout (``labels`` all False, no masks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xeval.errors import DatasetError

__all__ = ["ReasonVocabulary", "Video", "VideoDataset", "Reason"]

Reason = tuple[str, str]
"""One reason label ``(coarse, fine)``, e.g. ``("action", "run / jog")``."""


@dataclass(frozen=True)
class ReasonVocabulary:
    """The reasons of a label file: ``fine`` pairs ``(coarse, fine)`` in a fixed order
    (sorted) and the ``coarse`` classes they belong to (sorted)."""

    fine: tuple[Reason, ...]

    def __post_init__(self) -> None:
        if len(set(self.fine)) != len(self.fine):
            raise DatasetError(f"ReasonVocabulary: repeated reasons in {self.fine}")

    @classmethod
    def from_labels(cls, labels: Iterable[Iterable[Reason]]) -> ReasonVocabulary:
        """The vocabulary of every reason that occurs in ``labels`` (sorted)."""
        return cls(tuple(sorted({tuple(r) for frame in labels for r in frame})))

    @property
    def coarse(self) -> tuple[str, ...]:
        return tuple(sorted({c for c, _ in self.fine}))

    @property
    def names(self) -> list[str]:
        """Display names ``"coarse: fine"`` in :attr:`fine` order."""
        return [f"{c}: {f}" for c, f in self.fine]

    def index(self, reason: Reason) -> int:
        try:
            return self.fine.index(tuple(reason))
        except ValueError:
            raise DatasetError(
                f"reason {tuple(reason)!r} is not in the vocabulary {self.names}"
            ) from None

    def encode(self, frames: Sequence[Iterable[Reason]]) -> np.ndarray:
        """``(n_frames, n_fine)`` bool: which reasons each frame carries."""
        out = np.zeros((len(frames), len(self.fine)), dtype=bool)
        for i, rs in enumerate(frames):
            for r in rs:
                out[i, self.index(r)] = True
        return out

    def coarse_matrix(self) -> np.ndarray:
        """``(n_fine, n_coarse)`` bool: fine reason -> its coarse class (a frame's
        coarse labels are ``fine @ M > 0``; a method's coarse score is the max of its
        fine scores in that class)."""
        cs = self.coarse
        m = np.zeros((len(self.fine), len(cs)), dtype=bool)
        for i, (c, _) in enumerate(self.fine):
            m[i, cs.index(c)] = True
        return m


@dataclass
class Video:
    """One video.

    Attributes
    ----------
    video_id:
        Unique within its dataset (e.g. ``"01_0014"``, ``"Test004"``).
    n_frames:
        Number of frames.
    frame_size:
        ``(H, W)`` at native size.
    read:
        ``read(start, stop) -> (stop - start, H, W, C)`` uint8 frames ``[start, stop)``.
    frame_names:
        One name per frame (file name, or ``"<n>"`` for frames of a container).
    labels:
        ``(T,)`` bool frame labels (None: unknown; training videos are all False).
    read_masks:
        ``read_masks(start, stop) -> (n, H, W)`` bool pixel masks, or None.
    regions:
        Ground-truth boxes ``(n, 6)`` float64 rows ``(frame, track_id, x1, y1, x2, y2)``
        or None.
    reasons:
        ``{frame: ((coarse, fine), ...)}`` for anomalous frames, or None.
    source:
        The file or folder the video comes from (named in errors).
    """

    video_id: str
    n_frames: int
    frame_size: tuple[int, int]
    read: Callable[[int, int], np.ndarray]
    frame_names: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    read_masks: Callable[[int, int], np.ndarray] | None = None
    regions: np.ndarray | None = None
    reasons: dict[int, tuple[Reason, ...]] | None = None
    source: str = ""

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` (default: all) as ``(n, H, W, C)`` uint8."""
        stop = self.n_frames if stop is None else stop
        return self.read(start, stop)

    def masks(self, start: int = 0, stop: int | None = None) -> np.ndarray | None:
        """Pixel masks ``[start, stop)`` as ``(n, H, W)`` bool, or None."""
        if self.read_masks is None:
            return None
        stop = self.n_frames if stop is None else stop
        return self.read_masks(start, stop)

    def frame_name(self, t: int) -> str:
        return self.frame_names[t] if self.frame_names else str(t)

    def validate(self) -> None:
        """Check that labels, regions and reasons agree with :attr:`n_frames` (errors
        name the file and frame)."""
        where = self.source or self.video_id
        if self.frame_names and len(self.frame_names) != self.n_frames:
            raise DatasetError(
                f"{where}: {len(self.frame_names)} frame names for {self.n_frames} frames"
            )
        if self.labels is not None:
            lab = np.asarray(self.labels)
            if lab.shape != (self.n_frames,):
                raise DatasetError(
                    f"{where}: frame labels hold {lab.size} entries but the video has "
                    f"{self.n_frames} frames"
                )
        if self.regions is not None and len(self.regions):
            r = np.asarray(self.regions, dtype=np.float64)
            if r.ndim != 2 or r.shape[1] != 6:
                raise DatasetError(f"{where}: regions must be rows (frame, track, x1, y1, x2, y2)")
            bad = np.flatnonzero((r[:, 0] < 0) | (r[:, 0] >= self.n_frames))
            if bad.size:
                raise DatasetError(
                    f"{where}: a track points at frame {int(r[bad[0], 0])}, but the video "
                    f"has frames 0..{self.n_frames - 1}"
                )
        if self.reasons:
            for t in self.reasons:
                if not 0 <= t < self.n_frames:
                    raise DatasetError(
                        f"{where}: reason labels for frame {t}, but the video has frames "
                        f"0..{self.n_frames - 1}"
                    )
                if self.labels is not None and not self.labels[t]:
                    raise DatasetError(
                        f"{where}: frame {t} ({self.frame_name(t)}) has reason labels but is "
                        "labelled normal"
                    )


@dataclass
class VideoDataset:
    """A video dataset: normal ``train`` videos, labelled ``test`` videos, the reason
    vocabulary (None without reason labels) and the conventions of its annotations
    (recorded in the manifest), e.g. ``{"frame_labels": "from test_frame_mask/*.npy"}``."""

    name: str
    root: Path | None
    train: list[Video]
    test: list[Video]
    vocabulary: ReasonVocabulary | None = None
    conventions: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        ids = [v.video_id for v in self.train + self.test]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise DatasetError(f"{self.name}: video ids repeated: {dup}")
        for v in self.train + self.test:
            v.validate()
