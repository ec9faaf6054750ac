"""Normal-content replacements, shared by attribution baselines and faithfulness.

DESIGN.md: *removing pixels with black or blur creates new anomalies* — for an anomaly
detector a black square **is** an anomaly. The same holds for the baseline of an
attribution (IG, SHAP, DeepLIFT, occlusion): "what makes ``x`` more anomalous than a
black image?" is mostly "everything that is not black". This module holds, once, what
replaces image content in both uses:

- as a **removal substrate** (deletion / insertion, AOPC, faithfulness correlation,
  infidelity): :meth:`Substrate.bind` prepares the replacement content for a set of
  images, and its ``fill`` gives the content of removed pixels;
- as an **attribution baseline** (the reference input of IG, GradientSHAP, DeepLIFT,
  occlusion, ablation): :meth:`Substrate.single` gives one reference per input and
  :meth:`Substrate.distribution` a set of references (GradientSHAP, DeepLiftShap).

Substrates
----------
``"normal"`` (default) -- :class:`NormalReference`
    Normal reference images: their **mean** for a single reference and for removal
    (fully replaced, an image *is* the mean normal image), ``k`` of them drawn with a
    seed for a distribution.
``"normal_sample"`` -- :class:`NormalSample` (removal only)
    One normal reference image per image, drawn from the references with a seed keyed
    by the sample: real normal content. For textures (and any data whose mean image is
    not itself normal: a flat mean tile is an anomaly to a texture detector, or
    trivially easy for an autoencoder) this is the substrate whose fully replaced image
    scores like a normal image.
``"reconstruction"`` -- :class:`Reconstruction` (removal only)
    The detector's own reconstruction of each image (``detector.reconstruct``): the
    "normal version" of that very image.
``"road"`` -- :class:`Road` (removal only)
    Noisy linear imputation (ROAD, Rong et al. 2022, "A Consistent and Efficient
    Evaluation Strategy for Attribution Methods", ICML): each removed pixel is set to
    the weighted mean of its in-image 8-neighbours (weights 1/6 for the 4 direct and
    1/12 for the 4 diagonal neighbours, renormalised at the image border), removed
    neighbours being unknowns too: one sparse linear system per (image, mask), solved
    with :func:`scipy.sparse.linalg.spsolve` for all channels at once, plus Gaussian
    noise of standard deviation ``noise`` (0.01, ROAD's default) on the imputed pixels.
    The system has no anchor when *every* pixel is removed (ROAD itself stops at 90 %);
    the fully removed image -- the end of a deletion curve, the start of an insertion
    curve, hence the normalisation point -- is then the mean normal ``reference`` when
    one is given, else the flat image at the original's channel means (ROAD's
    ``ChannelMeanImputer``, the constant harmonic solution). That flat image keeps the
    defect's share of the mean and can itself look anomalous: pass ``reference=``.
``"black"``, ``"blur"`` -- :class:`Black`, :class:`Blur`
    Zeros / a Gaussian blur of the image (``sigma`` pixels). Available for comparison
    with the literature, but **flagged** as removal substrates: they create new
    anomalies (a :class:`SubstrateWarning` and a note in the results).
``"uniform"`` -- :class:`Uniform`; an array -- :class:`Constant` (baselines only)
    Uniform noise, or an explicit reference image / set of images.

A substrate is given by name (``substrate="road"``, ``baseline="blur"``) or as an
instance (``Road(noise=0.0)``, ``Blur(sigma=3)``).
"""

from __future__ import annotations

import hashlib
import warnings
from abc import ABC, abstractmethod

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

from xeval.errors import InputError
from xeval.rng import rng as make_rng

__all__ = [
    "ANOMALY_NOTE",
    "BASELINE_NAMES",
    "SUBSTRATE_NAMES",
    "Baseline",
    "Black",
    "Blur",
    "BoundSubstrate",
    "Constant",
    "Normal",
    "NormalReference",
    "NormalSample",
    "Reconstruction",
    "Road",
    "Substrate",
    "SubstrateWarning",
    "Uniform",
    "array_fingerprint",
    "mean_reference",
    "resolve_baseline",
    "resolve_substrate",
    "road_impute",
]

SUBSTRATE_NAMES = ("normal", "normal_sample", "reconstruction", "road", "black", "blur")
"""Names accepted as removal substrates."""
BASELINE_NAMES = ("normal", "black", "blur", "uniform")
"""Names accepted as attribution baselines."""

# ROAD's neighbour weights: ((dy, dx), weight); direct neighbours 1/6, diagonals 1/12.
ROAD_NEIGHBOURS: tuple[tuple[tuple[int, int], float], ...] = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)

ANOMALY_NOTE = (
    "substrate {name!r} replaces pixels with content that is itself anomalous for an "
    "anomaly detector (DESIGN.md: removing pixels with black or blur creates new "
    "anomalies); prefer 'normal', 'reconstruction' or 'road'"
)


class SubstrateWarning(UserWarning):
    """A substrate that creates new anomalies (black, blur) was used for removal."""


# ---------------------------------------------------------------------- primitives
def array_fingerprint(a: np.ndarray) -> str:
    """sha256 (hex, first 16 chars) of a float32 array's shape and bytes."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def as_float_images(a: object, what: str) -> np.ndarray:
    """``a`` (numpy, torch, or an object with ``images``) as finite float32."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    if hasattr(a, "images") and not isinstance(a, np.ndarray):
        a = a.images
    if not isinstance(a, np.ndarray):
        raise InputError(f"{what} must be a numpy array, got {type(a).__name__}")
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{what} must be floating point (images in [0, 1]), got {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} contains NaN or infinite values (shape {a.shape})")
    return np.ascontiguousarray(a, dtype=np.float32)


def _check_like(ref: np.ndarray, images: np.ndarray, what: str) -> None:
    if tuple(ref.shape[-3:]) != tuple(images.shape[1:]):
        raise InputError(
            f"{what} has shape (C, H, W) = {tuple(ref.shape[-3:])} but the images have "
            f"{tuple(images.shape[1:])}: pass a baseline / reference at the images' "
            "channels and resolution (the detector's input size)"
        )


def mean_reference(reference, images_shape: tuple[int, ...]) -> np.ndarray:
    """The mean normal image ``(1, C, H, W)`` float32 of ``reference`` ``(N,C,H,W)``/``(C,H,W)``."""
    if reference is None:
        raise InputError(
            "substrate 'normal' needs reference=: normal images (N, C, H, W) or their mean "
            "(C, H, W) at the images' channels and size; or choose substrate="
            "'reconstruction' (detectors with reconstruct()) or 'road' (noisy linear "
            "imputation, needs nothing)"
        )
    if isinstance(reference, NormalReference):
        reference = reference.images
    ref = np.asarray(reference)
    if ref.ndim == 3:
        ref = ref[None]
    if ref.ndim != 4 or ref.shape[0] == 0:
        raise InputError(
            f"reference must be normal images (N, C, H, W) or one image (C, H, W), got shape "
            f"{np.shape(reference)}"
        )
    if not np.issubdtype(ref.dtype, np.floating):
        raise InputError(f"reference must be floating point, got dtype {ref.dtype}")
    if tuple(ref.shape[1:]) != tuple(images_shape[1:]):
        raise InputError(
            f"reference has shape (C, H, W) = {tuple(ref.shape[1:])} but images have "
            f"{tuple(images_shape[1:])} (images shape {tuple(images_shape)}): pass normal "
            "images at the images' channels and resolution"
        )
    if not np.all(np.isfinite(ref)):
        raise InputError(f"reference holds NaN or infinite values (shape {ref.shape})")
    return ref.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``(B, C, H, W)`` images over H and W (reflected borders)."""
    s = (0, 0, sigma, sigma)
    return ndimage.gaussian_filter(images, sigma=s, mode="reflect").astype(np.float32)


# --------------------------------------------------------------------------- classes
class BoundSubstrate(ABC):
    """A removal substrate prepared for one set of images."""

    @abstractmethod
    def fill(self, idx: np.ndarray, removed: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Replacement content ``(n, C, H, W)`` float32 for ``n`` jobs.

        ``idx`` ``(n,)``: image index of each job; ``removed`` ``(n, H, W)`` bool: the
        removed pixels; ``keys``: one key per job seeding its noise -- an int, a str or a
        tuple of them, e.g. ``(sample id, step)`` -- so that values depend neither on how
        jobs are chunked nor on an image's position in a call. Only the values at
        removed pixels are used.
        """


class _FixedBound(BoundSubstrate):
    """One replacement image per input image (or one shared by all)."""

    def __init__(self, content: np.ndarray) -> None:
        self.content = content  # (B, C, H, W) or (1, C, H, W)

    def fill(self, idx: np.ndarray, removed: np.ndarray, keys: np.ndarray) -> np.ndarray:
        if self.content.shape[0] == 1:
            return np.broadcast_to(self.content, (len(idx), *self.content.shape[1:]))
        return self.content[idx]


class Substrate:
    """What replaces image content: as a removal substrate (:meth:`bind`) and/or as an
    attribution baseline (:meth:`single`, :meth:`distribution`). A substrate that cannot
    serve in one role raises :class:`~xeval.errors.InputError` there."""

    name: str = "substrate"
    #: True for substrates that insert anomalous content (black, blur): flagged.
    creates_anomalies: bool = False

    # -- removal ----------------------------------------------------------------------
    def bind(
        self, detector, images: np.ndarray, *, reference: np.ndarray | None, seed: int
    ) -> BoundSubstrate:
        """Prepare removal content for ``images`` ``(B, C, H, W)`` float32."""
        raise InputError(f"{self.name!r} cannot replace removed pixels (a baseline only)")

    # -- baseline ---------------------------------------------------------------------
    def single(self, images: np.ndarray) -> np.ndarray:
        """One reference per input, ``(B, C, H, W)`` float32."""
        raise InputError(f"{self.name!r} cannot serve as an attribution baseline")

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        """``(K, C, H, W)`` shared by all inputs, or ``(B, K, C, H, W)`` per input."""
        raise InputError(f"{self.name!r} cannot serve as an attribution baseline")

    def describe(self) -> str:
        """A one-line description recorded with the results."""
        return self.name

    def config(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: Attribution baselines are substrates (the name used by explainers).
Baseline = Substrate


class NormalReference(Substrate):
    """Normal reference images (the default for both roles).

    Parameters
    ----------
    images_normal:
        ``(N, C, H, W)`` normal (anomaly-free) images, typically the training images,
        at the resolution of the images to explain; None to take them from the
        ``reference=`` argument of a faithfulness metric.
    k:
        Size of the distribution for GradientSHAP / DeepLiftShap: ``k`` images drawn
        without replacement with the call's seed (all of them when ``N <= k``).

    :meth:`single` and removal use the **mean** normal image.
    """

    name = "normal"

    def __init__(self, images_normal: np.ndarray | None = None, *, k: int = 16) -> None:
        if int(k) < 1:
            raise InputError(f"k must be >= 1, got {k!r}")
        self.k = int(k)
        self.images = None
        if images_normal is not None:
            a = as_float_images(images_normal, "reference")
            if a.ndim == 3:
                a = a[None]
            if a.ndim != 4 or a.shape[0] < 1:
                raise InputError(
                    f"reference (normal images) must have shape (N, C, H, W), got {a.shape}"
                )
            self.images = a
            self.mean = a.mean(axis=0, dtype=np.float64).astype(np.float32)
            self._fingerprint = array_fingerprint(a)

    def _need_images(self) -> np.ndarray:
        if self.images is None:
            raise InputError("NormalReference() holds no normal images: pass images_normal")
        return self.images

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        ref = self.images if self.images is not None else reference
        return _FixedBound(mean_reference(ref, images.shape))

    def single(self, images: np.ndarray) -> np.ndarray:
        self._need_images()
        _check_like(self.mean, images, "reference (normal images)")
        return np.broadcast_to(self.mean[None], images.shape).astype(np.float32)

    def distribution(self, images: np.ndarray, *, k: int | None = None, seed: int = 0):
        imgs = self._need_images()
        _check_like(imgs, images, "reference (normal images)")
        k = self.k if k is None else int(k)
        n = len(imgs)
        if n <= k:
            return imgs
        idx = np.sort(np.random.default_rng(int(seed)).choice(n, size=k, replace=False))
        return imgs[idx]

    def describe(self) -> str:
        return "normal (mean normal reference image)"

    def config(self) -> dict:
        if self.images is None:
            return {"name": "normal_reference", "k": self.k}
        return {
            "name": "normal_reference",
            "n": int(len(self.images)),
            "k": self.k,
            "sha256": self._fingerprint,
        }


#: Removal-substrate name of :class:`NormalReference`.
Normal = NormalReference


class _SampledBound(BoundSubstrate):
    def __init__(self, references: np.ndarray, seed: int) -> None:
        self.references = references
        self.seed = seed

    def fill(self, idx, removed, keys) -> np.ndarray:
        out = np.empty((len(idx), *self.references.shape[1:]), np.float32)
        for j, k in enumerate(keys):
            sample_key = k[0] if isinstance(k, tuple) else k
            pick = make_rng(self.seed, sample_key, "normal_sample").integers(len(self.references))
            out[j] = self.references[pick]
        return out


class NormalSample(Substrate):
    """One normal reference image per image (``reference=`` normal images ``(N, C, H,
    W)``), drawn with a seed keyed by the sample (the same image at every step of its
    curve, whatever the batch); removal only."""

    name = "normal_sample"

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        if reference is None:
            raise InputError(
                "substrate 'normal_sample' needs reference=: normal images (N, C, H, W) at "
                "the images' channels and size"
            )
        ref = np.asarray(reference.images if isinstance(reference, NormalReference) else reference)
        if ref.ndim == 3:
            ref = ref[None]
        mean_reference(ref, images.shape)  # the same checks (shape, dtype, finite)
        return _SampledBound(ref.astype(np.float32, copy=False), int(seed))

    def describe(self) -> str:
        return "normal_sample (a normal reference image per image, seeded)"


class Reconstruction(Substrate):
    """The detector's reconstruction of each image (``detector.reconstruct``); removal
    only."""

    name = "reconstruction"

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        rec_fn = getattr(detector, "reconstruct", None)
        if not callable(rec_fn):
            raise InputError(
                f"substrate 'reconstruction' needs a detector with reconstruct(images); "
                f"{type(detector).__name__} {getattr(detector, 'name', '')!r} has none "
                "(xeval.adapters.ConvAutoencoder has it). Use substrate='normal' with "
                "reference=normal images, or substrate='road'"
            )
        rec = np.asarray(rec_fn(images))
        if rec.shape != images.shape:
            raise InputError(
                f"detector.reconstruct returned shape {rec.shape} for images of shape "
                f"{images.shape}: the reconstruction must match the images (a 1-channel "
                "image reconstructed in 3 channels: pass 3-channel images)"
            )
        if not np.all(np.isfinite(rec)):
            raise InputError("detector.reconstruct returned NaN or infinite values")
        return _FixedBound(rec.astype(np.float32, copy=False))

    def describe(self) -> str:
        return "reconstruction (the detector's reconstruction of each image)"


class Black(Substrate):
    """Zeros. Flagged for removal: a black region is an anomaly for most detectors; a
    poor attribution baseline for the same reason (kept for comparison)."""

    name = "black"
    creates_anomalies = True

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        return _FixedBound(np.zeros((1, *images.shape[1:]), np.float32))

    def single(self, images: np.ndarray) -> np.ndarray:
        return np.zeros_like(images, dtype=np.float32)

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        return np.zeros((1, *images.shape[1:]), dtype=np.float32)

    def describe(self) -> str:
        return "black (zeros; creates new anomalies)"


class Blur(Substrate):
    """Gaussian blur of each image (``sigma`` pixels, reflected borders): keeps colour
    and layout, removes fine structure (and fine defects). Flagged for removal."""

    name = "blur"
    creates_anomalies = True

    def __init__(self, sigma: float = 5.0) -> None:
        if not float(sigma) > 0:
            raise InputError(f"Blur sigma must be > 0 pixels, got {sigma!r}")
        self.sigma = float(sigma)

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        return _FixedBound(gaussian_blur(images, self.sigma))

    def single(self, images: np.ndarray) -> np.ndarray:
        return gaussian_blur(np.asarray(images, dtype=np.float32), self.sigma)

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        return self.single(images)[:, None]

    def describe(self) -> str:
        return f"blur (Gaussian, sigma={self.sigma:g} px; creates new anomalies)"

    def config(self) -> dict:
        return {"name": self.name, "sigma": self.sigma}

    def __repr__(self) -> str:
        return f"Blur(sigma={self.sigma!r})"


class Uniform(Substrate):
    """Uniform noise in ``[low, high)`` drawn with ``seed`` (offset by the call's seed);
    baseline only."""

    name = "uniform"

    def __init__(self, low: float = 0.0, high: float = 1.0, *, seed: int = 0) -> None:
        if not float(high) > float(low):
            raise InputError(f"Uniform needs high > low, got low={low!r}, high={high!r}")
        self.low, self.high, self.seed = float(low), float(high), int(seed)

    def single(self, images: np.ndarray) -> np.ndarray:
        """One noise image (from ``seed``) shared by every input: batch-independent."""
        rng = np.random.default_rng(self.seed)
        one = rng.uniform(self.low, self.high, size=images.shape[1:]).astype(np.float32)
        return np.broadcast_to(one, images.shape).copy()

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(seed)])
        size = (int(k), *images.shape[1:])
        return rng.uniform(self.low, self.high, size=size).astype(np.float32)

    def config(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high, "seed": self.seed}


class Constant(Substrate):
    """An explicit array: ``(C, H, W)`` (one reference) or ``(K, C, H, W)``; baseline
    only. ``single`` needs exactly one reference (``K == 1``); a distribution of
    ``K > 1`` belongs to GradientSHAP / DeepLiftShap (or pass its mean)."""

    name = "array"

    def __init__(self, array: np.ndarray) -> None:
        a = as_float_images(array, "baseline")
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[0] < 1:
            raise InputError(
                f"baseline array must have shape (C, H, W) or (K, C, H, W), got {a.shape}"
            )
        self.array = a

    def single(self, images: np.ndarray) -> np.ndarray:
        _check_like(self.array, images, "baseline")
        if self.array.shape[0] != 1:
            raise InputError(
                f"this method takes one baseline, shape (C, H, W) or (1, C, H, W); got "
                f"{self.array.shape[0]} of them (shape {self.array.shape}). Use "
                "gradient_shap / deeplift_shap for a distribution of baselines, or pass "
                "its mean"
            )
        return np.broadcast_to(self.array, images.shape).astype(np.float32)

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        _check_like(self.array, images, "baseline")
        return self.array

    def config(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.array.shape),
            "sha256": array_fingerprint(self.array),
        }


# ------------------------------------------------------------------------------ ROAD
def road_impute(
    image: np.ndarray,
    removed: np.ndarray,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Noisy linear imputation of the removed pixels of one image (ROAD).

    Each removed pixel ``i`` satisfies ``x_i = sum_j w_ij x_j / sum_j w_ij`` over its
    in-image 8-neighbours ``j`` (``w`` = 1/6 direct, 1/12 diagonal), where removed
    neighbours are unknowns and kept neighbours are given; the sparse system is solved
    for all channels at once and ``N(0, noise**2)`` is added to the imputed values.
    This reproduces ROAD's ``NoisyLinearImputer`` (Rong et al. 2022). A linear ramp is
    reproduced exactly at removed pixels that do not touch the image border (the
    symmetric weights average a linear function to its centre value).

    Parameters
    ----------
    image:
        ``(C, H, W)`` float array.
    removed:
        ``(H, W)`` bool, True = impute.
    noise:
        Standard deviation of the Gaussian noise added to imputed pixels (0: none).
    rng:
        A numpy Generator or a seed.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` float32; kept pixels unchanged. When every pixel is removed the
        system has no anchor: the result is the flat image at the channel means of
        ``image`` (plus noise).
    """
    image = np.asarray(image)
    removed = np.asarray(removed, dtype=bool)
    if image.ndim != 3 or removed.shape != image.shape[1:]:
        raise InputError(
            f"road_impute needs image (C, H, W) and removed (H, W), got shapes "
            f"{image.shape} and {removed.shape}"
        )
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    c, h, w = image.shape
    out = image.astype(np.float64, copy=True)
    flat_removed = removed.ravel()
    unknown = np.flatnonzero(flat_removed)
    n = unknown.size
    if n == 0:
        return out.astype(np.float32)
    flat = out.reshape(c, -1)
    if n == h * w:
        vals = np.broadcast_to(flat.mean(axis=1, keepdims=True), (c, n)).copy()
    else:
        var_of = np.full(h * w, -1, dtype=np.int64)
        var_of[unknown] = np.arange(n)
        uy, ux = np.divmod(unknown, w)
        rows, cols, data = [], [], []
        diag = np.zeros(n)
        rhs = np.zeros((n, c))
        for (dy, dx), wt in ROAD_NEIGHBOURS:
            ny, nx = uy + dy, ux + dx
            ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            eq = np.flatnonzero(ok)
            nb = ny[ok] * w + nx[ok]
            diag[eq] += wt
            unk = flat_removed[nb]
            rows.append(eq[unk])
            cols.append(var_of[nb[unk]])
            data.append(np.full(int(unk.sum()), -wt))
            known = ~unk
            rhs[eq[known]] += wt * flat[:, nb[known]].T  # eq is unique per offset
        rows.append(np.arange(n))
        cols.append(np.arange(n))
        data.append(diag)
        a = sparse.csc_matrix(
            (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        sol = spsolve(a, rhs)
        vals = np.asarray(sol).reshape(n, c).T
    if noise:
        vals = vals + noise * rng.standard_normal(vals.shape)
    flat[:, unknown] = vals
    return out.astype(np.float32)


class _RoadBound(BoundSubstrate):
    def __init__(
        self, images: np.ndarray, noise: float, seed: int, full: np.ndarray | None
    ) -> None:
        self.images = images
        self.noise = noise
        self.seed = seed
        self.full = full  # (1, C, H, W) mean normal reference, or None

    def fill(self, idx: np.ndarray, removed: np.ndarray, keys: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.images.shape[1:]), np.float32)
        for j, (i, m, k) in enumerate(zip(idx, removed, keys, strict=True)):
            if self.full is not None and m.all():
                out[j] = self.full[0]
                continue
            rng = make_rng(self.seed, *(k if isinstance(k, tuple) else (k,)))
            out[j] = road_impute(self.images[i], m, noise=self.noise, rng=rng)
        return out


class Road(Substrate):
    """Noisy linear imputation (ROAD, Rong et al. 2022); see :func:`road_impute`.

    When every pixel is removed the image is the mean of ``reference`` (if given to the
    metric), else the flat channel-mean image.
    """

    name = "road"

    def __init__(self, noise: float = 0.01) -> None:
        if not float(noise) >= 0:
            raise InputError(f"Road noise must be >= 0, got {noise!r}")
        self.noise = float(noise)

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        full = None if reference is None else mean_reference(reference, images.shape)
        self._full = "normal reference" if full is not None else "flat channel means"
        return _RoadBound(images, self.noise, seed, full)

    def describe(self) -> str:
        end = getattr(self, "_full", None)
        tail = f"; fully removed = {end}" if end else ""
        return f"road (noisy linear imputation, noise={self.noise:g}{tail})"

    def __repr__(self) -> str:
        return f"Road(noise={self.noise!r})"


def resolve_substrate(substrate: str | Substrate) -> Substrate:
    """Turn a removal-substrate name or instance into a :class:`Substrate`; warn for
    flagged ones (:class:`SubstrateWarning`)."""
    if isinstance(substrate, Substrate):
        sub = substrate
    elif isinstance(substrate, str) and substrate in SUBSTRATE_NAMES:
        sub = {
            "normal": NormalReference,
            "normal_sample": NormalSample,
            "reconstruction": Reconstruction,
            "road": Road,
            "black": Black,
            "blur": Blur,
        }[substrate]()
    else:
        raise InputError(
            f"substrate must be one of {SUBSTRATE_NAMES} or a Substrate instance, got {substrate!r}"
        )
    if sub.creates_anomalies:
        warnings.warn(ANOMALY_NOTE.format(name=sub.name), SubstrateWarning, stacklevel=3)
    return sub


def resolve_baseline(
    baseline: object = None, *, reference: object = None, k: int = 16
) -> Substrate | None:
    """Turn an explainer's ``baseline=`` / ``reference=`` arguments into a baseline.

    - ``baseline`` None or ``"normal"``: :class:`NormalReference` of ``reference`` if
      given, else None (the caller must get normal images via ``fit_reference``);
    - ``"black"``, ``"blur"``, ``"uniform"``: :class:`Black`, :class:`Blur`,
      :class:`Uniform` with default parameters;
    - an array ``(C, H, W)`` / ``(K, C, H, W)``: :class:`Constant`;
    - a :class:`Substrate`: itself.
    """
    if isinstance(baseline, Substrate):
        return baseline
    if baseline is None or (isinstance(baseline, str) and baseline == "normal"):
        if reference is None:
            return None
        if isinstance(reference, NormalReference):
            return reference
        return NormalReference(reference, k=k)
    if isinstance(baseline, str):
        factory = {"black": Black, "blur": Blur, "uniform": Uniform}.get(baseline)
        if factory is None:
            raise InputError(
                f"baseline must be one of {list(BASELINE_NAMES)}, an array (C, H, W) or "
                f"(K, C, H, W), or a Baseline; got {baseline!r}"
            )
        return factory()
    return Constant(baseline)  # type: ignore[arg-type]
