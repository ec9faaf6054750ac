"""A PaDiM / PatchCore-style detector on fixed (never downloaded) patch features.

Features (:class:`FilterBank`, the default): on a grid of stride ``stride`` (4 pixels),
each cell is described by its mean grey level and opponent colours, and by four
**rotation-invariant** energies of the grey level at several scales (gradient energy,
Laplacian energy, Hessian anisotropy, local variance), log-compressed; plus the same
statistics pooled over a Gaussian **context** window around the cell. Why these:

- industrial/natural textures are mostly described by how much structure there is at
  each scale and of which kind (edges, blobs, lines, contrast) -- the energies;
- rotation invariance: a few dozen normal images show a texture at few orientations;
  invariant energies generalise to the orientations the test images show (oriented
  energies made normal test tiles look anomalous: mean pixel AUROC 0.87 -> 0.94 on the
  built-in ``textures`` benchmark);
- context statistics: a pasted patch of another texture, or a faint stain, changes the
  texture statistics of a neighbourhood even where each pixel alone looks normal;
- standardisation by the training mean and standard deviation gives each feature the
  same weight in the distance (constant features, such as the opponent colours of grey
  images, get weight 0).

Alternatively a random-init conv net with a fixed seed (``features="random_cnn"`` or
``"both"``). Each feature map is averaged over ``3 x 3`` grid cells.

Normal statistics: a kNN **memory bank** of training patches chosen by greedy k-center
**coreset** selection (PatchCore: covers rare normal patches too; a seeded random
subsample optionally), or a Gaussian (mean + shrunk covariance, pooled over all
positions, or per position for aligned objects).

Map: nearest-neighbour (or Mahalanobis) distance per patch, upsampled bilinearly to the
input size and smoothed by a Gaussian. Higher = more anomalous. Score: max of the map.
kNN distances are computed with one matrix product per chunk of patches (fast on CPU).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xeval.adapters._torch import TorchDetector, gaussian_blur, gaussian_kernel1d
from xeval.checks import check_bool
from xeval.errors import InputError
from xeval.progress import progress
from xeval.registry import DETECTORS

FEATURES = ("filterbank", "random_cnn", "both")
SCORINGS = ("gaussian", "knn")
SAMPLINGS = ("coreset", "random")


def _derivative_kernels(sigma: float) -> dict[str, torch.Tensor]:
    """1-D Gaussian, first- and second-derivative kernels of standard deviation sigma."""
    g = gaussian_kernel1d(sigma, truncate=3.0)
    r = (g.numel() - 1) // 2
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    d1 = -x / sigma**2 * g
    d2 = (x**2 / sigma**4 - 1 / sigma**2) * g
    d2 = d2 - d2.mean()  # zero response to a constant image
    return {"g": g, "d1": d1, "d2": d2}


def _sep_conv(x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
    """Separable conv of ``(B, C, H, W)`` with reflect padding (each channel alone).

    Run one image at a time: the backend picks its convolution algorithm by batch size,
    so a batched call rounds differently from a single-image one (predict must not
    depend on the batch), and on CPU the per-image depthwise path is also faster.
    """
    if x.shape[0] > 1:
        return torch.cat([_sep_conv(x[i : i + 1], ky, kx) for i in range(x.shape[0])])
    c = x.shape[1]
    ry, rx = (ky.numel() - 1) // 2, (kx.numel() - 1) // 2
    mode = "reflect" if min(x.shape[-2:]) > max(ry, rx) else "replicate"
    x = F.pad(x, (rx, rx, ry, ry), mode=mode)
    x = F.conv2d(x, kx.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, ky.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _signed_log(e: torch.Tensor) -> torch.Tensor:
    """``sign(e) log(1 + 1000 |e|)``: a log that keeps signed energies' sign."""
    return torch.sign(e) * torch.log1p(e.abs() * 1e3)


class FilterBank(nn.Module):
    """Deterministic texture features on a grid, ``(B, 3, H, W) -> (B, D, H/s, W/s)``.

    With ``s = stride``. Colour: the grey level and two opponent channels
    (``R - G``, ``(R + G) / 2 - B``; zero on grey images, where they are then ignored by
    the standardisation), averaged over each ``s x s`` grid cell (3 channels).

    Texture: per scale ``sigma`` of ``scales``, four **energies** of the grey level,
    computed at full resolution and averaged over each grid cell, then log-compressed:

    - gradient energy ``sigma^2 (gx^2 + gy^2)``;
    - Laplacian energy ``sigma^4 (gxx + gyy)^2`` (blobs, spots);
    - Hessian anisotropy ``sigma^4 ((gxx - gyy)^2 + 4 gxy^2)`` (lines, ridges);
    - local variance ``(I - G_sigma * I)^2`` (contrast at that scale).

    All four are **rotation invariant** (the norms of the gradient and of the two
    rotation-invariant parts of the Hessian): a texture photographed at another
    orientation gives the same features, so a handful of normal images covers far more
    of the normal variability than oriented energies do (on the built-in ``textures``
    benchmark, mean pixel AUROC 0.87 -> 0.94). With ``invariant=False`` the oriented
    energies ``(gx^2, gy^2, gx gy, gxx^2, gyy^2, gxy^2)`` and the local variance are
    used instead (7 per scale; for aligned objects whose orientation is itself normal).

    With ``context`` (pixels): the same energies and colour averaged over a Gaussian
    window of standard deviation ``context`` around each cell (applied on the grid,
    ``context / stride`` cells), the **texture statistics of the neighbourhood**: a
    pasted patch of another texture or a faint stain changes these statistics even
    where each pixel alone looks normal.

    ``D = 3 + E * len(scales)`` (``E = 4``, or 7 oriented), doubled with ``context``.
    Everything is a torch conv or pooling: differentiable.
    """

    def __init__(
        self,
        scales: tuple[float, ...] = (0.7, 1.0, 2.0, 4.0),
        *,
        context: float | None = None,
        stride: int = 1,
        invariant: bool = True,
    ) -> None:
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.context = None if not context else float(context)
        self.stride = int(stride)
        self.invariant = check_bool(invariant, "invariant")
        per_scale = 4 if self.invariant else 7
        self.out_channels = (3 + per_scale * len(self.scales)) * (2 if self.context else 1)
        if self.context:
            self.register_buffer("wc", gaussian_kernel1d(self.context / self.stride))
        for i, s in enumerate(self.scales):
            for key, k in _derivative_kernels(s).items():
                self.register_buffer(f"k{i}_{key}", k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(dim=1, keepdim=True)
        r, g_, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        colour = torch.cat([grey, r - g_, 0.5 * (r + g_) - b], 1)
        energies = []
        for i, s in enumerate(self.scales):
            g, d1, d2 = (getattr(self, f"k{i}_{k}") for k in ("g", "d1", "d2"))
            gx, gy = _sep_conv(grey, g, d1), _sep_conv(grey, d1, g)
            gxx, gyy, gxy = _sep_conv(grey, g, d2), _sep_conv(grey, d2, g), _sep_conv(grey, d1, d1)
            var = (grey - _sep_conv(grey, g, g)) ** 2
            if self.invariant:  # scale-normalised by s^2 (s^4 for the Hessian)
                energies += [
                    (gx * gx + gy * gy) * s**2,
                    (gxx + gyy) ** 2 * s**4,
                    ((gxx - gyy) ** 2 + 4 * gxy * gxy) * s**4,
                    var,
                ]
            else:
                energies += [gx * gx * s**2, gy * gy * s**2, gx * gy * s**2]
                energies += [gxx * gxx * s**4, gyy * gyy * s**4, gxy * gxy * s**4, var]
        e = torch.cat(energies, 1)
        if self.stride > 1:
            e, colour = F.avg_pool2d(e, self.stride), F.avg_pool2d(colour, self.stride)
        out = [colour, _signed_log(e)]
        if self.context:
            wc = self.wc
            out += [_sep_conv(colour, wc, wc), _signed_log(_sep_conv(e, wc, wc))]
        return torch.cat(out, dim=1)


class RandomCNN(nn.Module):
    """A random-init conv net with a fixed seed, ``(B, 3, H, W) -> (B, D, H/4, W/4)``.

    Three blocks (conv 3x3, ReLU, 2x2 average pooling) of ``width``, ``2 width``,
    ``4 width`` channels, Kaiming-normal weights drawn from ``seed``. Output: block 2
    (at H/4) concatenated with block 3 upsampled to H/4, PaDiM-style.
    """

    def __init__(self, *, width: int = 32, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        chans = [3, width, 2 * width, 4 * width]
        self.convs = nn.ModuleList()
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
                conv.weight.mul_((2.0 / (cin * 9)) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
        self.out_channels = chans[2] + chans[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x - 0.5
        feats = []
        for conv in self.convs:
            h = F.avg_pool2d(F.relu(conv(h)), 2)
            feats.append(h)
        f3 = F.interpolate(feats[2], size=feats[1].shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([feats[1], f3], dim=1)


_CHUNK_ELEMENTS = 2**22  # query x memory distances computed at once (16 MiB float32)


def knn_distance(q: torch.Tensor, memory: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Mean Euclidean distance of each row of ``q (N, D)`` to its ``k`` nearest rows of
    ``memory (M, D)``, ``(N,)``; differentiable in ``q``.

    The neighbours are searched with the expansion ``|q|^2 - 2 q.m + |m|^2`` (one matrix
    product; ``|q|^2`` is the same for every candidate and is left out), in chunks of
    queries so that at most ``2**22`` distances are held at once. Their distances are
    then recomputed directly as ``|q - m|`` (exact, independent of the batch's BLAS
    blocking, and the gradient path), with a floor under the square root (finite
    gradients at distance zero).
    """
    mem_sq = (memory * memory).sum(1)
    rows = max(1, _CHUNK_ELEMENTS // max(len(memory), 1))
    idx = []
    with torch.no_grad():
        for i in range(0, len(q), rows):
            d2 = torch.addmm(mem_sq, q[i : i + rows].detach(), memory.T, alpha=-2.0)
            if k == 1:
                idx.append(d2.argmin(dim=1, keepdim=True))
            else:
                idx.append(torch.topk(d2, k, dim=1, largest=False).indices)
    nn_idx = torch.cat(idx)  # (N, k)
    diff = q[:, None, :] - memory[nn_idx]
    return torch.sqrt((diff * diff).sum(-1) + 1e-12).mean(1)


def greedy_coreset(
    z: torch.Tensor, n: int, *, generator: torch.Generator, max_dim: int = 128
) -> torch.Tensor:
    """Indices of ``n`` rows of ``z (N, D)`` chosen by greedy k-center selection.

    PatchCore's coreset subsampling (Roth et al., 2022): start from a seeded random row,
    then repeatedly add the row farthest from the rows chosen so far. The memory bank
    then covers the whole normal feature distribution, rare normal patches included
    (a random subsample keeps mostly the common ones). Distances are computed on a
    seeded Gaussian random projection to ``max_dim`` dimensions when ``D > max_dim``
    (Johnson-Lindenstrauss). Cost ``O(n N D)``. Deterministic for a generator state.
    """
    n_rows, d = z.shape
    if n >= n_rows:
        return torch.arange(n_rows)
    if d > max_dim:
        proj = torch.randn(d, max_dim, generator=generator, dtype=z.dtype) / max_dim**0.5
        z = z @ proj.to(z.device)
    z_sq = (z * z).sum(1)
    first = int(torch.randint(n_rows, (1,), generator=generator))
    chosen = torch.empty(n, dtype=torch.long)
    chosen[0] = first
    dmin = (z_sq - 2 * (z @ z[first]) + z_sq[first]).clamp_min(0)
    for j in range(1, n):
        i = int(torch.argmax(dmin))
        chosen[j] = i
        torch.minimum(dmin, z_sq - 2 * (z @ z[i]) + z_sq[i], out=dmin)
    return chosen


@DETECTORS.register(name="patch_features")
class PatchFeatures(TorchDetector):
    """Patch-feature anomaly detector (PaDiM / PatchCore style, no downloaded weights).

    Features (``features``):

    - ``"filterbank"``: :class:`FilterBank` on a grid of stride ``stride`` (colour,
      rotation-invariant texture energies at ``scales``, and their ``context``
      statistics);
    - ``"random_cnn"``: :class:`RandomCNN` features (fixed seed ``seed``), at stride 4;
    - ``"both"``: the two concatenated.

    Each feature map is averaged over a ``3 x 3`` neighbourhood of grid cells (PatchCore's
    local aggregation) and standardised with the training mean and standard deviation
    (features constant on the training images get weight 0).

    Normal model (``scoring``):

    - ``"gaussian"``: mean and covariance of the training patch features, the covariance
      shrunk toward a scaled identity (Ledoit–Wolf); pooled over all positions
      (textures) or, with ``per_position=True``, one Gaussian per grid cell (aligned
      objects, PaDiM) with ``shrinkage`` toward the identity. Patch score: Mahalanobis
      distance.
    - ``"knn"``: memory bank of at most ``memory_size`` training patches, chosen by
      greedy k-center coreset selection (``sampling="coreset"``, PatchCore; seeded start)
      or a seeded random subsample (``"random"``); patch score: mean Euclidean distance
      to the ``k`` nearest.

    Anomaly map (``predict``): the patch scores upsampled bilinearly to the input size,
    smoothed by a Gaussian of ``sigma`` pixels. **Higher = more anomalous.** Image
    score: the **maximum** of the map (also what :meth:`torch_score` returns).

    Parameters
    ----------
    name, input_size, seed, device, num_threads, batch_size:
        As in :class:`~xeval.adapters.ConvAutoencoder`; ``input_size`` a multiple of
        ``stride`` (and of 4 with a CNN).
    features:
        ``"filterbank"``, ``"random_cnn"`` or ``"both"``.
    scales:
        Filter-bank scales (pixels): standard deviations of the Gaussian derivatives.
    context:
        With a filter bank: the energies and colour are also pooled over a Gaussian
        window of this standard deviation (pixels) around each grid cell (texture
        statistics of the neighbourhood, for pasted textures and stains). None or 0:
        the cell's own statistics only.
    invariant:
        Rotation-invariant filter-bank energies (default; textures, and anything whose
        orientation varies). False: oriented energies (aligned objects).
    stride:
        Grid stride of the patch features (pixels).
    cnn_width:
        Channels of the random CNN's first block.
    scoring:
        ``"gaussian"`` or ``"knn"``.
    per_position:
        One Gaussian per grid cell (aligned objects) instead of one pooled Gaussian.
    shrinkage:
        Identity regularisation of the per-position covariances (``per_position``).
    memory_size, k:
        kNN memory bank size and number of neighbours.
    sampling:
        How the memory bank is chosen when there are more training patches than
        ``memory_size``: ``"coreset"`` (greedy k-center, cost ``O(memory_size x
        patches)`` at fit) or ``"random"`` (seeded subsample).
    augment:
        Add the 8 flips / 90-degree rotations of the training images to the normal
        patches (textures only; 8 times the fit cost).
    sigma:
        Standard deviation (pixels) of the smoothing of the upsampled map.
    """

    kind = "patch_features"

    def __init__(
        self,
        *,
        name: str = "patch_features",
        input_size: int | tuple[int, int] = (128, 128),
        features: str = "filterbank",
        scales: tuple[float, ...] | list[float] = (0.7, 1.0, 2.0, 4.0),
        context: float | None = 4.0,
        invariant: bool = True,
        stride: int = 4,
        cnn_width: int = 32,
        scoring: str = "knn",
        per_position: bool = False,
        shrinkage: float = 0.01,
        memory_size: int = 4096,
        sampling: str = "coreset",
        k: int = 1,
        augment: bool = False,
        sigma: float = 8.0,
        batch_size: int = 32,
        seed: int = 0,
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        if features not in FEATURES:
            raise InputError(f"features must be one of {FEATURES}, got {features!r}")
        if sampling not in SAMPLINGS:
            raise InputError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if scoring not in SCORINGS:
            raise InputError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        if int(stride) < 1:
            raise InputError(f"stride must be >= 1, got {stride!r}")
        if features != "filterbank" and int(stride) != 4:
            raise InputError(f"stride must be 4 with features={features!r}, got {stride!r}")
        self.size_multiple = int(np.lcm(int(stride), 4 if features != "filterbank" else 1))
        super().__init__(
            name=name,
            input_size=input_size,
            seed=seed,
            device=device,
            num_threads=num_threads,
            batch_size=batch_size,
        )
        scales = tuple(float(s) for s in scales)
        if features != "random_cnn" and (not scales or min(scales) <= 0):
            raise InputError(f"scales must be positive numbers, got {scales!r}")
        if int(k) < 1 or int(memory_size) < int(k):
            raise InputError(
                f"need 1 <= k <= memory_size, got k={k!r}, memory_size={memory_size!r}"
            )
        if float(sigma) < 0 or float(shrinkage) < 0:
            raise InputError(f"sigma and shrinkage must be >= 0, got {sigma!r}, {shrinkage!r}")
        self.features = features
        self.scales = scales
        if context is not None and float(context) < 0:
            raise InputError(f"context must be >= 0 or None, got {context!r}")
        self.context = None if not context else float(context)
        self.invariant = check_bool(invariant, "invariant")
        self.stride = int(stride)
        if int(cnn_width) < 1:
            raise InputError(f"cnn_width must be >= 1, got {cnn_width!r}")
        self.cnn_width = int(cnn_width)
        self.scoring = scoring
        self.per_position = check_bool(per_position, "per_position")
        self.shrinkage = float(shrinkage)
        self.memory_size = int(memory_size)
        self.sampling = sampling
        self.k = int(k)
        self.augment = check_bool(augment, "augment")
        self.sigma = float(sigma)
        self._bank: FilterBank | None = None
        self._cnn: RandomCNN | None = None
        self._stats: dict[str, torch.Tensor] = {}

    def _params(self) -> dict:
        return {
            "features": self.features,
            "scales": list(self.scales),
            "context": self.context,
            "invariant": self.invariant,
            "stride": self.stride,
            "cnn_width": self.cnn_width,
            "scoring": self.scoring,
            "per_position": self.per_position,
            "shrinkage": self.shrinkage,
            "memory_size": self.memory_size,
            "sampling": self.sampling,
            "k": self.k,
            "augment": self.augment,
            "sigma": self.sigma,
        }

    # -- features ---------------------------------------------------------------------
    def _raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, D, H/stride, W/stride)`` before standardisation."""
        feats = []
        if self._bank is not None:
            feats.append(self._bank(x))
        if self._cnn is not None:
            feats.append(self._cnn(x))
        f = torch.cat(feats, dim=1)
        return F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        f = self._raw_features(x)
        return (f - self._stats["f_mean"].view(1, -1, 1, 1)) * self._stats["f_scale"].view(
            1, -1, 1, 1
        )

    def _extract(self, images: np.ndarray) -> torch.Tensor:
        out = []
        with torch.no_grad():
            starts = range(0, len(images), self.batch_size)
            for i in progress(starts, desc=f"{self.name} features"):
                xb = torch.from_numpy(images[i : i + self.batch_size]).to(self._device)
                out.append(self._raw_features(xb))
        return torch.cat(out)

    # -- fit ----------------------------------------------------------------------------
    def _fit(self, images: np.ndarray) -> None:
        from sklearn.covariance import LedoitWolf

        self._bank = (
            FilterBank(
                self.scales, context=self.context, stride=self.stride, invariant=self.invariant
            ).to(self._device)
            if self.features != "random_cnn"
            else None
        )
        self._cnn = (
            RandomCNN(width=self.cnn_width, seed=self.seed).to(self._device)
            if self.features != "filterbank"
            else None
        )
        for mod in (self._bank, self._cnn):
            if mod is not None:
                mod.eval()
                for p in mod.parameters():
                    p.requires_grad_(False)
        if self.augment:  # the 8 flips / 90-degree rotations (square inputs: all 8)
            views = [images, images[..., ::-1], images[..., ::-1, :], images[..., ::-1, ::-1]]
            if images.shape[-1] == images.shape[-2]:
                views += [np.swapaxes(v, -1, -2) for v in views]
            images = np.ascontiguousarray(np.concatenate(views))
        f = self._extract(images).double()  # (N, D, h, w)
        n, d, h, w = f.shape
        flat = f.permute(0, 2, 3, 1).reshape(-1, d)
        f_mean = flat.mean(0)
        f_std = flat.std(0)
        # standardise; a (near-)constant feature (the opponent colours of grey images)
        # gets weight 0 rather than 1/eps, which would amplify rounding noise
        f_scale = torch.where(
            f_std > 1e-6 * max(float(f_std.max()), 1e-12), 1 / f_std, torch.zeros_like(f_std)
        )
        stats = {"f_mean": f_mean, "f_scale": f_scale}
        z = (f - f_mean.view(1, -1, 1, 1)) * f_scale.view(1, -1, 1, 1)
        gen = torch.Generator().manual_seed(self.seed)
        if self.scoring == "gaussian" and not self.per_position:
            zf = z.permute(0, 2, 3, 1).reshape(-1, d)
            if len(zf) > 200_000:
                zf = zf[torch.randperm(len(zf), generator=gen)[:200_000]]
            lw = LedoitWolf().fit(zf.cpu().numpy())
            stats["mean"] = torch.from_numpy(lw.location_)
            stats["precision"] = torch.from_numpy(lw.precision_)
            self.shrinkage_ = float(lw.shrinkage_)
        elif self.scoring == "gaussian":
            zp = z.permute(2, 3, 0, 1).reshape(h * w, n, d)  # (P, N, D)
            mean = zp.mean(1)
            c = zp - mean[:, None]
            cov = c.transpose(1, 2) @ c / max(n - 1, 1)
            cov = cov + self.shrinkage * torch.eye(d, dtype=cov.dtype, device=cov.device)
            stats["mean"] = mean.view(h, w, d)
            stats["precision"] = torch.linalg.inv(cov).view(h, w, d, d)
        else:
            zf = z.permute(0, 2, 3, 1).reshape(-1, d)
            if len(zf) > self.memory_size and self.sampling == "random":
                zf = zf[torch.randperm(len(zf), generator=gen)[: self.memory_size]]
            elif len(zf) > self.memory_size:
                zf = zf[greedy_coreset(zf.float(), self.memory_size, generator=gen)]
            if len(zf) < self.k:
                raise InputError(
                    f"k={self.k} nearest neighbours need at least {self.k} training patches, "
                    f"got {len(zf)}"
                )
            stats["memory"] = zf
        self._stats = {k: v.to(self._device, torch.float32) for k, v in stats.items()}

    # -- randomisation test hooks --------------------------------------------------------
    def fitted_statistics(self) -> bool:
        """The memory bank / Gaussian is fitted on normal features."""
        return True

    def randomise(self, seed: int) -> str | None:
        """Replace the learned normal statistics by uninformative ones in the standardised
        feature space (where the training features have zero mean and unit variance):
        the memory bank by as many i.i.d. ``N(0, I)`` patches (seeded), the Gaussian(s)
        by ``N(0, I)``. The standardisation is kept (it defines the units); the feature
        extractor is fixed by design (a filter bank, a seeded random CNN), so it is not
        what the detector learned."""
        from xeval.rng import derived_seed

        stats = self._stats
        if "memory" in stats:
            mem = stats["memory"]
            gen = torch.Generator().manual_seed(derived_seed(seed, 1))
            stats["memory"] = torch.randn(mem.shape, generator=gen, dtype=torch.float32).to(mem)
            return None
        if "mean" in stats and "precision" in stats:
            mean, prec = stats["mean"], stats["precision"]
            d = mean.shape[-1]
            stats["mean"] = torch.zeros_like(mean)
            stats["precision"] = (
                torch.eye(d, dtype=prec.dtype, device=prec.device).expand_as(prec).clone()
            )
            return None
        return (
            f"PatchFeatures holds no statistics to randomise (keys {sorted(stats)}; is it fitted?)"
        )

    def randomise_note(self) -> str:
        return (
            "PatchFeatures: the feature extractor is fixed (not learned); the learned "
            "normal statistics are replaced by uninformative N(0, I) ones in the "
            "standardised feature space (one step); no refit"
        )

    # -- map ----------------------------------------------------------------------------
    def _patch_scores(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised features ``(B, D, h, w)`` -> patch distances ``(B, h, w)``."""
        b, d, h, w = z.shape
        if self.scoring == "gaussian" and not self.per_position:
            c = z.permute(0, 2, 3, 1) - self._stats["mean"]
            m = torch.einsum("bhwi,ij,bhwj->bhw", c, self._stats["precision"], c)
        elif self.scoring == "gaussian":
            mean, prec = self._stats["mean"], self._stats["precision"]
            if mean.shape[:2] != (h, w):
                raise InputError(
                    f"per-position Gaussian fitted on a {tuple(mean.shape[:2])} grid, got {(h, w)}"
                )
            c = z.permute(0, 2, 3, 1) - mean
            m = torch.einsum("bhwi,hwij,bhwj->bhw", c, prec, c)
        else:
            q = z.permute(0, 2, 3, 1).reshape(-1, d)
            return knn_distance(q, self._stats["memory"], self.k).view(b, h, w)
        return torch.sqrt(m.clamp_min(0) + 1e-12)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        s = self._patch_scores(self._features(x))
        s = F.interpolate(s[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return gaussian_blur(s, self.sigma)[:, 0]
