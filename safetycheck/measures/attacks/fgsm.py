"""The fast gradient sign method (Goodfellow, Shlens and Szegedy 2015, "Explaining and Harnessing
Adversarial Examples", arXiv:1412.6572): one step of size eps along the sign of the input gradient
of the cross-entropy, under the Linf norm.

The cheapest attack, and the first of every cascade: on an undefended model it breaks most of the
samples that will break at all for two model evaluations each, and the gradient attacks behind it
only pay for the rest. Its single step also serves the trustworthiness diagnostics: an iterative
attack that does worse than FGSM at the same eps is a symptom of masked gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.io.models import evaluation_mode
from safetycheck.measures.attacks.base import (
    AttackResult,
    check_label_range,
    empty_result,
    loss_gradient,
    prepare_batch,
    validate_threat,
)


@dataclass(frozen=True)
class FGSM:
    """Linf radius ``eps`` in pixel units (images in [0, 1]); no randomness, so no seed."""

    eps: float

    def __post_init__(self):
        validate_threat("Linf", self.eps)

    norm = "Linf"
    name = "fgsm"

    def describe(self) -> str:
        return f"FGSM-Linf eps={self.eps:g} (one signed gradient step)"

    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> AttackResult:
        """Attack ``images`` (N, C, H, W) in [0, 1] with true ``labels`` (N,) int64.

        A sample is fooled if the clean image or the stepped image is misclassified; the returned
        point is then the misclassified one, else the stepped image.
        """
        images, labels, _ = prepare_batch(model, images, labels)
        if len(labels) == 0:
            return empty_result(images)
        with evaluation_mode(model):
            logits, _, grad = loss_gradient(model, images, labels, _checked_cross_entropy)
            clean_wrong = logits.argmax(dim=1) != labels
            if self.eps == 0:
                return AttackResult(images.clone(), clean_wrong, len(labels))
            stepped = (images + self.eps * grad.sign()).clamp(0.0, 1.0)
            with torch.no_grad():
                stepped_wrong = model(stepped).argmax(dim=1) != labels
        adversarial = torch.where(clean_wrong.view(-1, 1, 1, 1), images, stepped)
        return AttackResult(adversarial, clean_wrong | stepped_wrong, 2 * len(labels))


def _checked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # FGSM's only gradient pass is also its clean pass: check the labels before torch indexes with
    # them.
    check_label_range(labels, logits)
    return F.cross_entropy(logits.float(), labels, reduction="none")
