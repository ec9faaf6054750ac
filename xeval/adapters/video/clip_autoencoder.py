"""A small spatio-temporal convolutional autoencoder trained on normal clips: the
built-in differentiable clip detector (reconstruction error, as in Hasan et al. 2016,
"Learning temporal regularity in video sequences", with 3-D convolutions).

Architecture: clips ``(B, L, C, H, W)`` at ``input_size`` -> two ``Conv3d`` layers
(kernel 3, spatial stride 2, temporal stride 1) -> two ``ConvTranspose3d`` layers back
to the input size -> sigmoid. Trained with Adam on the mean squared error of every
window of ``clip_length`` frames of the normal training videos (stride 1), seeded. The
map of a frame is its per-pixel squared error averaged over colour channels and over
the windows that cover it (:class:`~xeval.adapters.video.clip.ClipAdapter`,
``target="all"``); the frame score is the map's mean. Being a
:class:`~xeval.adapters.video.clip.ClipAdapter`, one of its frames is an image detector
with gradients through :func:`~xeval.adapters.video.frame_view.frame_view`, so captum
attributions explain it frame by frame.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from xeval.adapters.video.clip import ClipAdapter, frames_to_tensor
from xeval.adapters.video.frame_difference import check_videos
from xeval.checks import check_positive_int
from xeval.errors import InputError
from xeval.registry import VIDEO_DETECTORS

__all__ = ["ClipAutoencoder"]


class _Clip3dAE(nn.Module):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv3d(channels, width, 3, stride=(1, 2, 2), padding=1),
            nn.ReLU(),
            nn.Conv3d(width, 2 * width, 3, stride=(1, 2, 2), padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose3d(2 * width, width, (3, 4, 4), stride=(1, 2, 2), padding=1),
            nn.ReLU(),
            nn.ConvTranspose3d(width, channels, (3, 4, 4), stride=(1, 2, 2), padding=1),
            nn.Sigmoid(),
        )

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.permute(0, 2, 1, 3, 4)  # (B, C, L, H, W)
        return self.decoder(self.encoder(x)).permute(0, 2, 1, 3, 4)


@VIDEO_DETECTORS.register
class ClipAutoencoder(ClipAdapter):
    """Spatio-temporal convolutional autoencoder (module docstring).

    Parameters
    ----------
    clip_length:
        Frames per window (>= 1).
    input_size:
        ``(H, W)`` working size, each a multiple of 4.
    width:
        Channels of the first layer (the second has twice as many).
    epochs, lr, batch_size:
        Training schedule (Adam).
    stride:
        Step between windows at prediction time (<= clip_length).
    channels:
        Colour channels of the frames (3 for RGB, 1 for grey).
    seed:
        Seeds the initial weights and the order of training windows.
    num_threads:
        torch CPU threads while fitting and predicting (None: torch's default).
    """

    name = "clip_autoencoder"

    def __init__(
        self,
        *,
        clip_length: int = 4,
        input_size: tuple[int, int] | list[int] = (48, 64),
        width: int = 16,
        epochs: int = 6,
        lr: float = 2e-3,
        batch_size: int = 16,
        stride: int = 2,
        channels: int = 3,
        seed: int = 0,
        num_threads: int | None = None,
        device: str = "cpu",
        name: str = "clip_autoencoder",
    ) -> None:
        size = tuple(input_size) if isinstance(input_size, list | tuple) else input_size
        if (
            not isinstance(size, tuple)
            or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
            or any(s % 4 for s in size)
        ):
            raise InputError(f"input_size must be (H, W), multiples of 4, got {input_size!r}")
        self.width = check_positive_int(width, "width")
        self.epochs = check_positive_int(epochs, "epochs")
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < 1:
            raise InputError(f"lr must be a number in (0, 1), got {lr!r}")
        self.lr = float(lr)
        self.channels = check_positive_int(channels, "channels")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.num_threads = (
            None if num_threads is None else check_positive_int(num_threads, "num_threads")
        )
        torch.manual_seed(self.seed)
        module = _Clip3dAE(self.channels, self.width)
        super().__init__(
            module,
            clip_length=clip_length,
            target="all",
            stride=stride,
            batch_size=batch_size,
            device=device,
            input_size=size,
            reduction="mean",
            name=name,
        )

    def _threads(self):
        import contextlib

        if self.num_threads is None:
            return contextlib.nullcontext()
        prev = torch.get_num_threads()

        @contextlib.contextmanager
        def cm():
            torch.set_num_threads(self.num_threads)
            try:
                yield
            finally:
                torch.set_num_threads(prev)

        return cm()

    def fit(self, videos: Iterable[np.ndarray]) -> ClipAutoencoder:
        """Train on every window of the normal ``videos`` (``(T, H, W, C)`` uint8)."""
        vids = check_videos(videos)
        if vids[0].shape[3] != self.channels:
            raise InputError(
                f"clip_autoencoder was built for {self.channels} channel(s); the videos have "
                f"{vids[0].shape[3]} (set channels)"
            )
        with self._threads():
            windows = []
            for v in vids:
                x = frames_to_tensor(v, self.input_size)
                for s in range(0, x.shape[0] - self.clip_length + 1):
                    windows.append(x[s : s + self.clip_length])
            if not windows:
                raise InputError(
                    f"clip_autoencoder: no training video has clip_length={self.clip_length} frames"
                )
            data = torch.stack(windows).to(self._device)
            g = torch.Generator().manual_seed(self.seed)
            opt = torch.optim.Adam(self.module.parameters(), lr=self.lr)
            self.module.train()
            for _ in range(self.epochs):
                order = torch.randperm(len(data), generator=g)
                for i in range(0, len(data), self.batch_size):
                    batch = data[order[i : i + self.batch_size]]
                    loss = ((self.module(batch) - batch) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            self.module.eval()
        return self

    def predict(self, frames: np.ndarray):
        with self._threads():
            return super().predict(frames)

    def config(self) -> dict:
        return {
            **super().config(),
            "kind": self.name,
            "width": self.width,
            "epochs": self.epochs,
            "lr": self.lr,
            "seed": self.seed,
        }
