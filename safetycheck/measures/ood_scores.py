"""OOD scores: from logits (MSP, max logit, energy, ODIN) and from penultimate features
(Mahalanobis, ViM, KNN), plus the extraction of those features from a model.

Sign convention, for every score here: **higher means more in-distribution**. A detector accepts
an input when its score is above a threshold, and MNIST test is the positive class of every metric
(:mod:`safetycheck.measures.ood_metrics`). Scores are returned raw, as float64 tensors of shape
(N,); they are never squashed, since only their order matters and squashing destroys it by
saturating.

Penultimate features come from the model's ``features(x)`` method when it has one (a method, not
a submodule: torchvision's ``vgg.features`` is a convolutional trunk), otherwise from a forward
hook on the input of the last ``nn.Linear`` the forward pass calls. Where the output of that layer
is the model's logits, the layer's weight and bias are the classification head ViM needs.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.core.errors import ConfigError, ModelContractError
from safetycheck.io.models import Ensemble, evaluation_mode, model_device

# ---------------------------------------------------------------------------------------------
# Scores from logits


def msp(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability, in [1/C, 1] (Hendrycks & Gimpel, ICLR 2017).

    ``logits`` (N, C) -> (N,) float64; higher = more in-distribution.
    """
    return F.softmax(_as_logits(logits), dim=1).amax(dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """Maximum logit (Hendrycks et al., "Scaling out-of-distribution detection for real-world
    settings", ICML 2022). ``logits`` (N, C) -> (N,) float64; higher = more in-distribution."""
    return _as_logits(logits).amax(dim=1)


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy, ``T * logsumexp(logits / T)`` (Liu et al., "Energy-based
    out-of-distribution detection", NeurIPS 2020).

    The paper's energy is ``E(x) = -T logsumexp(f(x)/T)`` and it flags OOD where E is high; this
    returns ``-E(x)``, so that higher = more in-distribution. ``logits`` (N, C) -> (N,) float64.
    """
    _positive(temperature, "temperature")
    return temperature * torch.logsumexp(_as_logits(logits) / temperature, dim=1)


def odin(
    model: nn.Module,
    images: torch.Tensor,
    temperature: float = 1000.0,
    epsilon: float = 0.0014,
    batch_size: int = 500,
) -> torch.Tensor:
    """ODIN (Liang, Li & Srikant, ICLR 2018): the maximum softmax probability at temperature T
    after a small input step that raises it.

    ``x' = clip(x + epsilon * sign(grad_x log max softmax(f(x) / T)), 0, 1)``; the score is
    ``max softmax(f(x') / T)``, computed in float64 because at T=1000 it differs from 1/C only in
    the fourth decimal. The defaults are the paper's CIFAR values (T=1000, epsilon=0.0014, here in
    pixel units of [0, 1] images); the paper tunes both on held-out OOD data, which a gate cannot
    do, so this score is off by default. Needs input gradients: runs in eval mode with autograd on,
    on the model's device. For an :class:`~safetycheck.io.models.Ensemble`, the mean of its members'
    scores. ``images`` (N, 1, 28, 28) in [0, 1] -> (N,) float64, on the CPU.
    """
    _positive(temperature, "temperature")
    if (
        not isinstance(epsilon, (int, float))
        or isinstance(epsilon, bool)
        or not 0.0 <= epsilon <= 1.0
    ):
        raise ConfigError(f"ODIN epsilon={epsilon!r} must lie in [0, 1] (pixel units).")
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    return torch.stack(
        [_odin_member(m, images, temperature, epsilon, batch_size) for m in members]
    ).mean(dim=0)


def _odin_member(
    model: nn.Module, images: torch.Tensor, temperature: float, epsilon: float, batch_size: int
) -> torch.Tensor:
    device, scores = model_device(model), []
    # Not io.predict: ODIN needs the gradient of each batch's output with respect to its input.
    with evaluation_mode(model), torch.enable_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device).detach().requires_grad_(True)
            log_top = F.log_softmax(model(x).double() / temperature, dim=1).amax(dim=1)
            (grad,) = torch.autograd.grad(log_top.sum(), x)
            shifted = (x.detach() + epsilon * grad.sign()).clamp_(0.0, 1.0)
            with torch.no_grad():
                scores.append(
                    F.softmax(model(shifted).double() / temperature, dim=1).amax(dim=1).cpu()
                )
    return torch.cat(scores)


def _as_logits(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        what = (
            f"a {logits.dtype} tensor of shape {tuple(logits.shape)}"
            if isinstance(logits, torch.Tensor)
            else f"a {type(logits).__name__}"
        )
        raise ConfigError(f"logits must be a float tensor of shape (N, C); got {what}.")
    return logits.detach().to(torch.float64)


def _positive(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}={value!r} must be a positive number.")


# ---------------------------------------------------------------------------------------------
# Penultimate features


@dataclass(frozen=True)
class MemberOutputs:
    """One model's (or one ensemble member's) outputs on a set of images, on the CPU.

    ``logits`` (N, C) float32. ``features`` (N, D) float32 penultimate activations, or None with
    ``features_missing`` saying why. ``head`` (W (C, D), b (C,)) float64 where the logits are
    exactly ``features @ W.T + b``, else None with ``head_missing`` saying why.
    """

    logits: torch.Tensor
    features: torch.Tensor | None
    feature_source: str
    head: tuple[torch.Tensor, torch.Tensor] | None
    features_missing: str | None = None
    head_missing: str | None = None


def _features_method(model: nn.Module):
    method = getattr(model, "features", None)
    # A bound method only: an ``nn.Module`` called ``features`` is a trunk, not the penultimate
    # layer.
    return method if inspect.ismethod(method) else None


def member_outputs(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> MemberOutputs:
    """Logits and penultimate features of one (non-ensemble) model on ``images``.

    Runs in eval mode (:func:`~safetycheck.io.models.evaluation_mode`) under
    ``torch.inference_mode``, in batches of ``batch_size`` on the model's device. ``images`` (N, 1,
    28, 28) in [0, 1].
    """
    device = model_device(model)
    method = _features_method(model)
    names = {
        id(module): name for name, module in model.named_modules() if isinstance(module, nn.Linear)
    }
    last: dict = {}

    def remember(module, inputs, output):
        last.update(module=module, input=inputs[0], output=output)

    handles = []
    try:
        for module in model.modules():
            if isinstance(module, nn.Linear):
                handles.append(module.register_forward_hook(remember))
    except RuntimeError:  # TorchScript modules refuse Python hooks
        handles = []
    logit_batches: list[torch.Tensor] = []
    feature_batches: list[torch.Tensor] = []
    head_ok, layer = True, None
    feats: torch.Tensor | None
    use_method = method is not None  # until the first batch shows features() is the head's input
    try:
        # Not io.predict: each batch also reads its head input (a hook) and its features(x).
        with evaluation_mode(model), torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                x = images[start : start + batch_size].to(device)
                last.clear()
                out = model(x)
                if not isinstance(out, torch.Tensor) or out.dim() != 2:
                    raise ModelContractError(
                        f"the model returned {type(out).__name__} "
                        f"{tuple(getattr(out, 'shape', ()))}; expected logits of shape (N, C)."
                    )
                logit_batches.append(out.float().cpu())
                hooked, head_input, head_output = (
                    last.get("module"),
                    last.get("input"),
                    last.get("output"),
                )
                if start == 0:
                    layer = hooked
                elif hooked is not layer:
                    raise ModelContractError(
                        "the last nn.Linear the model calls changes between batches; "
                        "give the model a features(x) method returning penultimate activations."
                    )
                if start == 0 and method is not None:
                    feats = _checked_features(method(x), x.shape[0])
                    # Where features() is exactly the head's input, later batches read it from the
                    # hook and skip a second pass through the trunk.
                    use_method = not (hooked is not None and _close(head_input, feats))
                elif use_method:
                    feats = _checked_features(method(x), x.shape[0])
                else:
                    feats = head_input
                if feats is not None:
                    feature_batches.append(feats.flatten(1).float().cpu())
                    head_ok = (
                        head_ok
                        and hooked is not None
                        and _is_head(head_input, head_output, feats, out)
                    )
    finally:
        for handle in handles:
            handle.remove()
    logits = torch.cat(logit_batches) if logit_batches else torch.empty(0, 0)
    if not feature_batches:
        reason = (
            "the model has neither a features(x) method nor an nn.Linear layer whose input could "
            "serve as penultimate features (TorchScript models hide their layers); add a "
            "features(x) method returning (N, D) penultimate activations"
        )
        return MemberOutputs(logits, None, "", None, features_missing=reason, head_missing=reason)
    features = torch.cat(feature_batches)
    if not torch.isfinite(features).all():
        raise ModelContractError(
            "the model's penultimate features hold NaN or inf on valid images; fix the model."
        )
    layer_name = names.get(id(layer), "") or "the last nn.Linear"
    source = "features()" if method is not None else f"input of nn.Linear {layer_name!r}"
    if head_ok:
        assert layer is not None, "a head was recognised, so the last nn.Linear was hooked"
        head = (layer.weight.detach().double().cpu(), _bias(layer).cpu())
        return MemberOutputs(logits, features, source, head)
    why = (
        f"the model's logits are not the output of its last nn.Linear ({layer_name}) "
        f"applied to {source}"
        if layer is not None
        else "the model has no nn.Linear classification head"
    )
    return MemberOutputs(logits, features, source, None, head_missing=why)


def _bias(layer: nn.Linear) -> torch.Tensor:
    if layer.bias is None:
        return torch.zeros(layer.out_features, dtype=torch.float64)
    return layer.bias.detach().double()


def _checked_features(feats, n: int) -> torch.Tensor:
    if not isinstance(feats, torch.Tensor) or feats.dim() < 2 or feats.shape[0] != n:
        raise ModelContractError(
            f"features(x) returned {type(feats).__name__} {tuple(getattr(feats, 'shape', ()))} for "
            f"a batch of {n}; return a tensor (N, D) of penultimate activations."
        )
    return feats


def _close(a, b) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5)
    )


def _is_head(layer_input, layer_output, feats, logits) -> bool:
    """True where ``logits`` is the hooked layer applied to ``feats``: its output is the logits
    and its input the features (checked numerically, so a scaled or post-processed output fails)."""
    return _close(layer_output, logits) and _close(layer_input, feats)


def model_outputs(
    model: nn.Module, images: torch.Tensor, batch_size: int = 500
) -> tuple[torch.Tensor, list[MemberOutputs]]:
    """(the model's own logits (N, C) float32, [outputs of each member]) on ``images``.

    A plain model is its own single member. For an :class:`~safetycheck.io.models.Ensemble` each
    member runs once and the ensemble's logits are formed from theirs, as its forward does.
    """
    if isinstance(model, Ensemble):
        members = [member_outputs(member, images, batch_size) for member in model.members]
        log_probs = torch.stack([F.log_softmax(m.logits, dim=1) for m in members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(members)), members
    single = member_outputs(model, images, batch_size)
    return single.logits, [single]


def join_outputs(
    parts: list[tuple[torch.Tensor, list[MemberOutputs]]],
) -> tuple[torch.Tensor, list[MemberOutputs]]:
    """:func:`model_outputs` on consecutive slices of a set of images (a torchrun job's ranks'),
    as on the whole set: logits and features concatenated in order; the head and the reasons
    for missing features, which come from the model rather than the images, from the first
    slice."""
    if len(parts) == 1:
        return parts[0]
    logits = torch.cat([part[0] for part in parts])
    members = []
    for index, first in enumerate(parts[0][1]):
        slices = [part[1][index] for part in parts]
        features = (
            None
            if any(m.features is None for m in slices)
            else torch.cat([m.features for m in slices])  # type: ignore[misc]
        )
        members.append(
            dataclasses.replace(
                first, logits=torch.cat([m.logits for m in slices]), features=features
            )
        )
    return logits, members


# ---------------------------------------------------------------------------------------------
# Scores from features, fitted on in-distribution training features


class Detector(Protocol):
    """A fitted feature-based OOD detector (:class:`Mahalanobis`, :class:`ViM`, :class:`KNN`).

    ``score(features, logits)`` takes one model's (or ensemble member's) penultimate features
    (N, D) and logits (N, C) on the same images and returns (N,) float64 scores, higher = more
    in-distribution. Every detector takes both, whether or not it reads the logits, so that the
    caller treats them alike.
    """

    def score(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class Mahalanobis:
    """Mahalanobis score with class means and one shared (tied) covariance (Lee, Lee, Lee & Shin,
    "A simple unified framework for detecting out-of-distribution samples and adversarial
    attacks", NeurIPS 2018), on the penultimate layer only, without the paper's input
    preprocessing or layer ensemble (both tuned on OOD data).

    score(x) = -min_c (x - mu_c)^T Sigma^+ (x - mu_c): minus the squared distance to the nearest
    class mean; higher = more in-distribution. Sigma^+ is a pseudo-inverse, since ReLU features
    often have dead units and so a singular covariance.
    """

    means: torch.Tensor  # (C, D) float64
    precision: torch.Tensor  # (D, D) float64

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor) -> Mahalanobis:
        """``features`` (N, D), ``labels`` (N,) int64 class indices (the true training labels)."""
        x = features.double()
        classes = torch.unique(labels)
        means = torch.stack([x[labels == c].mean(dim=0) for c in classes])
        centred = x - means[torch.searchsorted(classes, labels)]
        covariance = centred.T @ centred / x.shape[0]
        return cls(means, torch.linalg.pinv(covariance, hermitian=True))

    def score(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) minus the squared Mahalanobis distance to the nearest class mean (``logits`` are
        not read)."""
        x = features.double()
        projected = x @ self.precision
        distances = (
            (projected * x).sum(dim=1, keepdim=True)
            - 2.0 * projected @ self.means.T
            + ((self.means @ self.precision) * self.means).sum(dim=1)
        )
        return -distances.amin(dim=1)


@dataclass(frozen=True)
class ViM:
    """Virtual-logit matching (Wang, Li, Feng & Zhang, "ViM: Out-of-distribution with
    virtual-logit matching", CVPR 2022).

    With the head ``logits = W x + b``, the origin ``u = -pinv(W) b`` and the principal subspace
    spanned by the top ``principal_dim`` eigenvectors of the training features' uncentred
    (about u) covariance, the residual norm ``||(x - u) projected on the rest||`` is scaled by
    ``alpha = mean max-logit / mean residual norm`` on the training set, and
    score(x) = logsumexp(logits) - alpha * residual(x); higher = more in-distribution.
    ``principal_dim`` defaults as in the authors' code: 1000 for D >= 2048, 512 for D >= 768,
    else D // 2 (42 for LeNet's 84 features).
    """

    origin: torch.Tensor  # (D,)
    residual_basis: torch.Tensor  # (D, D - principal_dim)
    alpha: float
    principal_dim: int

    @staticmethod
    def default_principal_dim(feature_dim: int) -> int:
        return 1000 if feature_dim >= 2048 else 512 if feature_dim >= 768 else feature_dim // 2

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        logits: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        principal_dim: int | None = None,
    ) -> ViM:
        x = features.double()
        dim = x.shape[1]
        principal_dim = cls.default_principal_dim(dim) if principal_dim is None else principal_dim
        if not 1 <= principal_dim < dim:
            raise ConfigError(
                f"ViM principal_dim={principal_dim} must lie in [1, {dim - 1}] "
                f"for {dim}-dimensional features."
            )
        origin = -torch.linalg.pinv(weight.double()) @ bias.double()
        centred = x - origin
        _, vectors = torch.linalg.eigh(centred.T @ centred / x.shape[0])  # eigenvalues ascending
        basis = vectors[:, : dim - principal_dim]
        residual = (centred @ basis).norm(dim=1)
        alpha = float(logits.double().amax(dim=1).mean() / residual.mean().clamp_min(1e-12))
        return cls(origin, basis, alpha, principal_dim)

    def score(self, features: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) energy of ``logits`` minus alpha times the residual norm of ``features``."""
        if logits is None:
            raise ConfigError("ViM scores need the logits of the same images as the features.")
        residual = ((features.double() - self.origin) @ self.residual_basis).norm(dim=1)
        return torch.logsumexp(logits.double(), dim=1) - self.alpha * residual


@dataclass(frozen=True)
class KNN:
    """Deep nearest neighbours (Sun, Ming, Zhu & Li, "Out-of-distribution detection with deep
    nearest neighbors", ICML 2022): score(x) = -(Euclidean distance from x/||x|| to its k-th
    nearest L2-normalised training feature); higher = more in-distribution.

    The bank is a seeded subset of the training features (10000 of MNIST's 60000 by default) to
    keep the search cheap on a CPU; the paper shows the method holds up under such subsampling
    (it uses 1% of ImageNet with k=10). ``k`` = 50 as in its CIFAR-10 experiments.
    """

    bank: torch.Tensor  # (M, D) float32, unit rows
    k: int

    @classmethod
    def fit(cls, features: torch.Tensor, k: int = 50) -> KNN:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= features.shape[0]:
            raise ConfigError(
                f"KNN k={k!r} must be an integer in [1, {features.shape[0]}] "
                "(the size of the bank)."
            )
        return cls(F.normalize(features.float(), dim=1), k)

    def score(
        self, features: torch.Tensor, logits: torch.Tensor | None = None, chunk: int = 1024
    ) -> torch.Tensor:
        """(N,) minus the distance to the k-th nearest bank feature, ``chunk`` queries at a time
        (``logits`` are not read)."""
        queries, scores = F.normalize(features.float(), dim=1), []
        for start in range(0, queries.shape[0], chunk):
            similarity = queries[start : start + chunk] @ self.bank.T
            kth = similarity.topk(self.k, dim=1).values[:, -1].double()
            # For unit vectors |a - b|^2 = 2 - 2 a.b
            scores.append(-(2.0 - 2.0 * kth).clamp_min(0.0).sqrt())
        return torch.cat(scores)
