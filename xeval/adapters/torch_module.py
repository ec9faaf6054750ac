"""Wrap a user's ``torch.nn.Module`` as a :class:`~xeval.adapters.Detector`.

The user says how the image score and the anomaly map are read from the module's
output (``score_fn``/``map_fn`` callables, or ``score``/``map`` field names for dict,
dataclass or namedtuple outputs); common shapes are recognised without help:

=============================================  ==========================================
module output                                  interpretation
=============================================  ==========================================
``(B,)`` or ``(B, 1)``                          image score, no map
``(B, 1, h, w)`` or ``(B, h, w)``               anomaly map; score = max (or mean) of map
same shape as the input (a reconstruction)      map = channel-mean squared error
                                               ``mean_c (x_hat - x)^2``; score = max/mean
dict / object with ``pred_score``, ``score``,   read those fields (then the rules above)
``anomaly_map``, ``map``...
=============================================  ==========================================

Score direction: the module's own convention is assumed to be *higher = more
anomalous*; pass ``higher_is_anomalous=False`` when it is the opposite (e.g. a
log-likelihood) and the adapter negates scores and maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from xeval.adapters._wrapped import (
    WrappedDetector,
    check_batch_size,
    check_input_size,
    check_reduction,
    describe,
    get_field,
    has_field,
    iter_images,
)
from xeval.checks import check_bool
from xeval.errors import InputError

SCORE_FIELDS = ("pred_score", "score", "scores", "anomaly_score", "pred_scores")
MAP_FIELDS = ("anomaly_map", "map", "maps", "anomaly_maps", "amap")
OUTPUTS = ("auto", "score", "map", "reconstruction")

#: Per-channel mean and std of ImageNet (for ``normalize="imagenet"``).
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} requested but CUDA is not available")
    return dev


def make_normalize(normalize: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``None``, ``"imagenet"`` or ``{"mean": [...], "std": [...]}`` -> differentiable fn."""
    if normalize is None:
        return None
    if normalize == "imagenet":
        normalize = IMAGENET
    if not isinstance(normalize, dict) or set(normalize) != {"mean", "std"}:
        raise InputError(
            f"normalize must be None, 'imagenet' or {{'mean': [...], 'std': [...]}}, "
            f"got {normalize!r}"
        )
    mean = torch.tensor([float(v) for v in normalize["mean"]]).view(1, -1, 1, 1)
    std = torch.tensor([float(v) for v in normalize["std"]]).view(1, -1, 1, 1)
    if mean.numel() != std.numel() or bool((std <= 0).any()):
        raise InputError(f"normalize: mean and std must have equal length, std > 0: {normalize}")

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - mean.to(x)) / std.to(x)

    return norm


class TorchWrapped(WrappedDetector):
    """Common part of the torch adapters: device, eval mode, batching, torch_score checks.

    Subclasses implement :meth:`_forward` ``(x on device) -> (score (B,), map or None)``,
    differentiable in ``x`` when the detector is.
    """

    differentiable = True

    def _setup_torch(
        self,
        module: nn.Module,
        *,
        name: str,
        input_size: Any,
        device: str,
        batch_size: int,
        preprocess: Callable | None,
        normalize: Any,
        in_channels: int,
        seed: int,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise InputError(
                f"{type(self).__name__} {name!r}: expected a torch.nn.Module, got "
                f"{describe(module)}"
            )
        self.name = str(name)
        self.input_size = check_input_size(input_size)
        self.device = str(device)
        self._device = resolve_device(self.device)
        self.batch_size = check_batch_size(batch_size)
        if preprocess is not None and normalize is not None:
            raise InputError(f"{type(self).__name__} {name!r}: give preprocess or normalize")
        if preprocess is not None and not callable(preprocess):
            raise InputError(f"preprocess must be callable, got {describe(preprocess)}")
        self.preprocess = preprocess
        self.normalize = normalize
        self._pre = preprocess if preprocess is not None else make_normalize(normalize)
        self.in_channels = int(in_channels)
        self.seed = int(seed)
        self.module = module.to(self._device).eval()

    # -- subclass hook ----------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self._pre(x) if self._pre is not None else x

    # -- Detector API -----------------------------------------------------------------
    def torch_module(self) -> nn.Module:
        return self.module

    def _predict_chunks(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self._images(images)
        b = len(x)
        self.module.eval()
        scores, maps = [], []
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.seed)
            for i in range(0, b, self.batch_size):
                xb = torch.from_numpy(x[i : i + self.batch_size]).to(self._device)
                s, m = self._forward(xb)
                scores.append(self._scores(s, len(xb), source=self._source("score")))
                if m is not None:
                    maps.append(self._maps(m, len(xb), source=self._source("map")))
        if maps and len(maps) != len(scores):  # pragma: no cover - defensive
            raise InputError(f"{self.who}: the map was missing for some batches")
        self._has_map = bool(maps)
        out_maps = np.concatenate(maps) if maps else self._no_maps(b)
        return np.concatenate(scores), out_maps

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores (B,), maps (B, h, w))`` float32, higher = more anomalous.

        Runs the module in eval mode under ``torch.no_grad()`` in chunks of
        ``batch_size``. Maps are at the module's own resolution; a score-only
        detector returns maps of shape ``(B, 0, 0)``.
        """
        return self._predict_chunks(images)

    def _source(self, what: str) -> str:
        return f"the wrapped module's {what}"

    def torch_score(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Differentiable ``(B, C, H, W) -> (B,)`` score, equal to :meth:`predict`'s.

        Inputs are moved to the detector's device (and the score back to the input's
        device), processed in chunks of ``batch_size``. If the input requires a
        gradient but the score does not depend differentiably on it (the module runs
        under ``no_grad``, ``score_fn`` detached it...), an InputError is raised.
        """
        if not self.differentiable:
            return None

        def score(x: torch.Tensor) -> torch.Tensor:
            if not isinstance(x, torch.Tensor) or x.ndim != 4:
                raise InputError(
                    f"{self.who}: torch_score expects a (B, C, H, W) tensor, got {describe(x)}"
                )
            self.module.eval()
            xd = x.to(self._device, torch.float32)
            parts = []
            for i in range(0, len(xd), self.batch_size):
                xb = xd[i : i + self.batch_size]
                s, _ = self._forward(xb)
                if not isinstance(s, torch.Tensor):
                    raise InputError(
                        f"{self.who}: torch_score needs a torch score, but "
                        f"{self._source('score')} returned {describe(s)}; pass "
                        "differentiable=False to use perturbation explainers only"
                    )
                if s.ndim == 2 and s.shape[1] == 1:
                    s = s[:, 0]
                if s.shape != (len(xb),):
                    raise InputError(
                        f"{self.who}: {self._source('score')} returned shape "
                        f"{tuple(s.shape)}, expected ({len(xb)},)"
                    )
                parts.append(s)
            out = torch.cat(parts) if len(parts) > 1 else parts[0]
            if x.requires_grad and torch.is_grad_enabled() and not out.requires_grad:
                raise InputError(
                    f"{self.who}: gradients were asked for, but the score does not depend "
                    "differentiably on the input (the model runs under torch.no_grad, or "
                    "score_fn/map_fn detach or go through numpy); create the adapter with "
                    "differentiable=False to use perturbation explainers only"
                )
            return out.to(x.device)

        return score


class TorchModuleDetector(TorchWrapped):
    """A pre-trained ``torch.nn.Module`` as an anomaly detector.

    Score definition (higher = more anomalous): what ``score_fn``/``score`` give, or
    for map-like outputs the max (``reduction="max"``) or mean of the map; for an
    output with the input's shape (an autoencoder's reconstruction ``x_hat``), the map
    is the channel-mean squared error ``mean_c (x_hat - x)^2`` (the classic
    reconstruction-error detector, e.g. Bergmann et al. 2019, "Improving unsupervised
    defect segmentation by applying structural similarity to autoencoders").

    Parameters
    ----------
    module:
        The model. It is moved to ``device`` and put in eval mode.
    name:
        Identifier in result tables.
    input_size:
        ``(H, W)`` (or an int) the engine resizes images to.
    score_fn, map_fn:
        ``fn(output, x) -> tensor``: the image score ``(B,)`` / map ``(B, h, w)`` (or
        ``(B, 1, h, w)``) from the module's output and the tensor ``x`` it received
        (after ``preprocess``). Keep them in torch for a differentiable
        :meth:`torch_score`.
    score, map:
        Field names (dict key or attribute) of the score / map in the output, for
        dict, dataclass or namedtuple outputs.
    output:
        ``"auto"`` (from the shape, table in the module docstring), ``"score"``,
        ``"map"`` or ``"reconstruction"`` to force the interpretation of a tensor.
    reduction:
        ``"max"`` or ``"mean"``: image score from the map when no score is given.
    higher_is_anomalous:
        False when the module's score/map grow with normality: they are negated (the
        map before the reduction, so the score is the max of the negated map).
    fit_fn:
        ``fit_fn(module, batches)`` called by :meth:`fit` (e.g. to fill a memory bank);
        without it :meth:`fit` is a no-op (the module is pre-trained).
    preprocess, normalize:
        A differentiable ``tensor -> tensor`` applied before the module, or
        ``normalize="imagenet"`` / ``{"mean": [...], "std": [...]}``. Images reach the
        adapter in ``[0, 1]``.
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    batch_size:
        Chunk size of :meth:`predict` and :meth:`torch_score`.
    differentiable:
        False to declare the score non-differentiable (``torch_score()`` is None).
    in_channels:
        Channels of the probe image used to find out, before any prediction, whether
        the output has a map (only with ``output="auto"`` and no field names).
    seed:
        Torch seed set (in a forked RNG) around each :meth:`predict` call.
    """

    kind = "torch_module"

    def __init__(
        self,
        module: nn.Module,
        *,
        name: str = "torch_module",
        input_size: int | tuple[int, int] = (128, 128),
        score_fn: Callable | None = None,
        map_fn: Callable | None = None,
        score: str | None = None,
        map: str | None = None,  # noqa: A002 - mirrors the recipe key
        output: str = "auto",
        reduction: str = "max",
        higher_is_anomalous: bool = True,
        fit_fn: Callable | None = None,
        preprocess: Callable | None = None,
        normalize: Any = None,
        device: str = "cpu",
        batch_size: int = 32,
        differentiable: bool = True,
        in_channels: int = 3,
        seed: int = 0,
    ) -> None:
        self._setup_torch(
            module,
            name=name,
            input_size=input_size,
            device=device,
            batch_size=batch_size,
            preprocess=preprocess,
            normalize=normalize,
            in_channels=in_channels,
            seed=seed,
        )
        for arg, fn in (("score_fn", score_fn), ("map_fn", map_fn), ("fit_fn", fit_fn)):
            if fn is not None and not callable(fn):
                raise InputError(f"{self.who}: {arg} must be callable, got {describe(fn)}")
        if output not in OUTPUTS:
            raise InputError(f"{self.who}: output must be one of {OUTPUTS}, got {output!r}")
        self.score_fn = score_fn
        self.map_fn = map_fn
        self.score_key = score
        self.map_key = map
        self.output = output
        self.reduction = check_reduction(reduction)
        self.higher_is_anomalous = check_bool(higher_is_anomalous, "higher_is_anomalous")
        self.fit_fn = fit_fn
        self.differentiable = check_bool(differentiable, "differentiable")
        self.fitted_ = fit_fn is None
        if map_fn is not None or map is not None or output in ("map", "reconstruction"):
            self._has_map = True
        elif score_fn is not None or score is not None or output == "score":
            self._has_map = False

    # -- output interpretation --------------------------------------------------------
    def _reduce(self, m: torch.Tensor) -> torch.Tensor:
        flat = m.flatten(1)
        return flat.amax(dim=1) if self.reduction == "max" else flat.mean(dim=1)

    def _as_map(self, t: Any, where: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{self.who}: {where} must be a torch tensor, got {describe(t)}")
        if t.ndim == 4 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim != 3:
            raise InputError(
                f"{self.who}: {where} has shape {tuple(t.shape)}, expected (B, h, w) or "
                "(B, 1, h, w)"
            )
        return t

    def _from_tensor(self, t: torch.Tensor, x: torch.Tensor) -> tuple[Any, Any]:
        """Interpret one output tensor by shape (or by the ``output`` hint)."""
        mode = self.output
        if mode == "auto":
            if t.shape == x.shape:
                mode = "reconstruction"
            elif t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1):
                mode = "score"
            elif t.ndim == 3 or (t.ndim == 4 and t.shape[1] == 1):
                mode = "map"
            else:
                raise InputError(
                    f"{self.who}: cannot interpret the module's output of shape "
                    f"{tuple(t.shape)} for an input of shape {tuple(x.shape)}: expected "
                    "(B,) score, (B, 1, h, w) or (B, h, w) map, or a reconstruction of the "
                    "input's shape; pass score_fn=/map_fn= or output="
                )
        if mode == "reconstruction":
            if t.shape != x.shape:
                raise InputError(
                    f"{self.who}: output='reconstruction' but the module returned shape "
                    f"{tuple(t.shape)} for an input of shape {tuple(x.shape)}"
                )
            return None, ((t - x) ** 2).mean(dim=1)
        if mode == "score":
            return t, None
        return None, self._as_map(t, "the module's output map")

    def _interpret(self, out: Any, x: torch.Tensor) -> tuple[Any, Any]:
        s = m = None
        if self.score_fn is not None:
            s = self.score_fn(out, x)
        elif self.score_key is not None:
            s = self._field(out, self.score_key, "score")
        if self.map_fn is not None:
            m = self.map_fn(out, x)
        elif self.map_key is not None:
            m = self._field(out, self.map_key, "map")
        explicit = any(
            v is not None for v in (self.score_fn, self.score_key, self.map_fn, self.map_key)
        )
        if not explicit:
            if isinstance(out, torch.Tensor):
                s, m = self._from_tensor(out, x)
            else:
                s, m = self._auto_fields(out, x)
        if m is not None:
            m = self._as_map(m, "the map")
            if not self.higher_is_anomalous:
                m = -m
        if s is None:
            if m is None:  # pragma: no cover - guarded above
                raise InputError(f"{self.who}: no score and no map in {describe(out)}")
            s = self._reduce(m)  # of the (sign-fixed) map: the most anomalous pixel
        elif not self.higher_is_anomalous:
            s = -s
        return s, m

    def _field(self, out: Any, key: str, what: str) -> Any:
        try:
            return get_field(out, key)
        except (KeyError, AttributeError, TypeError):
            raise InputError(
                f"{self.who}: {what}={key!r} not found in the module's output ({describe(out)})"
            ) from None

    def _auto_fields(self, out: Any, x: torch.Tensor) -> tuple[Any, Any]:
        if isinstance(out, tuple | list) and not hasattr(out, "_fields"):
            tensors = [t for t in out if isinstance(t, torch.Tensor)]
            if len(out) == 1 and tensors:
                return self._from_tensor(tensors[0], x)
            if len(out) == 2 and len(tensors) == 2:
                a, b = out
                if a.ndim <= 2 and b.ndim >= 3:
                    return a, b
                if b.ndim <= 2 and a.ndim >= 3:
                    return b, a
        else:
            s_key = next((k for k in SCORE_FIELDS if has_field(out, k)), None)
            m_key = next((k for k in MAP_FIELDS if has_field(out, k)), None)
            s = get_field(out, s_key) if s_key else None
            m = get_field(out, m_key) if m_key else None
            if s is not None or m is not None:
                return s, m
        raise InputError(
            f"{self.who}: cannot find a score or a map in the module's output "
            f"({describe(out)}); pass score=/map= field names or score_fn=/map_fn="
        )

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        xin = self._prepare(x)
        out = self.module(xin)
        s, m = self._interpret(out, xin)
        if isinstance(s, torch.Tensor) and s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        return s, m

    def _infer_has_map(self) -> bool:
        probe = torch.zeros(1, self.in_channels, *self.input_size, device=self._device)
        self.module.eval()
        with torch.no_grad():
            _, m = self._forward(probe)
        return m is not None

    # -- Detector API -----------------------------------------------------------------
    def fit(self, batches: Iterable[np.ndarray]) -> TorchModuleDetector:
        """No-op for a pre-trained module; with ``fit_fn``, ``fit_fn(module, batches)``.

        ``batches`` yields ``(B, C, H, W)`` float32 arrays of normal images in ``[0, 1]``
        (what the engine passes); they are forwarded to ``fit_fn`` as given.
        """
        if self.fit_fn is not None:
            self.fit_fn(self.module, iter_images(batches))
            self.module.eval()
        self.fitted_ = True
        return self

    def fitted_statistics(self) -> bool:
        """With a ``fit_fn``, the module is assumed to fit statistics on normal data."""
        return self.fit_fn is not None

    def _require_fitted(self) -> None:
        if not self.fitted_:
            raise InputError(
                f"{self.who} has a fit_fn and is not fitted: call fit(normal_batches) first"
            )

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._require_fitted()
        return self._predict_chunks(images)

    def torch_score(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        self._require_fitted()
        return super().torch_score()

    def config(self) -> dict:
        def fname(f: Any) -> str | None:
            return None if f is None else getattr(f, "__qualname__", type(f).__name__)

        return {
            **super().config(),
            "module": type(self.module).__name__,
            "score_fn": fname(self.score_fn),
            "map_fn": fname(self.map_fn),
            "score": self.score_key,
            "map": self.map_key,
            "output": self.output,
            "reduction": self.reduction,
            "higher_is_anomalous": self.higher_is_anomalous,
            "normalize": self.normalize,
            "device": self.device,
            "batch_size": self.batch_size,
            "differentiable": self.differentiable,
            "seed": self.seed,
        }
