"""A small convolutional autoencoder trained on normal images (reconstruction error map).

Map: per-pixel squared reconstruction error averaged over the colour channels,
``mean_c (x - AE(x))**2``, smoothed by a Gaussian (a torch conv, so differentiable).
Higher = more anomalous. Image score: the maximum of the map.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xeval.adapters._torch import (
    Checkpoint,
    TorchDetector,
    checkpoint_epochs,
    gaussian_blur,
    save_checkpoint,
)
from xeval.checks import check_bool
from xeval.errors import InputError
from xeval.progress import progress
from xeval.registry import DETECTORS


class _AE(nn.Module):
    """Three stride-2 downsamplings to a ``bottleneck``-channel code at H/8 x W/8."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        w = width

        def act() -> nn.Module:
            # one activation module per layer (not one shared instance): hook-based
            # attributions (captum's DeepLIFT) need each non-linearity to be distinct
            return nn.LeakyReLU(0.2)

        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(2 * w, bottleneck, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(bottleneck, 2 * w, 1),
            act(),
            nn.ConvTranspose2d(2 * w, 2 * w, 4, stride=2, padding=1),
            act(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),
            act(),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(w, 3, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@DETECTORS.register(name="conv_autoencoder")
class ConvAutoencoder(TorchDetector):
    """Convolutional autoencoder detector (reconstruction error).

    The encoder downsamples three times (stride 2) to a ``bottleneck``-channel code at
    ``H/8 x W/8`` (at 128 x 128 with the defaults: 16 x 16 x 8 = 2 048 numbers for
    49 152 inputs, too narrow to learn the identity). Trained with Adam on the mean
    squared error of normal images in ``[0, 1]``.

    Anomaly map (``predict``): ``mean over channels of (x - AE(x))**2`` at the input
    resolution, smoothed by a Gaussian of standard deviation ``sigma`` pixels.
    **Higher = more anomalous.** Image score: the **maximum** of the map (also what
    :meth:`torch_score` returns, differentiably).

    Parameters
    ----------
    name:
        Identifier used in result tables.
    input_size:
        ``(H, W)`` (or an int), a multiple of 8. Images must have this size.
    epochs:
        Passes over the training images.
    max_seconds:
        Optional wall-clock cap on training; training stops after the first epoch that
        ends past it. None (default) keeps runs reproducible across machines.
    batch_size:
        Training and inference batch size.
    lr:
        Adam learning rate.
    width:
        Channels of the first conv layer (the others are ``2 * width``).
    bottleneck:
        Channels of the code at ``H/8 x W/8``.
    sigma:
        Standard deviation (pixels) of the Gaussian smoothing of the error map.
    augment:
        Random flips and 90-degree rotations while training (sensible for textures,
        not for aligned objects).
    seed:
        Seed of the weights' initialisation and of the batch order.
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    num_threads:
        torch intra-op threads while fitting and predicting (None: torch's default).
    checkpoints:
        Save the parameters during training, for TracIn
        (:func:`xeval.influence`, ``method="tracin"``): None (default: none), an int
        ``k`` (``k`` epochs evenly spaced, the last one the final epoch) or a list of
        epochs (1-based). Each :class:`~xeval.adapters._torch.Checkpoint` in
        :attr:`checkpoints_` holds the epoch, the learning rate of that epoch (Adam's
        base rate after the cosine schedule) and the ``state_dict`` (in memory, or a
        file in ``checkpoint_dir``). TracIn takes gradients on the un-augmented images.
    checkpoint_dir:
        A folder to write the checkpoints to (``<name>-epoch<NNNN>.pt``, read back with
        ``torch.load(..., weights_only=True)``) instead of keeping them in memory;
        created if missing. Only with ``checkpoints``.
    """

    kind = "conv_autoencoder"
    size_multiple = 8

    def __init__(
        self,
        *,
        name: str = "conv_autoencoder",
        input_size: int | tuple[int, int] = (128, 128),
        epochs: int = 30,
        max_seconds: float | None = None,
        batch_size: int = 16,
        lr: float = 2e-3,
        width: int = 32,
        bottleneck: int = 8,
        sigma: float = 2.0,
        downsample: int = 2,
        augment: bool = True,
        seed: int = 0,
        device: str = "cpu",
        num_threads: int | None = None,
        checkpoints: int | list[int] | None = None,
        checkpoint_dir: str | None = None,
    ) -> None:
        if int(downsample) < 1:
            raise InputError(f"downsample must be >= 1, got {downsample!r}")
        self.size_multiple = 8 * int(downsample)
        super().__init__(
            name=name,
            input_size=input_size,
            seed=seed,
            device=device,
            num_threads=num_threads,
            batch_size=batch_size,
        )
        if int(epochs) < 1:
            raise InputError(f"epochs must be >= 1, got {epochs!r}")
        if max_seconds is not None and float(max_seconds) <= 0:
            raise InputError(f"max_seconds must be > 0 or None, got {max_seconds!r}")
        if int(width) < 1 or int(bottleneck) < 1:
            raise InputError(f"width and bottleneck must be >= 1, got {width!r}, {bottleneck!r}")
        if float(sigma) < 0:
            raise InputError(f"sigma must be >= 0, got {sigma!r}")
        if not float(lr) > 0 or not np.isfinite(float(lr)):
            raise InputError(f"lr must be a positive finite number, got {lr!r}")
        self.epochs = int(epochs)
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self.lr = float(lr)
        self.width = int(width)
        self.bottleneck = int(bottleneck)
        self.sigma = float(sigma)
        self.downsample = int(downsample)
        self.augment = check_bool(augment, "augment")
        self.checkpoints = (
            list(checkpoints) if isinstance(checkpoints, (list, tuple)) else checkpoints
        )
        self._checkpoint_epochs = checkpoint_epochs(self.checkpoints, self.epochs)
        if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise InputError(
                f"checkpoint_dir must be a folder path or None, got {checkpoint_dir!r}"
            )
        if checkpoint_dir is not None and self.checkpoints is None:
            raise InputError("checkpoint_dir is given without checkpoints: set checkpoints=k")
        self.checkpoint_dir = None if checkpoint_dir is None else str(checkpoint_dir)
        self.model_: _AE | None = None
        self.losses_: list[float] = []
        self.checkpoints_: list[Checkpoint] = []

    def _params(self) -> dict:
        return {
            "epochs": self.epochs,
            "max_seconds": self.max_seconds,
            "lr": self.lr,
            "width": self.width,
            "bottleneck": self.bottleneck,
            "sigma": self.sigma,
            "downsample": self.downsample,
            "augment": self.augment,
            # recorded only when used, so that configs without them keep their hash
            **({"checkpoints": self.checkpoints} if self.checkpoints is not None else {}),
            **({"checkpoint_dir": self.checkpoint_dir} if self.checkpoint_dir else {}),
        }

    def _fit(self, images: np.ndarray) -> None:
        model = _AE(self.width, self.bottleneck).to(self._device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        x_all = self._down(torch.from_numpy(images))
        gen = torch.Generator().manual_seed(self.seed)
        square = self.input_size[0] == self.input_size[1]
        t0 = time.perf_counter()
        self.losses_ = []
        self.checkpoints_ = []
        model.train()
        for epoch in progress(range(1, self.epochs + 1), desc=f"{self.name} fit"):
            order = torch.randperm(len(x_all), generator=gen)
            total = 0.0
            for i in range(0, len(order), self.batch_size):
                xb = x_all[order[i : i + self.batch_size]]
                if self.augment:
                    if torch.rand(1, generator=gen).item() < 0.5:
                        xb = xb.flip(-1)
                    if torch.rand(1, generator=gen).item() < 0.5:
                        xb = xb.flip(-2)
                    if square:
                        k = int(torch.randint(0, 4, (1,), generator=gen).item())
                        xb = torch.rot90(xb, k, dims=(-2, -1))
                xb = xb.to(self._device)
                loss = ((model(xb) - xb) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(xb)
            if epoch in self._checkpoint_epochs:
                self._save_checkpoint(model, epoch, float(opt.param_groups[0]["lr"]))
            sched.step()
            self.losses_.append(total / len(x_all))
            if self.max_seconds is not None and time.perf_counter() - t0 > self.max_seconds:
                break
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model_ = model

    def _save_checkpoint(self, model: nn.Module, epoch: int, lr: float) -> None:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if self.checkpoint_dir is None:
            self.checkpoints_.append(Checkpoint(epoch=epoch, lr=lr, state=state))
            return
        folder = Path(self.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)
        path = save_checkpoint(
            folder / f"{stem}-epoch{epoch:04d}.pt", state=state, lr=lr, epoch=epoch
        )
        self.checkpoints_.append(Checkpoint(epoch=epoch, lr=lr, path=path))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """The autoencoder's reconstruction ``(B, 3, H, W)`` float32 of ``images``.

        Useful as "normal content" for deletion/insertion curves.
        """
        from xeval.adapters._torch import check_images

        self._require_fitted()
        x = check_images(images, name="images", size=self.input_size)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(x[i : i + self.batch_size]).to(self._device)
                rec = self.model_(self._down(xb))
                if self.downsample > 1:
                    rec = F.interpolate(
                        rec, size=xb.shape[-2:], mode="bilinear", align_corners=False
                    )
                out.append(rec.cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.downsample) if self.downsample > 1 else x

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        assert self.model_ is not None
        xs = self._down(x)
        err = ((xs - self.model_(xs)) ** 2).mean(dim=1, keepdim=True)
        if self.downsample > 1:
            err = F.interpolate(err, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return gaussian_blur(err, self.sigma)[:, 0]

    def encoder(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The fitted encoder as a differentiable ``(B, C, H, W) -> (B, D)`` callable.

        ``D = bottleneck * (H / 8 d) * (W / 8 d)`` with ``d = downsample``: the flattened
        bottleneck code of the (downsampled) input, the representation the decoder
        reconstructs from (for label-free feature importance). Inputs are moved to the
        detector's device; the code is returned on the input's device.
        """
        self._require_fitted()
        assert self.model_ is not None
        model = self.model_

        def encode(x: torch.Tensor) -> torch.Tensor:
            if x.ndim != 4 or x.shape[1] not in (1, 3):
                raise InputError(f"x must have shape (B, 3, H, W), got {tuple(x.shape)}")
            if tuple(x.shape[2:]) != self.input_size:
                raise InputError(
                    f"x must have spatial size {self.input_size}, got {tuple(x.shape)}"
                )
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            code = model.encoder(self._down(x.to(self._device, torch.float32)))
            return code.flatten(1).to(x.device)

        return encode
