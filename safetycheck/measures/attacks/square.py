"""The Square attack (Andriushchenko, Croce, Flammarion and Hein 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search", arXiv:1912.00049), Linf.

Gradient-free: it only reads the model's logits, so gradient masking (hard thresholds, shattered
or vanishing gradients) cannot hide adversarial examples from it. That makes it the reference for
the trustworthiness diagnostics: when this black-box attack beats the white-box ones, the
gradients lie.

Random search on the margin ``z_y - max_{i != y} z_i``: start from vertical stripes of +-eps,
then at each query propose setting a random square window of side ``s`` to a random +-eps and keep
the proposal if the margin drops. The window's area, ``p * H * W`` pixels, shrinks on the paper's
schedule from ``p_init`` (rescaled to the query budget). A sample is fooled as soon as any query
(the clean point included) is misclassified; it then leaves the batch.

The random draws of each sample come from its own generator (:func:`base.per_sample_generators`),
drawn once up front, so a permuted batch gives the permuted result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from safetycheck.core.errors import ConfigError
from safetycheck.io.models import evaluation_mode
from safetycheck.measures.attacks.base import (
    AttackResult,
    check_label_range,
    empty_result,
    per_sample_generators,
    prepare_batch,
    validate_threat,
)

# The paper's schedule of p on a 10 000-query budget: (last query of the stage, divisor of p_init).
_P_SCHEDULE = (
    (10, 1),
    (50, 2),
    (200, 4),
    (500, 8),
    (1000, 16),
    (2000, 32),
    (4000, 64),
    (6000, 128),
    (8000, 256),
)


def square_fraction(p_init: float, query: int, n_queries: int) -> float:
    """The share of pixels the proposed square covers at ``query`` (the schedule, rescaled)."""
    scaled = int(query / n_queries * 10000)
    for last, divisor in _P_SCHEDULE:
        if scaled <= last:
            return p_init / divisor
    return p_init / 512


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) ``z_y - max_{i != y} z_i``: negative exactly where the sample is misclassified."""
    logits = logits.float()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -math.inf).amax(dim=1)
    return true - others


@dataclass(frozen=True)
class Square:
    """Linf radius ``eps`` (pixel units), ``n_queries`` model queries per sample at most (the
    paper's budget of 5000 by default), initial square share ``p_init``, and the seed."""

    eps: float
    n_queries: int = 5000
    p_init: float = 0.8
    seed: int = 0

    norm = "Linf"
    name = "square"

    def __post_init__(self):
        validate_threat("Linf", self.eps)
        if (
            isinstance(self.n_queries, bool)
            or not isinstance(self.n_queries, int)
            or self.n_queries < 1
        ):
            raise ConfigError(
                f"n_queries={self.n_queries!r} must be a positive integer (1 or more)."
            )
        if (
            isinstance(self.p_init, bool)
            or not isinstance(self.p_init, (int, float))
            or not 0 < self.p_init <= 1
        ):
            raise ConfigError(
                f"p_init={self.p_init!r} must be a number in (0, 1], the initial share of pixels "
                f"a square covers."
            )

    def describe(self) -> str:
        return (
            f"Square-Linf eps={self.eps:g}, {self.n_queries} queries, p_init {self.p_init:g}, "
            f"seed {self.seed}"
        )

    @torch.no_grad()
    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> AttackResult:
        """Attack ``images`` (N, C, H, W) in [0, 1] with true ``labels`` (N,) int64.

        Survivors return their lowest-margin point (never above the clean margin)."""
        images, labels, adversarial = prepare_batch(model, images, labels)
        if len(labels) == 0:
            return empty_result(images)
        with evaluation_mode(model):
            clean_logits = model(images)
            check_label_range(labels, clean_logits)
            fooled = clean_logits.argmax(dim=1) != labels
            passes = len(labels)
            if self.eps > 0 and self.n_queries > 1 and not fooled.all():
                best_margin = margin(clean_logits, labels)
                passes += self._search(
                    model,
                    images,
                    labels,
                    (~fooled).nonzero().squeeze(1),
                    adversarial,
                    fooled,
                    best_margin,
                )
        return AttackResult(adversarial, fooled, passes)

    def _search(self, model, images, labels, active, adversarial, fooled, best_margin) -> int:
        x0, y = images[active], labels[active]
        channels, height, width = x0.shape[1:]
        n_steps = self.n_queries - 1  # the stripes take the first query
        # Per sample: one sign per column for the stripes, then (row, column, sign) per step.
        per_sample = []
        for generator in per_sample_generators(x0, self.seed, stream=0):
            per_sample.append(torch.rand(width * channels + 3 * n_steps, generator=generator))
        draws = torch.stack(per_sample).to(x0.device)
        stripes = torch.where(draws[:, : width * channels] < 0.5, -1.0, 1.0).view(
            -1, channels, 1, width
        )
        steps = draws[:, width * channels :].view(-1, n_steps, 3)

        delta = (x0 + self.eps * stripes).clamp(0, 1) - x0
        rows = torch.arange(height, device=x0.device)
        columns = torch.arange(width, device=x0.device)
        passes = 0
        for query in range(n_steps + 1):
            if query > 0:
                side = round(
                    math.sqrt(
                        square_fraction(self.p_init, query - 1, self.n_queries) * height * width
                    )
                )
                side = min(max(side, 1), min(height, width) - 1)
                u = steps[:, query - 1]
                top = (u[:, 0] * (height - side + 1)).long().clamp(max=height - side)
                left = (u[:, 1] * (width - side + 1)).long().clamp(max=width - side)
                inside = ((rows >= top[:, None]) & (rows < top[:, None] + side))[:, :, None] & (
                    (columns >= left[:, None]) & (columns < left[:, None] + side)
                )[:, None, :]
                inside = inside[:, None].expand_as(x0)
                sign = torch.where(u[:, 2] < 0.5, -1.0, 1.0).view(-1, 1, 1, 1)
                proposal = self._propose(x0, delta, inside, sign)
                # A proposal that changes nothing wastes a query: take the opposite sign instead.
                unchanged = (proposal - delta).abs().flatten(1).amax(dim=1) < 1e-7
                if unchanged.any():
                    proposal[unchanged] = self._propose(
                        x0[unchanged], delta[unchanged], inside[unchanged], -sign[unchanged]
                    )
            else:
                proposal = delta
            x = x0 + proposal
            logits = model(x)
            passes += len(y)
            current = margin(logits, y)
            # The search moves when the proposal beats the search's own point; what survivors
            # return is the best point overall, the clean one included.
            if query == 0:
                search_margin = current
            else:
                accept = current < search_margin
                delta = torch.where(accept.view(-1, 1, 1, 1), proposal, delta)
                search_margin = torch.where(accept, current, search_margin)
            better = current < best_margin[active]
            if better.any():
                adversarial[active[better]] = x[better]
                best_margin[active[better]] = current[better]
            hit = logits.argmax(dim=1) != y
            if hit.any():
                adversarial[active[hit]] = x[hit]
                fooled[active[hit]] = True
                keep = ~hit
                active, x0, y, delta, steps = (
                    active[keep],
                    x0[keep],
                    y[keep],
                    delta[keep],
                    steps[keep],
                )
                search_margin = search_margin[keep]
                if len(y) == 0:
                    break
        return passes

    def _propose(self, x0, delta, inside, sign):
        """``delta`` with the window set to ``sign * eps``, kept inside [0, 1]."""
        return torch.where(inside, (x0 + sign * self.eps).clamp(0, 1) - x0, delta)
