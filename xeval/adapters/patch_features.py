"""A PaDiM / PatchCore-style detector on fixed (never downloaded) patch features.

Features: a deterministic filter bank (local colour means, structure-tensor and Hessian
energies at several scales, pooled locally and over a wider context) and/or a
random-init conv net with a fixed seed, sampled on a grid of stride ``stride``.
Normal statistics: a Gaussian (mean + shrunk covariance, pooled over all positions, or
per position for aligned objects) or a kNN memory bank.
Map: Mahalanobis or nearest-neighbour distance per patch, upsampled bilinearly to the
input size and smoothed by a Gaussian. Higher = more anomalous. Score: max of the map.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xeval.adapters._torch import TorchDetector, gaussian_blur, gaussian_kernel1d
from xeval.errors import InputError

FEATURES = ("filterbank", "random_cnn", "both")
SCORINGS = ("gaussian", "knn")


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
    """Separable conv of ``(B, C, H, W)`` with reflect padding (each channel alone)."""
    c = x.shape[1]
    ry, rx = (ky.numel() - 1) // 2, (kx.numel() - 1) // 2
    mode = "reflect" if min(x.shape[-2:]) > max(ry, rx) else "replicate"
    x = F.pad(x, (rx, rx, ry, ry), mode=mode)
    x = F.conv2d(x, kx.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, ky.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class FilterBank(nn.Module):
    """Deterministic texture features at full resolution, ``(B, 3, H, W) -> (B, D, H, W)``.

    Per scale ``s``: the Gaussian-smoothed colour channels (3), and the log local energy
    (Gaussian window of ``2 s``) of the grey-level gradient ``(gx^2, gy^2, gx*gy)`` and
    Hessian ``(gxx^2, gyy^2, gxy^2)`` (6), scale-normalised. With ``context``, the same
    6 energies pooled over a Gaussian window of ``context`` pixels, and the colour
    channels smoothed at ``context`` (3 once). ``D = 9 * len(scales)`` (+ ``6 *
    len(scales) + 3`` with context). Everything is a torch conv: differentiable.
    """

    def __init__(
        self, scales: tuple[float, ...] = (1.0, 2.0, 4.0), *, context: float | None = None
    ) -> None:
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.context = None if not context else float(context)
        self.out_channels = (9 + (6 if self.context else 0)) * len(self.scales)
        if self.context:
            self.out_channels += 3
            self.register_buffer("wc", gaussian_kernel1d(self.context))
        for i, s in enumerate(self.scales):
            for key, k in _derivative_kernels(s).items():
                self.register_buffer(f"k{i}_{key}", k)
            self.register_buffer(f"w{i}", gaussian_kernel1d(2 * s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(dim=1, keepdim=True)
        out = []
        for i, _ in enumerate(self.scales):
            g, d1, d2 = (getattr(self, f"k{i}_{k}") for k in ("g", "d1", "d2"))
            w = getattr(self, f"w{i}")
            out.append(_sep_conv(x, g, g))
            gx, gy = _sep_conv(grey, g, d1), _sep_conv(grey, d1, g)
            gxx, gyy, gxy = _sep_conv(grey, g, d2), _sep_conv(grey, d2, g), _sep_conv(grey, d1, d1)
            energies = torch.cat([gx * gx, gy * gy, gx * gy, gxx * gxx, gyy * gyy, gxy * gxy], 1)
            # scale-normalised by s^2 (s^4 for Hessian); signed log keeps gx*gy's sign
            s = self.scales[i]
            norm = torch.tensor([s**2] * 3 + [s**4] * 3, device=x.device, dtype=x.dtype)
            energies = energies * norm.view(1, -1, 1, 1)
            pooled = [_sep_conv(energies, w, w)]
            if self.context:
                pooled.append(_sep_conv(energies, self.wc, self.wc))
            for e in pooled:
                out.append(torch.sign(e) * torch.log1p(e.abs() * 1e3))
        if self.context:
            out.append(_sep_conv(x, self.wc, self.wc))
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


class PatchFeatures(TorchDetector):
    """Patch-feature anomaly detector (PaDiM / PatchCore style, no downloaded weights).

    Features (``features``):

    - ``"filterbank"``: :class:`FilterBank` (colour means, gradient and Hessian energies
      at ``scales``), average-pooled to a grid of stride ``stride``;
    - ``"random_cnn"``: :class:`RandomCNN` features (fixed seed ``seed``), at stride 4;
    - ``"both"``: the two concatenated.

    Each feature map is averaged over a ``3 x 3`` neighbourhood of grid cells (PatchCore's
    local aggregation) and standardised with the training mean and standard deviation.

    Normal model (``scoring``):

    - ``"gaussian"``: mean and covariance of the training patch features, the covariance
      shrunk toward a scaled identity (Ledoit–Wolf); pooled over all positions
      (textures) or, with ``per_position=True``, one Gaussian per grid cell (aligned
      objects, PaDiM) with ``shrinkage`` toward the identity. Patch score: Mahalanobis
      distance.
    - ``"knn"``: memory bank of at most ``memory_size`` training patches (random
      subsample, seeded); patch score: mean Euclidean distance to the ``k`` nearest.

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
        Filter-bank scales (pixels).
    context:
        With a filter bank: the gradient/Hessian energies are also pooled over a wider
        Gaussian window of this standard deviation (pixels), and the colour means too
        (texture statistics of the neighbourhood, for pasted textures and stains).
        None or 0: local pooling only.
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
    augment:
        Add the 8 flips / 90-degree rotations of the training images to the normal
        patches (textures only; 8 times the fit cost).
    sigma:
        Standard deviation (pixels) of the smoothing of the upsampled map.
    """

    kind = "patch_features"
    _CHUNK_ELEMENTS = 2**24  # query x memory distances computed at once (64 MiB float32)

    def __init__(
        self,
        *,
        name: str = "patch_features",
        input_size: int | tuple[int, int] = (128, 128),
        features: str = "filterbank",
        scales: tuple[float, ...] | list[float] = (1.0, 2.0, 4.0),
        context: float | None = 8.0,
        stride: int = 4,
        cnn_width: int = 32,
        scoring: str = "knn",
        per_position: bool = False,
        shrinkage: float = 0.01,
        memory_size: int = 16384,
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
        self.stride = int(stride)
        self.cnn_width = int(cnn_width)
        self.scoring = scoring
        self.per_position = bool(per_position)
        self.shrinkage = float(shrinkage)
        self.memory_size = int(memory_size)
        self.k = int(k)
        self.augment = bool(augment)
        self.sigma = float(sigma)
        self._bank: FilterBank | None = None
        self._cnn: RandomCNN | None = None
        self._stats: dict[str, torch.Tensor] = {}

    def _params(self) -> dict:
        return {
            "features": self.features,
            "scales": list(self.scales),
            "context": self.context,
            "stride": self.stride,
            "cnn_width": self.cnn_width,
            "scoring": self.scoring,
            "per_position": self.per_position,
            "shrinkage": self.shrinkage,
            "memory_size": self.memory_size,
            "k": self.k,
            "augment": self.augment,
            "sigma": self.sigma,
        }

    # -- features ---------------------------------------------------------------------
    def _raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, D, H/stride, W/stride)`` before standardisation."""
        feats = []
        if self._bank is not None:
            feats.append(F.avg_pool2d(self._bank(x), self.stride))
        if self._cnn is not None:
            feats.append(self._cnn(x))
        f = torch.cat(feats, dim=1)
        return F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        f = self._raw_features(x)
        return (f - self._stats["f_mean"].view(1, -1, 1, 1)) / self._stats["f_std"].view(
            1, -1, 1, 1
        )

    def _extract(self, images: np.ndarray) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                xb = torch.from_numpy(images[i : i + self.batch_size]).to(self._device)
                out.append(self._raw_features(xb))
        return torch.cat(out)

    # -- fit ----------------------------------------------------------------------------
    def _fit(self, images: np.ndarray) -> None:
        from sklearn.covariance import LedoitWolf

        self._bank = (
            FilterBank(self.scales, context=self.context).to(self._device)
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
        f_std = flat.std(0).clamp_min(1e-6)
        stats = {"f_mean": f_mean, "f_std": f_std}
        z = (f - f_mean.view(1, -1, 1, 1)) / f_std.view(1, -1, 1, 1)
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
            if len(zf) > self.memory_size:
                zf = zf[torch.randperm(len(zf), generator=gen)[: self.memory_size]]
            if len(zf) < self.k:
                raise InputError(
                    f"k={self.k} nearest neighbours need at least {self.k} training patches, "
                    f"got {len(zf)}"
                )
            stats["memory"] = zf
        self._stats = {k: v.to(self._device, torch.float32) for k, v in stats.items()}

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
            mem = self._stats["memory"]
            mem_sq = (mem * mem).sum(1)
            # squared distances via the expansion, in chunks of queries (bounded memory),
            # clamped >= 0; sqrt with a floor keeps gradients finite at zero distance
            rows = max(1, self._CHUNK_ELEMENTS // len(mem))
            nearest = []
            for i in range(0, len(q), rows):
                qi = q[i : i + rows]
                d2 = (qi * qi).sum(1, keepdim=True) - 2 * qi @ mem.T + mem_sq
                nearest.append(torch.topk(d2, self.k, dim=1, largest=False).values)
            d2 = torch.cat(nearest).clamp_min(0)
            return torch.sqrt(d2 + 1e-12).mean(1).view(b, h, w)
        return torch.sqrt(m.clamp_min(0) + 1e-12)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        s = self._patch_scores(self._features(x))
        s = F.interpolate(s[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return gaussian_blur(s, self.sigma)[:, 0]
