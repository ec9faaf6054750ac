"""The result of reading one category of a dataset: :class:`CategorySplit`."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from xeval.data.sample import Sample
from xeval.errors import DatasetError

__all__ = ["CategorySplit"]


@dataclass
class CategorySplit:
    """Train and test samples of one category.

    Attributes
    ----------
    category:
        Category name (``"bottle"``, ``"brick"``...).
    train:
        Normal training samples (label 0), sorted by id.
    test:
        Test samples, normal (``defect == "good"``) and anomalous, sorted by id.
    root:
        Dataset root folder the paths are relative to.
    validation:
        Normal validation samples of formats that ship them (MVTec LOCO's
        ``validation/good``); empty otherwise, and the engine then holds a fraction of
        ``train`` out instead. Thresholds are calibrated on them.
    """

    category: str
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    root: Path = field(default_factory=Path)
    validation: list[Sample] = field(default_factory=list)

    @property
    def defects(self) -> list[str]:
        """Sorted defect types present in the test set (``"good"`` excluded)."""
        return sorted({s.defect for s in self.test if s.label == 1})

    def counts(self) -> dict[str, int]:
        """Number of samples per split and test defect type, e.g. ``{"train": 60, ...}``."""
        out = {"train": len(self.train), "test": len(self.test)}
        if self.validation:
            out["validation"] = len(self.validation)
        for defect, n in sorted(Counter(s.defect for s in self.test).items()):
            out[f"test/{defect}"] = n
        return out

    def fingerprint(self, *, content: bool = False) -> str:
        """A SHA-256 hex digest identifying the split (for run manifests).

        Parameters
        ----------
        content:
            False (default): hash ids, labels, relative paths and file sizes (fast, stable
            across copies of the dataset). True: also hash every file's bytes.
        """
        h = hashlib.sha256()
        root = Path(self.root)
        for s in [*self.train, *self.validation, *self.test]:
            for p in (s.image_path, s.mask_path, *(r.path for r in s.regions)):
                if p is None:
                    h.update(b"-\n")
                    continue
                p = Path(p)
                try:
                    rel = p.relative_to(root).as_posix()
                except ValueError:
                    rel = p.as_posix()
                # surrogateescape: names that are not UTF-8 hash as their bytes
                h.update(
                    f"{s.id}|{s.split}|{s.label}|{s.defect}|{rel}|".encode(errors="surrogateescape")
                )
                h.update(str(p.stat().st_size if p.exists() else -1).encode() + b"\n")
                if content and p.exists():
                    try:
                        h.update(hashlib.sha256(p.read_bytes()).digest())
                    except OSError as exc:
                        raise DatasetError(
                            f"cannot read {p} to fingerprint the dataset: "
                            f"{type(exc).__name__}: {exc.strerror or exc}"
                        ) from exc
        return h.hexdigest()
