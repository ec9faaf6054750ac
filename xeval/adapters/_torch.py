"""Shared machinery of the built-in torch detectors (input checks, seeding, smoothing).

Private module: the public names are :class:`~xeval.adapters.ConvAutoencoder` and
:class:`~xeval.adapters.PatchFeatures`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xeval.adapters.base import Detector
from xeval.checks import check_images as validate_images
from xeval.errors import InputError, XevalError


class NotFittedError(XevalError, RuntimeError):
    """A detector was asked to predict before :meth:`~xeval.adapters.Detector.fit`."""


def check_images(
    images: object,
    *,
    name: str = "images",
    size: tuple[int, int] | None = None,
    channels: tuple[int, ...] = (1, 3),
) -> np.ndarray:
    """:func:`xeval.checks.check_images`, plus the detector's channel count and input size;
    returns float32 with 3 channels.

    Parameters
    ----------
    images:
        The array to check (numpy array, or anything with ``.images`` such as a
        :class:`~xeval.record.Inputs`).
    name:
        The argument name used in error messages.
    size:
        Required ``(H, W)``, or None for any size.
    channels:
        Accepted channel counts; one channel is repeated to three.

    Raises
    ------
    InputError
        Wrong type, rank, channel count, dtype (integers are refused: images are
        floats in ``[0, 1]``), size, or non-finite values.
    """
    images = validate_images(images, name=name)
    if images.shape[1] not in channels:
        raise InputError(
            f"{name} must have {' or '.join(map(str, channels))} channels on axis 1 "
            f"(B, C, H, W), got shape {images.shape}"
        )
    if size is not None and tuple(images.shape[2:]) != tuple(size):
        raise InputError(
            f"{name} must have spatial size (H, W) = {tuple(size)} (the detector's "
            f"input_size), got shape {images.shape}"
        )
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    return images


def collect_batches(
    batches: Iterable[object], *, size: tuple[int, int], name: str = "batches"
) -> np.ndarray:
    """Concatenate the ``(B, C, H, W)`` arrays (or Inputs objects) of ``batches``."""
    if isinstance(batches, np.ndarray) and batches.ndim == 4:
        batches = [batches]
    arrays = [check_images(b, name=f"{name}[{i}]", size=size) for i, b in enumerate(batches)]
    if not arrays:
        raise InputError(f"{name} yielded no images: fit needs at least one normal image")
    return np.concatenate(arrays, axis=0)


def check_size(input_size: object, *, multiple: int = 1, minimum: int = 8) -> tuple[int, int]:
    """Validate ``input_size`` (an int or ``(H, W)``) and return ``(H, W)``."""
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    try:
        h, w = (int(v) for v in input_size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"input_size must be an int or (H, W), got {input_size!r}") from None
    if h < minimum or w < minimum or h % multiple or w % multiple:
        raise InputError(
            f"input_size must be at least {minimum} and a multiple of {multiple}, got {(h, w)}"
        )
    return h, w


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` (falls back to an error if unavailable) or ``"auto"``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} requested but CUDA is not available")
    return dev


@contextlib.contextmanager
def seeded(seed: int, *, threads: int | None = None) -> Iterator[None]:
    """Seed torch inside the block without disturbing the caller's global RNG state.

    ``threads`` sets torch's intra-op thread count for the block (restored after).
    """
    old_threads = torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            if threads:
                torch.set_num_threads(old_threads)


def gaussian_kernel1d(sigma: float, *, truncate: float = 3.0) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel of radius ``ceil(truncate * sigma)``."""
    radius = max(1, int(math.ceil(truncate * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` as a differentiable torch conv.

    Borders are reflected (replicated when the image is smaller than the kernel).
    ``sigma <= 0`` returns ``x`` unchanged.
    """
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma).to(device=x.device, dtype=x.dtype)
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.pad(x, (r, r, r, r), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x


class TorchDetector(Detector):
    """Base of the built-in torch detectors: maps and scores come from one torch function.

    Subclasses implement :meth:`_fit` (on a checked ``(N, 3, H, W)`` float32 array) and
    :meth:`_map` (a differentiable ``(B, 3, H, W) -> (B, H, W)`` anomaly map, higher =
    more anomalous). The image score is the **maximum of the map** for both
    :meth:`predict` and :meth:`torch_score`, so the two agree exactly.
    """

    differentiable = True
    size_multiple = 1

    def __init__(
        self,
        *,
        name: str,
        input_size: int | tuple[int, int],
        seed: int,
        device: str,
        num_threads: int | None,
        batch_size: int,
    ) -> None:
        self.name = str(name)
        self.input_size = check_size(input_size, multiple=self.size_multiple)
        self.seed = int(seed)
        self.device = str(device)
        if num_threads is not None and int(num_threads) < 1:
            raise InputError(f"num_threads must be >= 1 or None, got {num_threads!r}")
        self.num_threads = None if num_threads is None else int(num_threads)
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self._device = resolve_device(self.device)
        self._fitted = False
        self.fit_seconds_: float | None = None

    # -- subclass hooks -------------------------------------------------------------
    @abstractmethod
    def _fit(self, images: np.ndarray) -> None:
        """Fit on checked normal images ``(N, 3, H, W)`` float32."""

    @abstractmethod
    def _map(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable anomaly map ``(B, 3, H, W) -> (B, H, W)``."""

    @abstractmethod
    def _params(self) -> dict:
        """Hyper-parameters recorded by :meth:`config`."""

    # -- Detector API ---------------------------------------------------------------
    def fit(self, batches: Iterable[np.ndarray]) -> TorchDetector:
        """Fit on normal images: ``batches`` yields ``(B, C, H, W)`` float32 arrays in
        ``[0, 1]`` (or :class:`~xeval.record.Inputs` objects) at :attr:`input_size`."""
        import time

        images = collect_batches(batches, size=self.input_size)
        t0 = time.perf_counter()
        with seeded(self.seed, threads=self.num_threads):
            self._fit(images)
        self.fit_seconds_ = time.perf_counter() - t0
        self._fitted = True
        return self

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError(
                f"{type(self).__name__} {self.name!r} is not fitted: call fit(normal_batches) "
                "before predict/score/anomaly_map/torch_score"
            )

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores (B,), maps (B, H, W))`` float32, higher = more anomalous.

        ``maps`` is at :attr:`input_size`; ``scores`` is the max of each map.
        """
        self._require_fitted()
        x = check_images(images, name="images", size=self.input_size)
        scores, maps = [], []
        with seeded(self.seed, threads=self.num_threads), torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(x[i : i + self.batch_size]).to(self._device)
                m = self._map(xb)
                maps.append(m.float().cpu().numpy())
                scores.append(m.flatten(1).amax(dim=1).float().cpu().numpy())
        maps_np = np.concatenate(maps).astype(np.float32, copy=False)
        return np.concatenate(scores).astype(np.float32, copy=False), maps_np

    def torch_score(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A differentiable ``(B, C, H, W) -> (B,)`` score: max of the anomaly map.

        The gradient of the max flows through the arg-max pixel of the (smoothed) map,
        hence to the input pixels around it. Inputs are moved to the detector's device
        and the result is returned on the input's device.
        """
        self._require_fitted()

        def score(x: torch.Tensor) -> torch.Tensor:
            if x.ndim != 4 or x.shape[1] not in (1, 3):
                raise InputError(f"x must have shape (B, 3, H, W), got {tuple(x.shape)}")
            if tuple(x.shape[2:]) != self.input_size:
                raise InputError(
                    f"x must have spatial size {self.input_size}, got {tuple(x.shape)}"
                )
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            out = self._map(x.to(self._device, torch.float32)).flatten(1).amax(dim=1)
            return out.to(x.device)

        return score

    def torch_module(self) -> nn.Module | None:
        """The fitted ``nn.Module`` that :meth:`torch_score` runs (``model_``), or None.

        Grad-CAM looks its layers up by name, DeepLIFT hooks its non-linearities and
        the randomisation test re-initialises its parameters. None before fitting and
        for detectors without a learned module (their scoring lives in fitted
        statistics, e.g. :class:`~xeval.adapters.PatchFeatures`).
        """
        model = getattr(self, "model_", None)
        return model if isinstance(model, nn.Module) else None

    def config(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "input_size": list(self.input_size),
            "seed": self.seed,
            "device": self.device,
            "num_threads": self.num_threads,
            "batch_size": self.batch_size,
            **self._params(),
        }

    kind: str = "torch"

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "kind")
        return f"{type(self).__name__}({params})"


# ------------------------------------------------------------------ checkpoints
@dataclass
class Checkpoint:
    """The parameters of a module saved during training, with the learning rate of the
    steps that led to them (what TracIn needs, Pruthi et al. 2020).

    ``state`` (name -> tensor, the module's ``state_dict``) is held in memory, or
    ``path`` names a file written by :func:`save_checkpoint` and read on demand with
    ``torch.load(..., weights_only=True)``.
    """

    epoch: int
    lr: float
    state: dict | None = None
    path: str | None = None

    def load(self) -> dict:
        """The saved ``state_dict`` (read from :attr:`path` when not in memory)."""
        if self.state is not None:
            return self.state
        if self.path is None:
            raise InputError(f"checkpoint of epoch {self.epoch} holds neither a state nor a path")
        return load_checkpoint(self.path).state  # type: ignore[return-value]


def checkpoint_epochs(checkpoints: object, epochs: int) -> list[int]:
    """The (1-based) epochs after which to save a checkpoint.

    ``checkpoints``: None (none), an int ``k`` (``k`` epochs evenly spaced, the last
    one ``epochs``: ``ceil(m * epochs / k)`` for ``m = 1..k``), or a list of epochs in
    ``[1, epochs]``.
    """
    if checkpoints is None:
        return []
    if isinstance(checkpoints, bool):
        raise InputError(
            f"checkpoints must be None, an int or a list of epochs, got {checkpoints!r}"
        )
    if isinstance(checkpoints, numbers.Integral):
        k = int(checkpoints)
        if not 1 <= k <= epochs:
            raise InputError(f"checkpoints must lie in [1, epochs={epochs}], got {k}")
        return sorted({math.ceil(m * epochs / k) for m in range(1, k + 1)})
    if isinstance(checkpoints, (list, tuple)) and checkpoints:
        out = []
        for e in checkpoints:
            if isinstance(e, bool) or not isinstance(e, numbers.Integral) or not 1 <= e <= epochs:
                raise InputError(
                    f"checkpoints: every epoch must be an integer in [1, epochs={epochs}], "
                    f"got {e!r} in {list(checkpoints)!r}"
                )
            out.append(int(e))
        return sorted(set(out))
    raise InputError(
        f"checkpoints must be None, an int or a non-empty list of epochs, got {checkpoints!r}"
    )


def save_checkpoint(path: str | os.PathLike, *, state: Mapping, lr: float, epoch: int) -> str:
    """Write ``{"state", "lr", "epoch"}`` to ``path`` (tensors, a float and an int only:
    readable with ``weights_only=True``), atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    payload = {
        "state": {k: v.detach().cpu().clone() for k, v in state.items()},
        "lr": float(lr),
        "epoch": int(epoch),
    }
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        from xeval.errors import OutputError

        raise OutputError(
            f"cannot write checkpoint {str(path)!r}: {exc.strerror or exc}",
            path=path,
            errno=exc.errno,
        ) from exc
    return str(path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint` (``weights_only=True``: no
    unpickling of arbitrary objects)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint file {str(path)!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt or unsafe file: say which
        raise InputError(f"cannot read checkpoint {str(path)!r}: {exc}") from exc
    if not isinstance(payload, dict) or not {"state", "lr", "epoch"} <= set(payload):
        raise InputError(
            f"checkpoint {str(path)!r} is not an xeval checkpoint (keys state, lr, epoch)"
        )
    return Checkpoint(
        epoch=int(payload["epoch"]),
        lr=float(payload["lr"]),
        state=dict(payload["state"]),
        path=str(path),
    )
