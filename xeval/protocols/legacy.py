"""The 0.1 ``metrics:`` mapping of run configs, translated to the metric list.

Before metrics were registered, a config switched metric families on with booleans::

    metrics:
      mode: exact                 # pixel ranking: exact | binned
      fpr_limits: [0.3]
      threshold: {quantile: 0.99}
      validation_fraction: 0.2
      bootstrap: 1000
      localisation: true
      complexity: true
      faithfulness: {steps: 10, substrate: normal, max_images: 16}
      robustness: {radius: 0.02, n_samples: 5, max_images: 4}
      sanity: {max_images: 4}

Such a mapping still works -- with a :class:`~xeval.errors.XevalDeprecationWarning` --
and means exactly the metrics it meant then (:func:`translate`), so the numbers of an
old config do not change. Two defaults of the old engine differed from the library's
and are kept *for old configs only*: faithfulness ``steps: 10`` and robustness
``n_samples: 5`` (a metric listed by name uses the library's, 20 and 10).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping

from xeval.errors import ConfigError, XevalDeprecationWarning

__all__ = ["LEGACY_DEFAULTS", "merge_overrides", "translate"]

LEGACY_DEFAULTS = {
    "mode": "exact",
    "localisation": True,
    "complexity": True,
    "faithfulness": False,
    "robustness": False,
    "sanity": False,
    "fpr_limits": [0.3],
    "threshold": {"quantile": 0.99},
    "validation_fraction": 0.2,
    "bootstrap": 1000,
}

_SECTION_KEYS = {
    "faithfulness": {"steps", "substrate", "max_images"},
    "robustness": {"radius", "n_samples", "max_images"},
    "sanity": {"max_images"},
}


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def check_mapping(m: Mapping, where: str, *, allowed: set[str] | None = None) -> None:
    """Key and type checks of an old-style mapping (or of a per-detector override)."""
    allowed = set(LEGACY_DEFAULTS) if allowed is None else allowed
    unknown = sorted(set(m) - allowed)
    _expect(not unknown, f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("localisation", "complexity"):
        if key in m:
            _expect(
                isinstance(m[key], bool), f"{where}.{key} must be true or false, got {m[key]!r}"
            )
    if "mode" in m:
        _expect(
            m["mode"] in ("exact", "binned"),
            f"{where}.mode must be 'exact' or 'binned', got {m['mode']!r}",
        )
    if "fpr_limits" in m:
        lims = m["fpr_limits"]
        _expect(
            isinstance(lims, list)
            and lims
            and all(
                isinstance(x, int | float) and not isinstance(x, bool) and 0 < x <= 1 for x in lims
            ),
            f"{where}.fpr_limits must be a list of numbers in (0, 1], got {lims!r}",
        )
    if "threshold" in m:
        thr = m["threshold"]
        _expect(
            isinstance(thr, Mapping) and set(thr) <= {"quantile"},
            f"{where}.threshold must be a mapping {{quantile: q}}, got {thr!r}",
        )
        q = thr.get("quantile", 0.99)
        _expect(
            isinstance(q, int | float) and not isinstance(q, bool) and 0 < q <= 1,
            f"{where}.threshold.quantile must be in (0, 1], got {q!r}",
        )
    for key, keys in _SECTION_KEYS.items():
        if key not in m:
            continue
        val = m[key]
        _expect(
            val is False or val is None or isinstance(val, Mapping),
            f"{where}.{key} must be false or a mapping with keys {sorted(keys)}, got {val!r}",
        )
        if isinstance(val, Mapping):
            unknown = sorted(set(val) - keys)
            _expect(
                not unknown,
                f"{where}.{key}: unknown key(s) {unknown}; allowed: {sorted(keys)}",
            )
            for opt, v in val.items():
                at = f"{where}.{key}.{opt}"
                if opt in ("steps", "max_images", "n_samples"):
                    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1
                    _expect(ok, f"{at} must be an integer >= 1, got {v!r}")
                elif opt == "radius":
                    ok = isinstance(v, int | float) and not isinstance(v, bool) and v > 0
                    _expect(ok and math.isfinite(v), f"{at} must be a number > 0, got {v!r}")
                elif opt == "substrate":
                    _expect(isinstance(v, str), f"{at} must be a substrate name, got {v!r}")


def merge_overrides(base: Mapping, override: Mapping) -> dict:
    """A per-detector override of an old-style mapping (section mappings replace)."""
    out = copy.deepcopy(dict(base))
    out.update(copy.deepcopy(dict(override)))
    return out


def translate(m: Mapping, *, where: str, warn: bool = True) -> tuple[list[dict], dict]:
    """``(metric entries, evaluation settings)`` meaning what the old mapping ``m`` meant."""
    check_mapping(m, where)
    if warn:
        warnings.warn(
            f"{where}: the 'metrics:' mapping of booleans is deprecated; list metrics by "
            "name with options instead (e.g. metrics: [pixel_auroc, {name: aupro, "
            "fpr_limit: 0.3}, {name: deletion_auc, steps: 10}]) and move "
            "validation_fraction / bootstrap to 'evaluation:'; see protocols/demo.yaml",
            XevalDeprecationWarning,
            stacklevel=4,
        )
    full = {**copy.deepcopy(LEGACY_DEFAULTS), **copy.deepcopy(dict(m))}
    mode = full["mode"]
    q = float((full["threshold"] or {}).get("quantile", 0.99))
    out: list[dict] = [
        {"name": "image_auroc"},
        {"name": "image_aupr"},
        {"name": "image_f1_max"},
        {"name": "image_fpr_at_tpr", "tpr": 0.95},
        {"name": "pixel_auroc", "mode": mode},
        {"name": "pixel_aupr", "mode": mode},
        *({"name": "aupro", "fpr_limit": float(x), "mode": mode} for x in full["fpr_limits"]),
        {"name": "iou_oracle", "mode": mode},
        {"name": "pro", "quantile": q},
        {"name": "iou", "quantile": q},
        {"name": "dice", "quantile": q},
        {"name": "iou_per_image", "quantile": q},
    ]
    if full["localisation"]:
        out += [
            {"name": "pointing_game"},
            {"name": "relevance_mass"},
            {"name": "relevance_rank"},
            {"name": "top_k_intersection", "k": 0.05},
        ]
    if full["complexity"]:
        out += [{"name": "gini_sparseness"}, {"name": "entropy_complexity"}]
    out.append({"name": "degenerate_maps"})
    # as the old engine: an empty section ({}) switched its family off
    f = full["faithfulness"] or {}
    if f:
        opts = {
            "steps": int(f.get("steps", 10)),
            "substrate": f.get("substrate", "normal"),
            "max_images": int(f.get("max_images", 16)),
        }
        out += [{"name": "deletion_auc", **opts}, {"name": "insertion_auc", **opts}]
    r = full["robustness"] or {}
    if r:
        out.append(
            {
                "name": "max_sensitivity",
                "radius": float(r.get("radius", 0.02)),
                "n_samples": int(r.get("n_samples", 5)),
                "max_images": int(r.get("max_images", 4)),
            }
        )
    s = full["sanity"] or {}
    if s:
        out.append({"name": "mprt_spearman", "max_images": int(s.get("max_images", 4))})
    evaluation = {
        "validation_fraction": full["validation_fraction"],
        "bootstrap": full["bootstrap"],
    }
    # the old engine drew robustness and sanity images from one shared pick of
    # max(robustness.max_images, sanity.max_images) anomalous images
    shared = [int(x.get("max_images", 4)) for x in (r, s) if x]
    if len(shared) == 2 and shared[0] != shared[1]:
        for e in out:
            if e["name"] in ("max_sensitivity", "mprt_spearman"):
                e["max_images"] = max(shared)
    return out, evaluation
