"""Out-of-distribution scores on a classifier, as Detectors (higher = more anomalous).

The survey's "input-perturbation" family: a classifier trained on in-distribution
classes scores an image by how unlike those classes it looks.

========================  =============================================================
method                    score (higher = more anomalous)
========================  =============================================================
``msp``                   ``-max_k softmax(z / T)_k`` (Hendrycks & Gimpel, ICLR 2017)
``energy``                ``-T logsumexp(z / T)`` (Liu et al., NeurIPS 2020)
``odin``                  ``-max_k softmax(z(x~) / T)_k`` with
                          ``x~ = x + eps sign(grad_x log max_k softmax(z(x) / T)_k)``
                          (Liang et al., ICLR 2018)
``mahalanobis``           ``min_c (f(x~) - mu_c)^T S^+ (f(x~) - mu_c)`` on the features
                          ``f`` of one layer, class means ``mu_c`` and shared covariance
                          ``S``; ``x~ = x - eps sign(grad_x min_c ...)`` (Lee et al.,
                          NeurIPS 2018; ``eps = 0``: no perturbation)
========================  =============================================================

``z`` are the logits. Perturbations use ``sign(g) = +1 where g >= 0, else -1`` as the
authors' code does, and ``eps`` is in pixel units of the ``[0, 1]`` image the adapter
receives: with a ``normalize=`` step this equals the reference code's ``eps`` applied to
the normalised input divided by the channel std.

Classifiers give image scores only: there is no anomaly map unless ``map_fn`` is given
(``has_map`` False, :meth:`anomaly_map` raises InputError); gradient attributions of
:meth:`torch_score` and perturbation explainers produce maps from the score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xeval.adapters._wrapped import describe, get_field, iter_images
from xeval.adapters.torch_module import TorchWrapped
from xeval.errors import InputError

LABEL_SOURCES = ("predicted", "single")


def sign_ge(g: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``g >= 0`` else ``-1`` (the sign used by the ODIN/Mahalanobis code)."""
    return (g >= 0).to(g.dtype) * 2 - 1


class ClassifierOOD(TorchWrapped):
    """Base of the OOD adapters: a classifier ``(B, C, H, W) -> logits (B, K)``.

    Parameters (shared by all methods)
    ----------------------------------
    model:
        The classifier, moved to ``device`` and put in eval mode.
    name, input_size:
        Identifier and the ``(H, W)`` the engine resizes images to.
    logits, logits_fn:
        How to read logits from the model's output: a field name (dict key or
        attribute) or ``fn(output) -> (B, K)``; default: the output itself.
    map_fn:
        Optional ``fn(x) -> (B, h, w)`` map for the images tensor ``x`` (in ``[0, 1]``,
        on ``device``); without it the detector has no map.
    preprocess, normalize:
        Differentiable step before the model (``normalize="imagenet"`` or
        ``{"mean": [...], "std": [...]}``).
    device, batch_size, in_channels, seed:
        As for :class:`~xeval.adapters.torch_module.TorchModuleDetector`.
    """

    kind = "ood_classifier"
    method = "ood"

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str | None = None,
        input_size: int | tuple[int, int] = (32, 32),
        logits: str | None = None,
        logits_fn: Callable | None = None,
        map_fn: Callable | None = None,
        preprocess: Callable | None = None,
        normalize: Any = None,
        device: str = "cpu",
        batch_size: int = 64,
        in_channels: int = 3,
        seed: int = 0,
    ) -> None:
        self._setup_torch(
            model,
            name=name or self.method,
            input_size=input_size,
            device=device,
            batch_size=batch_size,
            preprocess=preprocess,
            normalize=normalize,
            in_channels=in_channels,
            seed=seed,
        )
        for arg, fn in (("logits_fn", logits_fn), ("map_fn", map_fn)):
            if fn is not None and not callable(fn):
                raise InputError(f"{self.who}: {arg} must be callable, got {describe(fn)}")
        self.logits_key = logits
        self.logits_fn = logits_fn
        self.map_fn = map_fn
        self._has_map = map_fn is not None

    # -- pieces -----------------------------------------------------------------------
    def _to_logits(self, out: Any) -> torch.Tensor:
        if self.logits_fn is not None:
            z = self.logits_fn(out)
        elif self.logits_key is not None:
            try:
                z = get_field(out, self.logits_key)
            except (KeyError, AttributeError, TypeError):
                raise InputError(
                    f"{self.who}: logits={self.logits_key!r} not in the model's output "
                    f"({describe(out)})"
                ) from None
        else:
            z = out
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] < 2:
            raise InputError(
                f"{self.who}: the classifier must give logits of shape (B, K) with K >= 2, "
                f"got {describe(z)}; pass logits= or logits_fn="
            )
        return z

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._to_logits(self.module(self._prepare(x)))

    def _ood(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self._ood(x)
        m = None
        if self.map_fn is not None:
            with torch.no_grad():
                m = self.map_fn(x)
        return s, m

    def _source(self, what: str) -> str:
        return f"the {self.method} {what}" if what == "score" else "map_fn"

    # -- Detector API -----------------------------------------------------------------
    def fit(self, batches: Iterable[Any]) -> ClassifierOOD:
        """No-op: the classifier is pre-trained (Mahalanobis overrides this)."""
        return self

    def config(self) -> dict:
        return {
            **super().config(),
            "method": self.method,
            "model": type(self.module).__name__,
            "logits": self.logits_key,
            "normalize": self.normalize,
            "has_map": self._has_map,
            "device": self.device,
            "batch_size": self.batch_size,
            "seed": self.seed,
            **self._params(),
        }

    def _params(self) -> dict:
        return {}


class MSPDetector(ClassifierOOD):
    """Maximum softmax probability: ``score = -max_k softmax(z / T)_k``.

    Hendrycks & Gimpel, "A baseline for detecting misclassified and out-of-distribution
    examples in neural networks", ICLR 2017 (``temperature=1``). Differentiable.
    """

    method = "msp"

    def __init__(self, model: nn.Module, *, temperature: float = 1.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.temperature = _positive(temperature, "temperature", self.who)

    def _ood(self, x: torch.Tensor) -> torch.Tensor:
        return -F.softmax(self._logits(x) / self.temperature, dim=1).amax(dim=1)

    def _params(self) -> dict:
        return {"temperature": self.temperature}


class EnergyDetector(ClassifierOOD):
    """Free energy: ``score = -T logsumexp(z / T)`` (higher energy = more anomalous).

    Liu, Wang, Owens & Li, "Energy-based out-of-distribution detection", NeurIPS 2020
    (``T = 1``). Differentiable.
    """

    method = "energy"

    def __init__(self, model: nn.Module, *, temperature: float = 1.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.temperature = _positive(temperature, "temperature", self.who)

    def _ood(self, x: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        return -t * torch.logsumexp(self._logits(x) / t, dim=1)

    def _params(self) -> dict:
        return {"temperature": self.temperature}


class ODINDetector(ClassifierOOD):
    """ODIN: temperature scaling and input perturbation.

    ``x~ = x + eps * sign(grad_x log max_k softmax(z(x) / T)_k)`` (the step that raises
    the max softmax, equivalently ``x - eps sign(grad_x CE(z(x) / T, argmax))``), then
    ``score = -max_k softmax(z(x~) / T)_k``. Liang, Li & Srikant, "Enhancing the
    reliability of out-of-distribution image detection in neural networks", ICLR 2018
    (defaults ``T = 1000``, ``eps = 0.0014``; the paper tunes both on validation data).

    The perturbation needs the gradient of the input: :meth:`predict` computes it with
    autograd (``create_graph=False``) even though scoring runs under ``no_grad``.
    :meth:`torch_score` returns the same value; its gradient is that of the score at
    ``x~`` with the perturbation ``eps sign(...)`` held constant, i.e. it is **not
    differentiated through the perturbation step** (the sign has zero gradient almost
    everywhere anyway).
    """

    method = "odin"

    def __init__(
        self,
        model: nn.Module,
        *,
        temperature: float = 1000.0,
        epsilon: float = 0.0014,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        self.temperature = _positive(temperature, "temperature", self.who)
        self.epsilon = _nonnegative(epsilon, "epsilon", self.who)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """``x~``: ``x`` plus the constant step ``eps sign(grad log S_max(x; T))``."""
        if self.epsilon == 0:
            return x
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logp = F.log_softmax(self._logits(xg) / self.temperature, dim=1).amax(dim=1)
            (g,) = torch.autograd.grad(logp.sum(), xg, create_graph=False)
        return x + self.epsilon * sign_ge(g.detach())

    def _ood(self, x: torch.Tensor) -> torch.Tensor:
        z = self._logits(self.perturb(x))
        return -F.softmax(z / self.temperature, dim=1).amax(dim=1)

    def _params(self) -> dict:
        return {"temperature": self.temperature, "epsilon": self.epsilon}


class MahalanobisDetector(ClassifierOOD):
    """Mahalanobis distance to the closest class on the features of one layer.

    Lee, Lee, Lee & Shin, "A simple unified framework for detecting out-of-distribution
    samples and adversarial attacks", NeurIPS 2018. Features ``f`` of ``layer``
    (spatial features ``(B, C, h, w)`` are averaged over positions, as in the authors'
    code); class means ``mu_c`` and one shared covariance
    ``S = 1/N sum_c sum_{i in c} (f_i - mu_c)(f_i - mu_c)^T`` fitted on training
    features; ``S^+`` its pseudo-inverse. Score (higher = more anomalous)::

        score(x) = min_c (f(x~) - mu_c)^T S^+ (f(x~) - mu_c)     (= -M(x) of the paper)

    with ``x~ = x - eps sign(grad_x min_c (f(x) - mu_c)^T S^+ (f(x) - mu_c))``
    (``eps = 0``, the default: ``x~ = x``). The multi-layer ensemble with logistic-
    regression weights tuned on OOD data is not included (one layer per detector).

    **Fitting needs class labels.** :meth:`fit` takes an iterable of batches, each an
    ``(images, labels)`` tuple (images ``(B, C, H, W)`` float32 in ``[0, 1]``, labels
    ``(B,)`` integer class ids of the classifier's training set). Plain image batches
    (what the xeval engine passes: normal images, no class ids) are labelled by
    ``labels="predicted"`` (the classifier's argmax, the default) or ``"single"`` (one
    class: plain Mahalanobis distance to the mean of the normal features).

    Parameters
    ----------
    layer:
        Name of the sub-module whose output are the features
        (``model.get_submodule(layer)``); None: the input of the last ``nn.Linear``
        (the penultimate features).
    features_fn:
        Instead of ``layer``: ``fn(x_pre) -> (B, D)`` or ``(B, C, h, w)`` features of the
        preprocessed input.
    epsilon:
        Input perturbation magnitude (pixel units); 0 disables it.
    labels:
        ``"predicted"`` or ``"single"``: labels of plain (unlabelled) fit batches.

    :meth:`torch_score` is differentiable in the input (through ``f``; with
    ``epsilon > 0`` the perturbation is a constant step, not differentiated through).
    """

    method = "mahalanobis"

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: str | None = None,
        features_fn: Callable | None = None,
        epsilon: float = 0.0,
        labels: str = "predicted",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if layer is not None and features_fn is not None:
            raise InputError(f"{self.who}: give layer= or features_fn=, not both")
        if features_fn is not None and not callable(features_fn):
            raise InputError(f"{self.who}: features_fn must be callable")
        if labels not in LABEL_SOURCES:
            raise InputError(f"{self.who}: labels must be one of {LABEL_SOURCES}, got {labels!r}")
        self.layer = layer
        self.features_fn = features_fn
        self.epsilon = _nonnegative(epsilon, "epsilon", self.who)
        self.labels = labels
        self._hook_module, self._hook_input = self._find_layer()
        self.means_: torch.Tensor | None = None
        self.precision_: torch.Tensor | None = None
        self.classes_: np.ndarray | None = None

    def _find_layer(self) -> tuple[nn.Module | None, bool]:
        if self.features_fn is not None:
            return None, False
        if self.layer is not None:
            try:
                return self.module.get_submodule(self.layer), False
            except AttributeError:
                names = [n for n, _ in self.module.named_modules() if n][:30]
                raise InputError(
                    f"{self.who}: layer={self.layer!r} is not a sub-module of "
                    f"{type(self.module).__name__}; sub-modules: {names}"
                ) from None
        linears = [m for m in self.module.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise InputError(
                f"{self.who}: no nn.Linear in {type(self.module).__name__} to take the "
                "penultimate features from; pass layer='name' or features_fn="
            )
        return linears[-1], True

    # -- features and distances -------------------------------------------------------
    def _features_and_output(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        xin = self._prepare(x)
        if self.features_fn is not None:
            f, out = self.features_fn(xin), None
        else:
            store: dict[str, Any] = {}
            if self._hook_input:
                h = self._hook_module.register_forward_pre_hook(  # type: ignore[union-attr]
                    lambda _m, args: store.__setitem__("f", args[0])
                )
            else:
                h = self._hook_module.register_forward_hook(  # type: ignore[union-attr]
                    lambda _m, _a, o: store.__setitem__("f", o)
                )
            try:
                out = self.module(xin)
            finally:
                h.remove()
            f = store.get("f")
        if not isinstance(f, torch.Tensor) or f.ndim < 2 or f.shape[0] != len(x):
            raise InputError(
                f"{self.who}: features of layer {self.layer!r} must be a (B, D) or "
                f"(B, C, h, w) tensor, got {describe(f)}"
            )
        if f.ndim > 2:
            f = f.flatten(2).mean(dim=2)
        return f, out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, D)`` features used by the Gaussian model (differentiable)."""
        return self._features_and_output(x)[0]

    def encoder(self) -> Callable[[torch.Tensor], torch.Tensor]:
        def enc(x: torch.Tensor) -> torch.Tensor:
            return self.features(x.to(self._device, torch.float32))

        return enc

    def distances(self, f: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` squared Mahalanobis distances of features to each class mean."""
        if self.means_ is None or self.precision_ is None:
            raise InputError(f"{self.who} is not fitted: call fit(batches) first")
        mu = self.means_.to(f.device)
        p = self.precision_.to(f.device)
        diff = f.double()[:, None, :] - mu[None]
        return torch.einsum("bkd,de,bke->bk", diff, p, diff)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """``x~ = x - eps sign(grad_x min_c D_c(x))`` (a constant step)."""
        if self.epsilon == 0:
            return x
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            d = self.distances(self.features(xg)).amin(dim=1)
            (g,) = torch.autograd.grad(d.sum(), xg, create_graph=False)
        return x - self.epsilon * sign_ge(g.detach())

    def _ood(self, x: torch.Tensor) -> torch.Tensor:
        return self.distances(self.features(self.perturb(x))).amin(dim=1).float()

    # -- fit ---------------------------------------------------------------------------
    def fitted_statistics(self) -> bool:
        """Class means and the shared covariance are fitted on the training features."""
        return True

    def fit(self, batches: Iterable[Any]) -> MahalanobisDetector:
        """Fit class means and the shared covariance (see the class docstring).

        ``batches`` yields ``(images, labels)`` tuples, or plain image arrays labelled
        by ``labels=``.
        """
        feats, labs = [], []
        self.module.eval()
        if _is_labelled_batch(batches):
            batches = [batches]
        for i, item in enumerate(iter_images(batches)):
            if isinstance(item, tuple | list) and len(item) == 2:
                imgs, y = item
            else:
                imgs, y = item, None
            x = self._images(imgs, name=f"batch {i} images")
            if y is not None:
                y = np.asarray(y)
                if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
                    raise InputError(
                        f"{self.who}: batch {i} labels must be ({len(x)},) integer class ids, "
                        f"got {describe(y)}"
                    )
            with torch.no_grad():
                for j in range(0, len(x), self.batch_size):
                    xb = torch.from_numpy(x[j : j + self.batch_size]).to(self._device)
                    f, out = self._features_and_output(xb)
                    feats.append(f.double().cpu())
                    if y is not None:
                        labs.append(torch.as_tensor(y[j : j + self.batch_size]))
                    elif self.labels == "single":
                        labs.append(torch.zeros(len(xb), dtype=torch.long))
                    else:
                        z = self._to_logits(out) if out is not None else self._logits(xb)
                        labs.append(z.argmax(dim=1).cpu())
        if not feats:
            raise InputError(f"{self.who}: fit got no images")
        f = torch.cat(feats)
        y = torch.cat(labs).long()
        classes = torch.unique(y)
        means = torch.stack([f[y == c].mean(dim=0) for c in classes])
        centred = f - means[torch.searchsorted(classes, y)]
        cov = centred.T @ centred / len(f)
        self.means_ = means.to(self._device)
        self.precision_ = torch.linalg.pinv(cov, hermitian=True).to(self._device)
        self.classes_ = classes.numpy()
        return self

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.means_ is None:
            raise InputError(f"{self.who} is not fitted: call fit(batches) first")
        return super().predict(images)

    def torch_score(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if self.means_ is None:
            raise InputError(f"{self.who} is not fitted: call fit(batches) first")
        return super().torch_score()

    def _params(self) -> dict:
        return {
            "layer": self.layer,
            "epsilon": self.epsilon,
            "labels": self.labels,
            "n_classes": None if self.classes_ is None else len(self.classes_),
        }


METHODS: dict[str, type[ClassifierOOD]] = {
    "msp": MSPDetector,
    "energy": EnergyDetector,
    "odin": ODINDetector,
    "mahalanobis": MahalanobisDetector,
}


def ood_detector(model: nn.Module, *, method: str = "energy", **kwargs: Any) -> ClassifierOOD:
    """The OOD adapter of ``method`` (``msp``, ``energy``, ``odin``, ``mahalanobis``)."""
    if method not in METHODS:
        raise InputError(f"OOD method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method](model, **kwargs)


def _is_labelled_batch(obj: Any) -> bool:
    """A single ``(images (B, C, H, W), labels (B,))`` tuple rather than an iterable."""
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        return False
    a, b = obj
    if isinstance(b, list):
        b = np.asarray(b)
    return getattr(a, "ndim", 0) == 4 and getattr(b, "ndim", 0) == 1


def _positive(v: Any, what: str, who: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{who}: {what} must be a positive number, got {v!r}") from None
    if not f > 0 or not np.isfinite(f):
        raise InputError(f"{who}: {what} must be a positive number, got {v!r}")
    return f


def _nonnegative(v: Any, what: str, who: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{who}: {what} must be a number >= 0, got {v!r}") from None
    if not f >= 0 or not np.isfinite(f):
        raise InputError(f"{who}: {what} must be a number >= 0, got {v!r}")
    return f
