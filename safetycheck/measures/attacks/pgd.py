"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks", arXiv:1706.06083), under the Linf or L2 norm, with random starts and restarts.

Success is tracked at every iterate, not just the last: a sample counts as fooled as soon as any
iterate of any restart is misclassified, and it then leaves the batch, so later steps and restarts
only pay for the samples still standing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.io.models import evaluation_mode
from safetycheck.measures.attacks.base import (
    AttackResult,
    clean_outcome,
    empty_result,
    loss_gradient,
    prepare_batch,
    project,
    random_start,
    steepest_ascent_step,
    validate_threat,
)


@dataclass(frozen=True)
class PGD:
    """The threat model and schedule; defaults are Madry's MNIST challenge (40 steps of 0.01)."""

    eps: float
    norm: str = "Linf"
    steps: int = 40
    step_size: float = 0.01
    restarts: int = 1
    random_start: bool = True
    seed: int = 0

    def __post_init__(self):
        validate_threat(self.norm, self.eps, self.steps, self.step_size, self.restarts)

    @property
    def name(self) -> str:
        return f"pgd_{self.norm.lower()}"

    def describe(self) -> str:
        start = "random start" if self.random_start else "no random start"
        return (
            f"PGD-{self.norm} eps={self.eps:g}, {self.steps} steps of {self.step_size:g}, "
            f"{self.restarts} restart(s), {start}, seed {self.seed}"
        )

    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> AttackResult:
        """Attack ``images`` (N, C, H, W) in [0, 1] with true ``labels`` (N,) int64.

        The clean point counts as an iterate: a sample misclassified as given is fooled at once.
        Survivors get the point of highest cross-entropy seen (the clean point included), so the
        loss at the returned point is never below the clean loss.
        """
        images, labels, adversarial = prepare_batch(model, images, labels)
        if len(labels) == 0:
            return empty_result(images)
        with evaluation_mode(model):
            fooled, best_loss = clean_outcome(model, images, labels)
            passes = len(labels)
            if self.eps > 0:
                for restart in range(self.restarts):
                    active = (~fooled).nonzero().squeeze(1)
                    if len(active) == 0:
                        break
                    passes += self._one_run(
                        model, images, labels, active, restart, adversarial, fooled, best_loss
                    )
        return AttackResult(adversarial, fooled, passes)

    def _one_run(
        self, model, images, labels, active, restart, adversarial, fooled, best_loss
    ) -> int:
        """Attack ``images[active]`` from a fresh start; write the points found into the outputs."""
        x0, y = images[active], labels[active]
        x = (
            random_start(x0, self.norm, self.eps, self.seed, restart)
            if self.random_start
            else x0.clone()
        )
        passes = 0
        for step in range(self.steps + 1):
            if step < self.steps:
                logits, loss, grad = loss_gradient(model, x, y, _cross_entropy)
            else:
                with torch.no_grad():
                    logits = model(x)
                loss = _cross_entropy(logits, y)
            passes += len(y)
            # The highest-loss point so far is what survivors return.
            better = loss > best_loss[active]
            if better.any():
                adversarial[active[better]] = x[better]
                best_loss[active[better]] = loss[better]
            # Samples misclassified at this iterate are done: keep the point and drop them.
            hit = logits.argmax(dim=1) != y
            if hit.any():
                adversarial[active[hit]] = x[hit]
                fooled[active[hit]] = True
                keep = ~hit
                active, x0, y, x = active[keep], x0[keep], y[keep], x[keep]
                if step < self.steps:
                    grad = grad[keep]
                if len(y) == 0:
                    break
            if step < self.steps:
                x = project(
                    x + steepest_ascent_step(grad, self.norm, self.step_size),
                    x0,
                    self.norm,
                    self.eps,
                )
        return passes


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction="none")
