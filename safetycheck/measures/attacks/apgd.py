"""Auto-PGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", arXiv:2003.01690), under the Linf or L2 norm, with the
cross-entropy or the difference-of-logits-ratio (DLR) loss, untargeted or targeted (APGD-T).

APGD is PGD without a step size to tune: it starts at ``2 * eps`` and halves the step of each
sample at checkpoints ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` when, since the previous checkpoint, fewer than
``rho = 0.75`` of its steps increased the loss, or when the step was not halved at the previous
checkpoint and the best loss has not moved. After halving, the sample restarts from its best
point. Each step has momentum 0.75 (Section 3.1 of the paper):

    z = P(x_k + eta * s(grad)),   x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1})).

The DLR loss, ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` with ``z_pi`` the sorted logits, is
invariant to shifting and rescaling the logits, so it cannot be fooled by saturated softmax
outputs the way cross-entropy can. APGD-T maximises the targeted DLR loss
``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` once per target class ``t``, the
``n_target_classes`` most likely wrong classes at the clean point, in turn.

As in every attack here, success is tracked at every iterate (the clean point included) and fooled
samples leave the batch at once; survivors return their highest-loss point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.core.errors import ConfigError
from safetycheck.io.models import evaluation_mode
from safetycheck.measures.attacks.base import (
    AttackResult,
    check_label_range,
    empty_result,
    loss_gradient,
    prepare_batch,
    project,
    random_start,
    steepest_ascent_step,
    validate_threat,
)

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75
RHO = 0.75  # share of loss-increasing steps below which the step size is halved
DLR_EPSILON = 1e-12


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j`` at which APGD may halve its step size (Croce and Hein 2020, eq. 4)."""
    fractions = [0.0, 0.22]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    points = sorted(
        {math.ceil(round(p * steps, 9)) for p in fractions if 0 < p < 1.0}
    )  # 0.57 * 100 is 57.0000001 in floats
    return [w for w in points if 0 < w < steps]


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """(N,) cross-entropy; with ``targets``, minus the cross-entropy of the target class."""
    if targets is None:
        return F.cross_entropy(logits.float(), labels, reduction="none")
    return -F.cross_entropy(logits.float(), targets, reduction="none")


def dlr_loss(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """(N,) DLR loss (untargeted), or targeted DLR towards ``targets``; needs at least 4 classes
    for the targeted form and 3 for the untargeted one."""
    logits = logits.float()
    ordered, _ = logits.sort(dim=1)
    true = logits.gather(1, labels[:, None]).squeeze(1)
    if targets is None:
        top_is_true = logits.argmax(dim=1) == labels
        best_other = torch.where(top_is_true, ordered[:, -2], ordered[:, -1])
        return -(true - best_other) / (ordered[:, -1] - ordered[:, -3] + DLR_EPSILON)
    target = logits.gather(1, targets[:, None]).squeeze(1)
    return -(true - target) / (
        ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + DLR_EPSILON
    )


@dataclass(frozen=True)
class APGD:
    """The threat model and budget; the defaults are AutoAttack's (100 steps, one restart).

    ``targeted=True`` gives APGD-T: the targeted DLR loss (whatever ``loss`` says is ignored),
    ``steps`` iterations and ``restarts`` restarts for each of the ``n_target_classes`` most
    likely wrong classes in turn.
    """

    eps: float
    norm: str = "Linf"
    loss: str = "ce"
    steps: int = 100
    restarts: int = 1
    seed: int = 0
    targeted: bool = False
    n_target_classes: int = 9

    def __post_init__(self):
        validate_threat(self.norm, self.eps, self.steps, restarts=self.restarts)
        if self.loss not in LOSSES:
            raise ConfigError(
                f"unknown APGD loss {self.loss!r}; valid losses are {', '.join(LOSSES)}."
            )
        if (
            isinstance(self.n_target_classes, bool)
            or not isinstance(self.n_target_classes, int)
            or not 1 <= self.n_target_classes <= 9
        ):
            raise ConfigError(
                f"n_target_classes={self.n_target_classes!r} must be an integer in [1, 9] "
                f"(the wrong classes of a 10-class model)."
            )

    @property
    def name(self) -> str:
        return "apgd_t" if self.targeted else f"apgd_{self.loss}"

    def describe(self) -> str:
        kind = (
            f"APGD-T (targeted DLR, {self.n_target_classes} target classes)"
            if self.targeted
            else f"APGD-{self.loss.upper()}"
        )
        return (
            f"{kind}-{self.norm} eps={self.eps:g}, {self.steps} steps, {self.restarts} restart(s), "
            f"seed {self.seed}"
        )

    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> AttackResult:
        """Attack ``images`` (N, C, H, W) in [0, 1] with true ``labels`` (N,) int64."""
        images, labels, adversarial = prepare_batch(model, images, labels)
        device = images.device
        if len(labels) == 0:
            return empty_result(images)
        with evaluation_mode(model):
            with torch.no_grad():
                clean_logits = model(images)
            check_label_range(labels, clean_logits)
            fooled = clean_logits.argmax(dim=1) != labels
            passes = len(labels)
            if self.eps == 0:
                return AttackResult(adversarial, fooled, passes)
            if self.targeted:
                runs = self._target_runs(clean_logits, labels)
                # Survivors return the highest-loss point of any run, each run judged by its own
                # loss.
                best_loss = torch.full((len(labels),), -math.inf, device=device)
            else:
                runs = [(None, stream) for stream in range(self.restarts)]
                # The clean point is the first candidate, so the returned loss is never below it.
                best_loss = self._loss(clean_logits, labels, None)
            for targets, stream in runs:
                active = (~fooled).nonzero().squeeze(1)
                if len(active) == 0:
                    break
                passes += self._one_run(
                    model, images, labels, targets, active, stream, adversarial, fooled, best_loss
                )
        return AttackResult(adversarial, fooled, passes)

    def _target_runs(self, clean_logits: torch.Tensor, labels: torch.Tensor) -> list:
        """(targets (N,), stream) per target rank and restart: rank k is each sample's k-th most
        likely wrong class at the clean point."""
        if clean_logits.shape[1] < 4:
            raise ConfigError(
                "APGD-T needs a model with at least 4 classes; this one has "
                f"{clean_logits.shape[1]}."
            )
        wrong = clean_logits.float().scatter(1, labels[:, None], -math.inf)
        ranked = wrong.argsort(dim=1, descending=True)
        n_targets = min(self.n_target_classes, clean_logits.shape[1] - 1)
        return [
            (ranked[:, rank], 1000 * rank + restart)
            for rank in range(n_targets)
            for restart in range(self.restarts)
        ]

    def _loss(self, logits, labels, targets):
        if targets is not None:
            return dlr_loss(logits, labels, targets)
        return (
            dlr_loss(logits, labels) if self.loss == "dlr" else cross_entropy_loss(logits, labels)
        )

    def _one_run(
        self, model, images, labels, targets, active, stream, adversarial, fooled, best_loss
    ) -> int:
        """One APGD run on ``images[active]``; writes fooled points and better survivors' points."""
        x0, y = images[active], labels[active]
        t = targets[active] if targets is not None else None
        x = random_start(x0, self.norm, self.eps, self.seed, stream)
        logits, loss, grad = loss_gradient(
            model, x, y, lambda logits_, y_: self._loss(logits_, y_, t)
        )
        passes = len(y)

        n = len(y)
        step = torch.full((n, 1, 1, 1), 2.0 * self.eps, device=x.device)
        x_prev = x.clone()
        x_best, loss_best, grad_best = x.clone(), loss.clone(), grad.clone()
        previous_loss = loss.clone()
        increases = torch.zeros(n, device=x.device)
        best_at_last_check = loss_best.clone()
        halved_at_last_check = torch.ones(n, dtype=torch.bool, device=x.device)
        marks = set(checkpoints(self.steps))
        last_mark = 0

        for iteration in range(self.steps + 1):
            # Record this iterate: success, the run's best point, the caller's best survivor point.
            hit = logits.argmax(dim=1) != y
            better = ~hit & (loss > best_loss[active])
            if better.any():
                adversarial[active[better]] = x[better]
                best_loss[active[better]] = loss[better]
            if hit.any():
                adversarial[active[hit]] = x[hit]
                fooled[active[hit]] = True
                keep = ~hit
                (
                    active,
                    x0,
                    y,
                    x,
                    x_prev,
                    grad,
                    step,
                    x_best,
                    loss_best,
                    grad_best,
                    previous_loss,
                    increases,
                    best_at_last_check,
                    halved_at_last_check,
                ) = (
                    tensor[keep]
                    for tensor in (
                        active,
                        x0,
                        y,
                        x,
                        x_prev,
                        grad,
                        step,
                        x_best,
                        loss_best,
                        grad_best,
                        previous_loss,
                        increases,
                        best_at_last_check,
                        halved_at_last_check,
                    )
                )
                loss = loss[keep]
                if t is not None:
                    t = t[keep]
                if len(y) == 0:
                    break
            if iteration == self.steps:
                break

            if iteration > 0:
                increases += (loss > previous_loss).float()
                previous_loss = loss
                improved = loss > loss_best
                x_best = torch.where(improved.view(-1, 1, 1, 1), x, x_best)
                grad_best = torch.where(improved.view(-1, 1, 1, 1), grad, grad_best)
                loss_best = torch.where(improved, loss, loss_best)
                if iteration in marks:
                    # Halve where the loss rose too rarely or stalled without a halving last time.
                    rarely_up = increases < RHO * (iteration - last_mark)
                    stalled = ~halved_at_last_check & (loss_best <= best_at_last_check)
                    halve = rarely_up | stalled
                    step = torch.where(halve.view(-1, 1, 1, 1), step / 2, step)
                    x = torch.where(halve.view(-1, 1, 1, 1), x_best, x)
                    grad = torch.where(halve.view(-1, 1, 1, 1), grad_best, grad)
                    halved_at_last_check, best_at_last_check = halve, loss_best.clone()
                    increases = torch.zeros_like(increases)
                    last_mark = iteration

            momentum = MOMENTUM if iteration > 0 else 1.0
            z = project(x + _scaled_step(grad, self.norm, step), x0, self.norm, self.eps)
            x_next = project(
                x + momentum * (z - x) + (1 - momentum) * (x - x_prev), x0, self.norm, self.eps
            )
            x_prev, x = x, x_next
            logits, loss, grad = loss_gradient(
                model, x, y, lambda logits_, y_, t=t: self._loss(logits_, y_, t)
            )
            passes += len(y)
        return passes


def _scaled_step(grad: torch.Tensor, norm: str, step: torch.Tensor) -> torch.Tensor:
    """The steepest-ascent direction of unit size times each sample's own step size (N, 1, 1, 1)."""
    return steepest_ascent_step(grad, norm, 1.0) * step
