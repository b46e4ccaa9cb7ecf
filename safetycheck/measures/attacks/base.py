"""What every attack shares: the result type, input validation, gradients and random starts.

An attack is a frozen dataclass whose fields are its threat model (norm, eps, steps, step size,
restarts, seed) and whose ``__call__(model, images, labels)`` returns an :class:`AttackResult`.
Attacks never modify their inputs, compute no parameter gradients, run the model in eval mode
(restoring every submodule's mode afterwards) on the model's device, and are deterministic for a
given seed: random starts are drawn per sample from the sample's own content, so attacking a
permuted batch gives the permuted result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.core.errors import ConfigError
from safetycheck.io.models import model_device

NORMS = ("Linf", "L2")
# Pixel values live in [0, 1]; an Linf ball of radius 1 already holds every image, and an L2 ball
# of radius 28 (the diagonal of the 784-dimensional unit cube) does too.
MAX_EPS = {"Linf": 1.0, "L2": 28.0}


@dataclass(frozen=True)
class AttackResult:
    """``adversarial``: (N, 1, 28, 28) points inside the eps-ball and [0, 1];
    ``fooled``: (N,) bool, True where some iterate of some restart was misclassified (the returned
    point is then a misclassified one); ``forward_passes``: model evaluations spent, in images."""

    adversarial: torch.Tensor
    fooled: torch.Tensor
    forward_passes: int = 0


def validate_threat(
    norm: str,
    eps: float,
    steps: int | None = None,
    step_size: float | None = None,
    restarts: int | None = None,
) -> None:
    """Raise :class:`ConfigError` naming the parameter and its valid range."""
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; valid norms are {', '.join(NORMS)}.")
    if (
        isinstance(eps, bool)
        or not isinstance(eps, (int, float))
        or not (0.0 <= eps <= MAX_EPS[norm])
    ):
        raise ConfigError(
            f"eps={eps!r} is outside its valid range [0, {MAX_EPS[norm]}] for the {norm} norm "
            f"(pixel units, images in [0, 1])."
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"steps={steps!r} must be a positive integer (1 or more).")
    if step_size is not None and (
        isinstance(step_size, bool)
        or not isinstance(step_size, (int, float))
        or not 0 < step_size <= MAX_EPS[norm]
    ):
        raise ConfigError(
            f"step_size={step_size!r} must be a number in (0, {MAX_EPS[norm]}] for the {norm} norm."
        )
    if restarts is not None and (
        isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1
    ):
        raise ConfigError(f"restarts={restarts!r} must be a positive integer (1 or more).")


def validate_batch(images: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ConfigError(f"images must be a float tensor (N, C, H, W); got {_describe(images)}.")
    if (
        not isinstance(labels, torch.Tensor)
        or labels.dim() != 1
        or labels.shape[0] != images.shape[0]
    ):
        raise ConfigError(
            f"labels must be an int64 tensor of shape ({images.shape[0]},), one per image; "
            f"got {_describe(labels)}."
        )
    if labels.dtype != torch.int64:
        raise ConfigError(f"labels must be int64 class indices; got {labels.dtype}.")


def prepare_batch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """Validate a batch and move it to the model's device: returns ``(images, labels, adversarial)``
    with ``adversarial`` a fresh copy of the images that the attack fills in (never the input)."""
    validate_batch(images, labels)
    device = model_device(model)
    images = images.detach().to(device)
    return images, labels.to(device), images.clone()


def empty_result(images: torch.Tensor) -> AttackResult:
    return AttackResult(images.clone(), torch.zeros(0, dtype=torch.bool, device=images.device), 0)


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def input_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at ``x`` and the gradient of the summed cross-entropy with respect to ``x``.

    The summed (not mean) loss makes each sample's gradient independent of the batch size.
    """
    return loss_gradient(
        model, x, labels, lambda logits, y: F.cross_entropy(logits, y, reduction="none")
    )[::2]


def loss_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, loss_fn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (N, C), per-sample loss (N,) and the gradient of the summed loss with respect to
    ``x``.

    ``loss_fn(logits, labels)`` returns one loss per sample. A model whose output does not depend
    differentiably on its input (a hard threshold, ``argmax``, a detached preprocessing step) gets a
    zero gradient instead of an autograd error: that is the gradient masking the diagnostics report.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = loss_fn(logits, labels)
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
        else:
            grad = None
    grad = torch.zeros_like(x) if grad is None else grad.detach()
    return logits.detach(), loss.detach(), grad


@torch.no_grad()
def clean_outcome(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate the clean point, the first iterate of every attack: (N,) bool misclassified and
    (N,) float loss (cross-entropy unless ``loss_fn(logits, labels)`` is given). Checks the labels
    against the model's number of classes."""
    logits = model(images)
    check_label_range(labels, logits)
    loss = (
        F.cross_entropy(logits.float(), labels, reduction="none")
        if loss_fn is None
        else loss_fn(logits, labels)
    )
    return logits.argmax(dim=1) != labels, loss.float()


def check_label_range(labels: torch.Tensor, logits: torch.Tensor) -> None:
    """Raise :class:`ConfigError` if a label is not a valid class index for these logits."""
    if logits.dim() != 2:
        raise ConfigError(
            f"the model returned shape {tuple(logits.shape)}; attacks need logits of "
            "shape (N, classes)."
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ConfigError(
            f"labels must lie in [0, {logits.shape[1] - 1}] (the model has {logits.shape[1]} "
            f"classes); got values from {int(labels.min())} to {int(labels.max())}."
        )


def per_sample_generators(images: torch.Tensor, seed: int, stream: int) -> list[torch.Generator]:
    """One CPU generator per sample, seeded by (seed, stream, the sample's bytes)."""
    data = images.detach().to("cpu", torch.float32).contiguous().numpy()
    generators = []
    for sample in data:
        digest = hashlib.blake2b(
            sample.tobytes(), digest_size=8, key=f"{seed}:{stream}".encode()
        ).digest()
        generators.append(
            torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
        )
    return generators


def random_start(
    images: torch.Tensor, norm: str, eps: float, seed: int, stream: int
) -> torch.Tensor:
    """A point drawn uniformly in the eps-ball around each image (Linf: uniform per pixel;
    L2: uniform in the ball), clipped to [0, 1]."""
    generators = per_sample_generators(images, seed, stream)
    shape = images.shape[1:]
    if norm == "Linf":
        noise = torch.stack([torch.rand(shape, generator=g) * 2 - 1 for g in generators]) * eps
    else:
        directions = torch.stack([torch.randn(shape, generator=g) for g in generators])
        radii = torch.stack([torch.rand((), generator=g) for g in generators]) ** (
            1.0 / shape.numel()
        )
        directions = directions / directions.flatten(1).norm(dim=1).clamp_min(1e-12).view(
            -1, 1, 1, 1
        )
        noise = directions * (radii * eps).view(-1, 1, 1, 1)
    return (images + noise.to(images.device, images.dtype)).clamp(0.0, 1.0)


def project(x: torch.Tensor, images: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Project ``x`` onto the eps-ball around ``images`` intersected with [0, 1]."""
    delta = x - images
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / norms).clamp(max=1.0).view(-1, 1, 1, 1)
    return (images + delta).clamp(0.0, 1.0)


def steepest_ascent_step(grad: torch.Tensor, norm: str, step_size: float) -> torch.Tensor:
    """The step of the given size that increases a linearised loss most under the norm."""
    if norm == "Linf":
        return step_size * grad.sign()
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return step_size * grad / norms
