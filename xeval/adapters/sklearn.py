"""scikit-learn / PyOD outlier detectors on image or patch features, as a Detector.

A feature-extraction stage turns images into either

- image features ``(B, D)``: one score per image, no map; or
- patch features ``(B, h, w, D)``: each patch is scored by the estimator, giving an
  ``(h, w)`` anomaly map per image; the image score is its max (or mean).

**Score direction.** xeval's contract is *higher = more anomalous*. scikit-learn's
``score_samples`` (IsolationForest, LocalOutlierFactor(novelty=True), OneClassSVM,
EllipticEnvelope, GaussianMixture, KernelDensity...) and ``decision_function`` are
*higher = more normal*, so the adapter uses ``-score_samples``. PyOD's
``decision_function`` is already *higher = more anomalous* (its ``decision_scores_``
convention) and is used as is; PyOD estimators are recognised by their module name
(``pyod.``) or a ``decision_scores_`` attribute. ``higher_is_anomalous=`` and
``score_method=`` override the detection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from xeval.adapters._wrapped import (
    WrappedDetector,
    check_batch_size,
    check_input_size,
    check_reduction,
    describe,
    iter_images,
    to_numpy,
)
from xeval.adapters.imports import import_allowed
from xeval.checks import check_bool
from xeval.errors import InputError

LEVELS = ("auto", "image", "patch")


# -- built-in feature extractors (numpy, deterministic, no weights) -----------------------
def color_stats(images: np.ndarray) -> np.ndarray:
    """Image features ``(B, 3 C)``: per-channel mean, std and mean gradient magnitude."""
    x = np.asarray(images, dtype=np.float64)
    gy, gx = np.gradient(x, axis=(2, 3))
    grad = np.sqrt(gx**2 + gy**2).mean(axis=(2, 3))
    return np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3)), grad], axis=1).astype(
        np.float32
    )


def patch_stats(images: np.ndarray, *, patch: int = 8, stride: int | None = None) -> np.ndarray:
    """Patch features ``(B, h, w, 2 C)``: per-channel mean and std of each patch.

    Patches of ``patch x patch`` pixels on a grid of step ``stride`` (default ``patch``,
    non-overlapping); ``h = (H - patch) // stride + 1``.
    """
    x = np.asarray(images, dtype=np.float64)
    stride = int(stride or patch)
    patch = int(patch)
    if patch < 1 or stride < 1 or patch > min(x.shape[2:]):
        raise InputError(
            f"patch_stats: patch={patch} and stride={stride} must be >= 1 and fit the "
            f"images of shape {x.shape}"
        )
    win = np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # (B, C, h, w, p, p)
    mean = win.mean(axis=(4, 5))
    std = win.std(axis=(4, 5))
    return np.concatenate([mean, std], axis=1).transpose(0, 2, 3, 1).astype(np.float32)


def pixels(images: np.ndarray, *, size: int = 16) -> np.ndarray:
    """Image features ``(B, C size^2)``: the image block-averaged to ``size x size``."""
    x = np.asarray(images, dtype=np.float32)
    b, c, h, w = x.shape
    size = int(size)
    if h % size or w % size:
        raise InputError(f"pixels: size={size} must divide the image size {(h, w)}")
    x = x.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))
    return x.reshape(b, -1)


FEATURES: dict[str, Callable[..., np.ndarray]] = {
    "color_stats": color_stats,
    "patch_stats": patch_stats,
    "pixels": pixels,
}


def feature_extractor(name: str, **params: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A built-in extractor by name (``color_stats``, ``patch_stats``, ``pixels``) or an
    import path ``"package.module:fn"``; ``params`` are bound as keyword arguments."""
    fn = FEATURES.get(name) or import_allowed(name, what="features")
    if not callable(fn):
        raise InputError(f"features {name!r} is not callable: {describe(fn)}")
    if not params:
        return fn

    def bound(images: np.ndarray) -> np.ndarray:
        return fn(images, **params)

    bound.__qualname__ = f"{getattr(fn, '__qualname__', name)}({params})"
    return bound


def is_pyod(estimator: Any) -> bool:
    """True for a PyOD estimator (module ``pyod.*`` or a ``decision_scores_`` attribute)."""
    mod = type(estimator).__module__ or ""
    return mod == "pyod" or mod.startswith("pyod.") or hasattr(estimator, "decision_scores_")


class SklearnFeaturesDetector(WrappedDetector):
    """An outlier detector (scikit-learn or PyOD API) on features of the images.

    Score definition (higher = more anomalous): ``-estimator.score_samples(f)`` for
    scikit-learn, ``estimator.decision_function(f)`` for PyOD (see the module
    docstring), where ``f`` are image features; with patch features each patch is
    scored, the map is the ``(h, w)`` grid of patch scores and the image score its max
    (``reduction="max"``) or mean.

    Parameters
    ----------
    estimator:
        An unfitted estimator with ``fit(X)`` and ``score_samples(X)`` and/or
        ``decision_function(X)``. ``LocalOutlierFactor`` needs ``novelty=True``.
    features:
        A callable ``images (B, C, H, W) float32 -> (B, D)`` or ``(B, h, w, D)``, or the
        name of a built-in extractor (``color_stats``, ``patch_stats``, ``pixels``) or an
        import path ``"package.module:fn"``.
    feature_params:
        Keyword arguments bound to a named extractor (e.g. ``{"patch": 8}``).
    level:
        ``"image"``, ``"patch"`` or ``"auto"`` (from the rank of the features).
    score_method:
        ``"auto"``, ``"score_samples"``, ``"decision_function"`` or another method
        name of the estimator returning one value per row.
    higher_is_anomalous:
        Direction of ``score_method``'s output; None: detected (False for
        scikit-learn, True for PyOD).
    reduction:
        ``"max"`` or ``"mean"`` of the patch map for the image score.
    max_fit_samples:
        At most this many feature rows (patches) are used to fit, drawn with ``seed``.
    batch_size:
        Images per feature-extraction call.
    """

    kind = "sklearn_features"
    differentiable = False

    def __init__(
        self,
        estimator: Any,
        *,
        features: Callable[[np.ndarray], np.ndarray] | str = "color_stats",
        feature_params: dict | None = None,
        name: str = "sklearn_features",
        input_size: int | tuple[int, int] = (128, 128),
        level: str = "auto",
        score_method: str = "auto",
        higher_is_anomalous: bool | None = None,
        reduction: str = "max",
        max_fit_samples: int = 100_000,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.name = str(name)
        if not hasattr(estimator, "fit"):
            raise InputError(
                f"{self.who}: estimator must have fit(X) (scikit-learn/PyOD API), got "
                f"{describe(estimator)}"
            )
        if isinstance(features, str):
            self.features_name = features
            self.features = feature_extractor(features, **(feature_params or {}))
        elif callable(features):
            if feature_params:
                raise InputError(f"{self.who}: feature_params only apply to a named extractor")
            self.features_name = getattr(features, "__qualname__", type(features).__name__)
            self.features = features
        else:
            raise InputError(f"{self.who}: features must be callable or a name, got {features!r}")
        if level not in LEVELS:
            raise InputError(f"{self.who}: level must be one of {LEVELS}, got {level!r}")
        self.estimator = estimator
        self.feature_params = dict(feature_params or {})
        self.input_size = check_input_size(input_size)
        self.level = level
        self._has_map = None if level == "auto" else level == "patch"
        self.reduction = check_reduction(reduction)
        self.max_fit_samples = int(max_fit_samples)
        self.batch_size = check_batch_size(batch_size)
        self.seed = int(seed)
        self.score_method, self.higher_is_anomalous = self._resolve_method(
            score_method, higher_is_anomalous
        )
        self.fitted_ = False
        self.n_fit_rows_: int | None = None

    # -- score direction --------------------------------------------------------------
    def _resolve_method(self, method: str, higher: bool | None) -> tuple[str, bool]:
        est = self.estimator
        if getattr(est, "novelty", True) is False:
            raise InputError(
                f"{self.who}: {type(est).__name__}(novelty=False) cannot score new images; "
                f"create it with novelty=True"
            )
        pyod = is_pyod(est)
        if method == "auto":
            if pyod and hasattr(est, "decision_function"):
                method = "decision_function"
            elif hasattr(est, "score_samples"):
                method = "score_samples"
            elif hasattr(est, "decision_function"):
                method = "decision_function"
            else:
                raise InputError(
                    f"{self.who}: {type(est).__name__} has neither score_samples nor "
                    "decision_function; pass score_method="
                )
        elif not hasattr(est, method):
            raise InputError(f"{self.who}: {type(est).__name__} has no method {method!r}")
        if higher is None:
            # PyOD: higher = more anomalous; scikit-learn: higher = more normal.
            higher = pyod
        return method, check_bool(higher, "higher_is_anomalous")

    # -- features ---------------------------------------------------------------------
    def _extract(self, x: np.ndarray) -> np.ndarray:
        parts = []
        for i in range(0, len(x), self.batch_size):
            xb = x[i : i + self.batch_size]
            f = to_numpy(self.features(xb))
            if f.dtype == object or f.ndim not in (2, 4) or f.shape[0] != len(xb):
                raise InputError(
                    f"{self.who}: features {self.features_name!r} returned {describe(f)}, "
                    f"expected ({len(xb)}, D) image features or ({len(xb)}, h, w, D) patch "
                    "features"
                )
            if not np.all(np.isfinite(f)):
                raise InputError(
                    f"{self.who}: features {self.features_name!r} returned NaN or inf values"
                )
            parts.append(f.astype(np.float32, copy=False))
        f = np.concatenate(parts)
        lvl = "image" if f.ndim == 2 else "patch"
        if self.level != "auto" and self.level != lvl:
            raise InputError(
                f"{self.who}: level={self.level!r} but features {self.features_name!r} "
                f"returned shape {f.shape} ({lvl} features)"
            )
        self._has_map = lvl == "patch"
        return f

    def _infer_has_map(self) -> bool:
        self._extract(np.zeros((1, 3, *self.input_size), np.float32))
        return bool(self._has_map)

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        out = to_numpy(getattr(self.estimator, self.score_method)(rows))
        out = self._scores(
            out, len(rows), source=f"{type(self.estimator).__name__}.{self.score_method}"
        )
        return out if self.higher_is_anomalous else -out

    # -- Detector API -----------------------------------------------------------------
    def fit(self, batches: Iterable[np.ndarray]) -> SklearnFeaturesDetector:
        """Fit the estimator on the features of normal images (patches pooled).

        ``batches`` yields ``(B, C, H, W)`` float32 arrays (or Inputs objects).
        """
        feats = [self._extract(self._images(b, name="batch")) for b in iter_images(batches)]
        if not feats:
            raise InputError(f"{self.who}: fit got no images")
        f = np.concatenate(feats)
        rows = f.reshape(-1, f.shape[-1])
        if len(rows) > self.max_fit_samples:
            rng = np.random.default_rng(self.seed)
            rows = rows[np.sort(rng.choice(len(rows), self.max_fit_samples, replace=False))]
        self.estimator.fit(rows)
        self.n_fit_rows_ = len(rows)
        self.fitted_ = True
        return self

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores (B,), maps (B, h, w))`` float32, higher = more anomalous.

        Image features give maps of shape ``(B, 0, 0)`` (no map).
        """
        if not self.fitted_:
            raise InputError(f"{self.who} is not fitted: call fit(normal_batches) first")
        x = self._images(images)
        f = self._extract(x)
        b = len(x)
        if f.ndim == 2:
            return self._raw(f), self._no_maps(b)
        _, h, w, d = f.shape
        maps = self._raw(f.reshape(-1, d)).reshape(b, h, w)
        flat = maps.reshape(b, -1)
        scores = flat.max(axis=1) if self.reduction == "max" else flat.mean(axis=1)
        return scores.astype(np.float32), maps.astype(np.float32, copy=False)

    def torch_score(self) -> None:
        """None: tree ensembles / kernel methods on numpy features give no gradients."""
        return None

    def config(self) -> dict:
        return {
            **super().config(),
            "estimator": f"{type(self.estimator).__module__}.{type(self.estimator).__name__}",
            "estimator_params": _safe_params(self.estimator),
            "features": self.features_name,
            "feature_params": self.feature_params,
            "level": self.level,
            "score_method": self.score_method,
            "higher_is_anomalous": self.higher_is_anomalous,
            "reduction": self.reduction,
            "max_fit_samples": self.max_fit_samples,
            "seed": self.seed,
        }


def _safe_params(estimator: Any) -> dict:
    try:
        params = estimator.get_params(deep=False)
    except Exception:  # noqa: BLE001 - any estimator-specific failure: record nothing
        return {}
    return {k: v for k, v in params.items() if isinstance(v, int | float | str | bool | type(None))}
