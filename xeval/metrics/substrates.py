"""Substrates: what replaces the pixels removed by a deletion / insertion metric.

DESIGN.md: *removing pixels with black or blur creates new anomalies* — for an anomaly
detector a black square **is** an anomaly, so a deletion curve measured with it says
more about the substrate than about the explanation. xeval therefore replaces removed
pixels with **normal content** by default and every result says which substrate it
used:

``"normal"`` (default)
    A normal reference image: the mean of normal training images passed as
    ``reference=`` ``(N, C, H, W)`` (or one ``(C, H, W)`` image). Fully replaced, an
    image *is* the reference.
``"reconstruction"``
    The detector's own reconstruction of each image (``detector.reconstruct(images)``,
    e.g. :class:`~xeval.adapters.ConvAutoencoder`): the "normal version" of that
    very image.
``"road"``
    Noisy linear imputation (ROAD, Rong et al. 2022, "A Consistent and Efficient
    Evaluation Strategy for Attribution Methods", ICML): each removed pixel is set to
    the weighted mean of its in-image 8-neighbours (weights 1/6 for the 4 direct and
    1/12 for the 4 diagonal neighbours, renormalised at the image border), removed
    neighbours being unknowns too: one sparse linear system per (image, mask), solved
    with :func:`scipy.sparse.linalg.spsolve` for all channels at once, plus Gaussian
    noise of standard deviation ``noise`` (0.01, ROAD's default) on the imputed pixels.
    The system has no anchor when *every* pixel is removed (ROAD itself stops at 90 %);
    the fully removed image — the end of a deletion curve, the start of an insertion
    curve, hence the normalisation point — is then the mean normal ``reference`` when
    one is given, else the flat image at the original's channel means (ROAD's
    ``ChannelMeanImputer``, the constant harmonic solution). That flat image keeps the
    defect's share of the mean and can itself look anomalous: pass ``reference=``.
    At high removal fractions ROAD's imputation is a smooth interpolation of the few
    kept pixels, which is normal content for smooth objects but not for textures.
``"black"``, ``"blur"``
    Zeros / a Gaussian blur of the image (``sigma`` pixels). Available for comparison
    with the literature, but **flagged**: they create new anomalies. Using them emits a
    :class:`SubstrateWarning` and the result's ``notes`` say so.

A substrate is given by name (``substrate="road"``) or as an instance
(``substrate=Road(noise=0.0)``, ``substrate=Blur(sigma=3)``).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

from xeval.errors import InputError

SUBSTRATE_NAMES = ("normal", "reconstruction", "road", "black", "blur")

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
    """A substrate that creates new anomalies (black, blur) was used."""


class Substrate(ABC):
    """What replaces removed pixels.

    :meth:`bind` checks the substrate against a detector and images and returns a
    :class:`BoundSubstrate` whose :meth:`~BoundSubstrate.fill` gives the replacement
    content for a chunk of (image, removed-pixels mask) jobs.
    """

    name: str = "substrate"
    #: True for substrates that insert anomalous content (black, blur): flagged.
    creates_anomalies: bool = False

    @abstractmethod
    def bind(
        self, detector, images: np.ndarray, *, reference: np.ndarray | None, seed: int
    ) -> BoundSubstrate:
        """Prepare the substrate for ``images`` ``(B, C, H, W)`` float32."""

    def describe(self) -> str:
        """A one-line description recorded with the results."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BoundSubstrate(ABC):
    """A substrate prepared for one set of images."""

    @abstractmethod
    def fill(self, idx: np.ndarray, removed: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Replacement content ``(n, C, H, W)`` float32 for ``n`` jobs.

        ``idx`` ``(n,)``: image index of each job; ``removed`` ``(n, H, W)`` bool: the
        removed pixels; ``keys`` ``(n,)`` int: a job number used to seed noise (so that
        values do not depend on how jobs are chunked). Only the values at removed pixels
        are used.
        """


class _FixedBound(BoundSubstrate):
    """One replacement image per input image (or one shared by all)."""

    def __init__(self, content: np.ndarray) -> None:
        self.content = content  # (B, C, H, W) or (1, C, H, W)

    def fill(self, idx: np.ndarray, removed: np.ndarray, keys: np.ndarray) -> np.ndarray:
        if self.content.shape[0] == 1:
            return np.broadcast_to(self.content, (len(idx), *self.content.shape[1:]))
        return self.content[idx]


def mean_reference(reference, images_shape: tuple[int, ...]) -> np.ndarray:
    """The mean normal image ``(1, C, H, W)`` float32 of ``reference`` ``(N,C,H,W)``/``(C,H,W)``."""
    if reference is None:
        raise InputError(
            "substrate 'normal' needs reference=: normal images (N, C, H, W) or their mean "
            "(C, H, W) at the images' channels and size; or choose substrate="
            "'reconstruction' (detectors with reconstruct()) or 'road' (noisy linear "
            "imputation, needs nothing)"
        )
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


class Normal(Substrate):
    """The mean of normal reference images (``reference=``), or an explicit one here."""

    name = "normal"

    def __init__(self, reference: np.ndarray | None = None) -> None:
        self.reference = reference

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        ref = self.reference if self.reference is not None else reference
        return _FixedBound(mean_reference(ref, images.shape))

    def describe(self) -> str:
        return "normal (mean normal reference image)"


class Reconstruction(Substrate):
    """The detector's reconstruction of each image (``detector.reconstruct``)."""

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
    """Zeros. Flagged: a black region is an anomaly for most detectors."""

    name = "black"
    creates_anomalies = True

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        return _FixedBound(np.zeros((1, *images.shape[1:]), np.float32))

    def describe(self) -> str:
        return "black (zeros; creates new anomalies)"


class Blur(Substrate):
    """Gaussian blur of each image (``sigma`` pixels, reflected borders). Flagged."""

    name = "blur"
    creates_anomalies = True

    def __init__(self, sigma: float = 5.0) -> None:
        if not float(sigma) > 0:
            raise InputError(f"Blur sigma must be > 0 pixels, got {sigma!r}")
        self.sigma = float(sigma)

    def bind(self, detector, images, *, reference, seed) -> BoundSubstrate:
        s = (0, 0, self.sigma, self.sigma)
        return _FixedBound(ndimage.gaussian_filter(images, sigma=s, mode="reflect"))

    def describe(self) -> str:
        return f"blur (Gaussian, sigma={self.sigma:g} px; creates new anomalies)"

    def __repr__(self) -> str:
        return f"Blur(sigma={self.sigma!r})"


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
            rng = np.random.default_rng([self.seed, int(k)])
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
    """Turn a name or an instance into a :class:`Substrate`; warn for flagged ones."""
    if isinstance(substrate, Substrate):
        sub = substrate
    elif isinstance(substrate, str) and substrate in SUBSTRATE_NAMES:
        sub = {
            "normal": Normal,
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
