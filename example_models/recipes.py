"""The model zoo's training recipes: what each family does to a training batch.

A recipe is a dataset (MNIST unless it says otherwise), a width, a seed and a list of phases; a
phase is a number of epochs and one batch transform. Every family is the baseline LeNet-5
recipe (Adam, cosine decay, batch 128) with one change, so that differences between families
come from that change:

- ``plain``: the batch as it is (the baseline, the larger model, the ensemble members);
- ``cutout``: one square patch per image set to 0 (DeVries & Taylor 2017, arXiv:1708.04552);
- ``mixup``: convex combinations of image pairs and of their one-hot labels, with weight drawn from
  Beta(alpha, alpha) (Zhang et al. 2017, arXiv:1710.09412);
- ``fgsm``: half clean, half FGSM-perturbed loss (Goodfellow et al. 2014, arXiv:1412.6572);
- ``pgd``: the loss at a PGD-Linf point only (Madry et al. 2017, arXiv:1706.06083), random start,
  step 2.5 eps / steps, with eps ramped up over the first epoch so that training at eps 0.3 starts;
- ``ibp``: certified training by interval bound propagation (Gowal et al. 2018, arXiv:1810.12715):
  ``kappa`` times the clean cross-entropy plus ``1 - kappa`` times the cross-entropy of the
  worst-case logits that IBP bounds over the eps-ball (the true class at its lower bound, every
  other class at its upper bound), eps and ``1 - kappa`` ramped up over ``ramp_epochs`` epochs.

The adversarial phases reuse the engine's projection and steepest-ascent step
(:mod:`safetycheck.measures.attacks.base`), so training and evaluation agree on what the eps-ball
is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.measures.attacks.base import project, steepest_ascent_step


@dataclass(frozen=True)
class Phase:
    kind: str  # plain | cutout | mixup | fgsm | pgd | ibp
    epochs: int
    params: dict = field(default_factory=dict)

    def describe(self) -> str:
        args = ", ".join(f"{key}={value}" for key, value in self.params.items())
        return f"{self.epochs} epoch(s) {self.kind}" + (f" ({args})" if args else "")


@dataclass(frozen=True)
class Recipe:
    # the study's grouping: baseline, larger, ensemble member, adversarial, augmentation, ordering
    family: str
    phases: tuple[Phase, ...]
    seed: int = 0
    width: int = 1
    # or "linear" (example_models/linear.py), "small_cnn" (example_models/small_cnn.py)
    architecture: str = "lenet"
    # the training and test sets: a safetycheck.io.data key ("mnist", "fashion_mnist", "kmnist")
    dataset: str = "mnist"

    @property
    def epochs(self) -> int:
        return sum(phase.epochs for phase in self.phases)

    def describe(self) -> str:
        return "; ".join(phase.describe() for phase in self.phases)


EPOCHS = 6  # the baseline's; every recipe trains for as many epochs in all
# Adversarial training runs PGD with 3 steps: Madry's 40 would cost 41 passes per batch, days on
# 2 CPU cores; 3 steps of 2.5 eps / 3 reach the ball's surface from any random start (cheap PGD-AT
# of this kind matches full PGD-AT on MNIST: Wong et al. 2020, arXiv:2001.03994).
PGD_TRAIN = {"steps": 3}

ZOO: dict[str, Recipe] = {
    "lenet": Recipe("baseline", (Phase("plain", EPOCHS),)),
    **{
        f"lenet_seed{seed}": Recipe("ensemble member", (Phase("plain", EPOCHS),), seed=seed)
        for seed in range(1, 5)
    },
    "lenet_wide": Recipe("larger", (Phase("plain", EPOCHS),), width=2),
    # Not a zoo family: the non-robust reference for the attack-cascade benchmark.
    "linear": Recipe("linear baseline", (Phase("plain", EPOCHS),), architecture="linear"),
    "cutout": Recipe("augmentation", (Phase("cutout", EPOCHS, {"size": 12}),)),
    "mixup": Recipe("augmentation", (Phase("mixup", EPOCHS, {"alpha": 1.0}),)),
    "fgsm_at_0.1": Recipe("adversarial training", (Phase("fgsm", EPOCHS, {"eps": 0.1}),)),
    "fgsm_at_0.3": Recipe("adversarial training", (Phase("fgsm", EPOCHS, {"eps": 0.3}),)),
    "pgd_at_0.1": Recipe(
        "adversarial training", (Phase("pgd", EPOCHS, {"eps": 0.1, **PGD_TRAIN}),)
    ),
    "pgd_at_0.3": Recipe(
        "adversarial training", (Phase("pgd", EPOCHS, {"eps": 0.3, **PGD_TRAIN}),)
    ),
    # Certified training (issue #20): a small CNN without max pooling, one plain epoch, then IBP
    # at eps 0.2 (twice the radius it is meant to certify, as Gowal et al. train) ramped up over
    # six epochs; more epochs than the others, as IBP training needs (Gowal et al. use 100).
    "ibp_small_cnn": Recipe(
        "certified training",
        (Phase("plain", 1), Phase("ibp", 14, {"eps": 0.2, "kappa": 0.5, "ramp_epochs": 6})),
        architecture="small_cnn",
    ),
    # The article's two orderings, half the epochs each.
    "mixup_then_pgd_at": Recipe(
        "ordering",
        (
            Phase("mixup", EPOCHS // 2, {"alpha": 1.0}),
            Phase("pgd", EPOCHS // 2, {"eps": 0.1, **PGD_TRAIN}),
        ),
    ),
    "pgd_at_then_mixup": Recipe(
        "ordering",
        (
            Phase("pgd", EPOCHS // 2, {"eps": 0.1, **PGD_TRAIN}),
            Phase("mixup", EPOCHS // 2, {"alpha": 1.0}),
        ),
    ),
}

# Example models on other datasets: trained by the same script, not part of the (MNIST) zoo.
EXAMPLES: dict[str, Recipe] = {
    # The baseline recipe, unchanged, on Fashion-MNIST (example_models/fashion_mnist.py).
    "fashion_mnist": Recipe("dataset example", (Phase("plain", EPOCHS),), dataset="fashion_mnist"),
}

# Everything example_models/train.py can train.
RECIPES: dict[str, Recipe] = {**ZOO, **EXAMPLES}

ENSEMBLES = {
    "ensemble3": ["lenet", "lenet_seed1", "lenet_seed2"],
    "ensemble5": ["lenet", "lenet_seed1", "lenet_seed2", "lenet_seed3", "lenet_seed4"],
}


def batch_loss(
    model: nn.Module,
    phase: Phase,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    warmup: float = 1.0,
) -> torch.Tensor:
    """The training loss of one batch under ``phase``; ``warmup`` in (0, 1] scales eps."""
    if phase.kind == "plain":
        return F.cross_entropy(model(images), labels)
    if phase.kind == "cutout":
        return F.cross_entropy(model(cutout(images, phase.params["size"], generator)), labels)
    if phase.kind == "mixup":
        mixed, partner, weight = mixup(images, phase.params["alpha"], generator)
        logits = model(mixed)
        return weight * F.cross_entropy(logits, labels) + (1 - weight) * F.cross_entropy(
            logits, labels[partner]
        )
    eps = phase.params["eps"] * warmup
    if phase.kind == "fgsm":
        adversarial = pgd_points(
            model, images, labels, eps, steps=1, step_size=eps, random_start=False
        )
        return 0.5 * F.cross_entropy(model(images), labels) + 0.5 * F.cross_entropy(
            model(adversarial), labels
        )
    if phase.kind == "pgd":
        steps = phase.params["steps"]
        adversarial = pgd_points(
            model,
            images,
            labels,
            eps,
            steps=steps,
            step_size=2.5 * eps / steps,
            random_start=True,
            generator=generator,
        )
        return F.cross_entropy(model(adversarial), labels)
    if phase.kind == "ibp":
        return ibp_loss(model, images, labels, eps, kappa=1 - (1 - phase.params["kappa"]) * warmup)
    raise ValueError(f"unknown phase kind {phase.kind!r}")


def ibp_loss(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, kappa: float
) -> torch.Tensor:
    """Gowal et al.'s certified training loss: ``kappa`` CE(clean logits) + ``(1 - kappa)``
    CE(worst-case logits over the Linf ball of radius ``eps``, from interval bounds)."""
    from safetycheck.measures.certified import interval_bounds

    lower, upper = interval_bounds(model, images, eps, differentiable=True)
    true_class = F.one_hot(labels, lower.shape[1]).bool()
    worst = torch.where(true_class, lower, upper)
    clean = F.cross_entropy(model(images), labels)
    return kappa * clean + (1 - kappa) * F.cross_entropy(worst, labels)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Each image with one ``size`` x ``size`` square (centre uniform, clipped at the border) set to
    0."""
    n, _, height, width = images.shape
    cy = torch.randint(height, (n, 1, 1), generator=generator)
    cx = torch.randint(width, (n, 1, 1), generator=generator)
    rows, cols = torch.arange(height).view(1, -1, 1), torch.arange(width).view(1, 1, -1)
    inside = ((rows - cy).abs() * 2 < size) & ((cols - cx).abs() * 2 < size)
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def mixup(
    images: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mixed images, partner index, weight of the original): one Beta(alpha, alpha) weight per
    batch."""
    # torch has no seeded Beta sampler; NumPy's, seeded from our generator, keeps runs repeatable.
    weight = float(
        np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator))).beta(
            alpha, alpha
        )
    )
    partner = torch.randperm(len(images), generator=generator)
    return weight * images + (1 - weight) * images[partner], partner, weight


def pgd_points(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    steps: int,
    step_size: float,
    random_start: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The last PGD-Linf iterate for every image (training wants a point per image, not the
    per-sample early exit of the evaluation attacks); parameter gradients are left untouched."""
    x = images.detach()
    if random_start:
        noise = torch.rand(images.shape, generator=generator) * 2 - 1
        x = (x + eps * noise).clamp(0.0, 1.0)
    for _ in range(steps):
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels)
        (grad,) = torch.autograd.grad(loss, x)
        x = project(x.detach() + steepest_ascent_step(grad, "Linf", step_size), images, "Linf", eps)
    return x.detach()
