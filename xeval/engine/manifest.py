"""Phase 8 -- manifest: versions, seed, configuration (as given and resolved), config
hash, dataset fingerprint, the subsets the costly metrics ran on, and timings."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
import sys

import xeval
from xeval.data.split import CategorySplit
from xeval.protocols.config import RunConfig

__all__ = ["build_manifest", "dataset_fingerprint", "package_versions"]

_PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "captum", "pandas", "scikit-image")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Python's, xeval's and the installed versions of the packages results depend on
    (plus ``extra``)."""
    versions = {"python": sys.version.split()[0], "xeval": xeval.__version__}
    for pkg in (*_PACKAGES, *extra):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


def dataset_fingerprint(
    splits: dict[str, CategorySplit], contents: dict[str, str] | None = None
) -> str:
    """sha256 (16 hex digits) over the categories' fingerprints: their content
    fingerprints (every file's bytes) when ``contents`` gives them, else ids, paths and
    file sizes."""
    parts = [contents[c] if contents else s.fingerprint() for c, s in splits.items()]
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def _card(fmt: str) -> dict:
    from xeval.data.cards import dataset_card

    card = dataset_card(fmt) or {}
    return {k: card[k] for k in ("name", "file", "license", "source") if k in card}


def build_manifest(
    cfg: RunConfig,
    splits: dict[str, CategorySplit],
    *,
    timings: dict,
    units: dict,
    contents: dict[str, str] | None = None,
    resume: dict[str, str] | None = None,
    executor: dict | None = None,
) -> dict:
    """The run's manifest; ``units`` maps ``"category/detector"`` to what each unit
    resolved (detector config, explainer configs, metrics with options, subsets, the key
    it was saved under); ``contents`` are the categories' content fingerprints,
    ``resume`` says for each unit whether it was computed, reused or recomputed (why) and
    ``executor`` where the units ran (kind, workers, threads per worker, scheduler,
    Dask versions, per-unit worker time and scheduling overhead; see
    :mod:`xeval.engine.executor`)."""
    versions = package_versions()
    return {
        "xeval_version": xeval.__version__,
        "versions": versions,
        "platform": platform.platform(),
        "config": cfg.to_dict(),
        "config_source": cfg.source,
        "config_hash": cfg.config_hash(),
        "seed": cfg.seed,
        "dataset_fingerprint": dataset_fingerprint(splits, contents),
        "dataset_fingerprint_kind": "content (sha256 of every file)"
        if contents
        else "paths and sizes",
        "dataset_card": _card(cfg.dataset.name),
        "dataset_categories": {c: s.counts() for c, s in splits.items()},
        "units": units,
        "resume": resume or {},
        "executor": executor or {"kind": "in-process", "workers": 1},
        "timings": timings,
        "metric_notes": {
            "pixel metrics": "maps upsampled bilinearly to the mask's native size; no "
            "normalisation, no clamping",
            "thresholds": "chosen on normal validation images held out from training",
            "subsets": f"costly metrics use '{cfg.evaluation.subset}' subsets (listed under units)",
        },
    }
