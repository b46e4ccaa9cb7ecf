"""Robust accuracy as a per-sample worst case over an ascending sweep of epsilons.

A sample is robust at eps only if it is classified correctly and no attack in the cascade, no
restart and no iterate found a misclassified point in its eps-ball. The sweep runs the epsilons in
ascending order and attacks only the samples still robust at the previous eps (a point found inside
a smaller ball also lies inside every larger one), and within one eps the attacks run from the
cheapest to the strongest on the survivors only. Clean-misclassified samples are never attacked.
Robust accuracy is therefore monotone non-increasing in eps and never above clean accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from safetycheck.core.distributed import Shard
from safetycheck.core.errors import ConfigError
from safetycheck.io.predict import predict
from safetycheck.measures.attacks.base import AttackResult

AttackFactory = Callable[[float], Callable[[nn.Module, torch.Tensor, torch.Tensor], AttackResult]]


@dataclass
class SweepResult:
    """``robust[eps]``: (N,) bool per sample; ``broken_by[eps]``: how many samples each attack broke
    first at that eps; ``descriptions``: each attack's parameters at each eps, for reports.
    ``stopped``: for each eps whose attacks a stopping rule ended before the last image, why;
    ``planned``: how many images the sweep was given. Each eps scored a prefix of them,
    ``len(robust[eps])`` images; ``n`` is the longest prefix (the smallest eps's)."""

    epsilons: list[float]
    clean_correct: torch.Tensor
    robust: dict[float, torch.Tensor] = field(default_factory=dict)
    broken_by: dict[float, dict[str, int]] = field(default_factory=dict)
    descriptions: dict[float, list[str]] = field(default_factory=dict)
    forward_passes: int = 0
    stopped: dict[float, str] = field(default_factory=dict)
    planned: int | None = None

    @property
    def n(self) -> int:
        return int(self.clean_correct.numel())

    def scored(self, eps: float) -> int:
        """How many images were scored at ``eps`` (fewer than ``n`` where it stopped early)."""
        return int(self.robust[eps].numel())

    def accuracy(self, eps: float) -> float:
        scored = self.scored(eps)
        return int(self.robust[eps].sum()) / scored if scored else float("nan")


# Given the sweep so far, the epsilons whose verdicts are known, each with the reason.
StopRule = Callable[[SweepResult], dict[float, str]]


def robust_accuracy_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilons: Sequence[float],
    attacks: Sequence[tuple[str, AttackFactory]],
    clean_correct: torch.Tensor | None = None,
    batch_size: int = 500,
    stop: StopRule | None = None,
    block: int = 100,
    shard: Shard | None = None,
) -> SweepResult:
    """Run the attack cascade over the epsilons.

    Args:
        model: logits model, input (N, 1, 28, 28) in [0, 1].
        images, labels: (N, 1, 28, 28) float and (N,) int64, on any device.
        epsilons: the radii; sorted ascending here, duplicates removed.
        attacks: ``(name, factory)`` pairs, cheapest first; ``factory(eps)`` returns an attack.
        clean_correct: (N,) bool if already known (saves a forward pass), else computed.
        batch_size: images per attack call, bounding memory.
        stop: a stopping rule: the images are then swept in blocks of ``block`` (in order, so the
            images scored are always a prefix), and after each block ``stop`` is given the sweep so
            far and names the epsilons whose verdicts are known. The largest epsilons stop being
            attacked once they and every larger one are known (a smaller one is still needed: an
            image it breaks is broken at every larger one), and the sweep ends once all are;
            ``stopped`` records each reason. None: one pass over every image.
        shard: split each pass (the whole set, or each block) over a torchrun job's ranks by
            contiguous slices and gather every rank's per-image verdicts and counts, so that every
            rank holds the serial result (:mod:`safetycheck.core.distributed`); None: one process.
    """
    if not attacks:
        raise ConfigError("the attack cascade is empty; configure at least one attack.")
    if any(not isinstance(e, (int, float)) or e < 0 for e in epsilons):
        raise ConfigError(f"epsilons must be non-negative numbers; got {list(epsilons)}.")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ConfigError(f"the early-stopping block must be a positive integer; got {block!r}.")
    epsilons = sorted(set(float(e) for e in epsilons))
    if clean_correct is None:
        clean_correct = _clean_correct(model, images, labels, batch_size)
    clean_correct = clean_correct.cpu()
    planned = len(clean_correct)
    result = SweepResult(epsilons=epsilons, clean_correct=clean_correct[:0], planned=planned)
    for eps in epsilons:
        result.broken_by[eps] = {name: 0 for name, _ in attacks}
        result.robust[eps] = torch.zeros(0, dtype=torch.bool)
    shard = Shard() if shard is None else shard
    for eps in epsilons:
        result.descriptions[eps] = _describe(attacks, eps)
    step = planned if stop is None else block
    for first in range(0, max(planned, 1), max(step, 1)):
        part = slice(first, min(first + step, planned))
        active = [eps for eps in epsilons if eps not in result.stopped]

        def attack_rows(rows: slice, part=part, active=active) -> _Pass:
            take = slice(part.start + rows.start, part.start + rows.stop)
            return _sweep_images(model, images[take], labels[take], clean_correct[take], attacks,
                                 active, batch_size)  # fmt: skip

        robust = shard.rows(
            f"the {'/'.join(name for name, _ in attacks)} sweep",
            part.stop - part.start,
            attack_rows,
            _Pass.join,
        ).add_to(result)
        result.clean_correct = clean_correct[: part.stop]
        for eps in active:
            result.robust[eps] = torch.cat([result.robust[eps], robust[eps]])
        if stop is not None and part.stop < planned:
            known = stop(result)
            for eps in reversed(active):
                if eps not in known:
                    break
                result.stopped[eps] = known[eps]
            if len(result.stopped) == len(epsilons):
                break
    return result


def _describe(attacks: Sequence[tuple[str, AttackFactory]], eps: float) -> list[str]:
    described = []
    for name, factory in attacks:
        attack = factory(eps)
        described.append(attack.describe() if hasattr(attack, "describe") else name)
    return described


@dataclass
class _Pass:
    """One pass of the sweep over some images: each image's robustness at each eps, how many
    images each attack broke first at each eps, and the forward passes spent."""

    robust: dict[float, torch.Tensor]
    broken_by: dict[float, dict[str, int]]
    forward_passes: int

    @staticmethod
    def join(parts: list[_Pass]) -> _Pass:
        """The passes over consecutive slices of images, as one pass over them all."""
        first = parts[0]
        return _Pass(
            {eps: torch.cat([p.robust[eps] for p in parts]) for eps in first.robust},
            {
                eps: {name: sum(p.broken_by[eps][name] for p in parts) for name in counts}
                for eps, counts in first.broken_by.items()
            },
            sum(p.forward_passes for p in parts),
        )

    def add_to(self, result: SweepResult) -> dict[float, torch.Tensor]:
        """Add the counts and passes to ``result``; the per-image robustness, per eps."""
        for eps, counts in self.broken_by.items():
            for name, count in counts.items():
                result.broken_by[eps][name] += count
        result.forward_passes += self.forward_passes
        return self.robust


def _sweep_images(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    clean_correct: torch.Tensor,
    attacks: Sequence[tuple[str, AttackFactory]],
    epsilons: Sequence[float],
    batch_size: int,
) -> _Pass:
    """One pass of the sweep over ``images`` (a block, or a rank's slice of one) at ``epsilons``
    (ascending)."""
    survivors = clean_correct.clone()
    robust = {}
    broken_by = {eps: {name: 0 for name, _ in attacks} for eps in epsilons}
    forward_passes = 0
    for eps in epsilons:
        for name, factory in attacks:
            attack = factory(eps)
            index = survivors.nonzero().squeeze(1)
            for start in range(0, len(index), batch_size):
                chunk = index[start : start + batch_size]
                outcome = attack(model, images[chunk], labels[chunk])
                forward_passes += outcome.forward_passes
                fooled = outcome.fooled.cpu()
                survivors[chunk[fooled]] = False
                broken_by[eps][name] += int(fooled.sum())
        robust[eps] = survivors.clone()
    return _Pass(robust, broken_by, forward_passes)


def _clean_correct(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> torch.Tensor:
    if not len(labels):
        return torch.zeros(0, dtype=torch.bool)
    # no_grad rather than inference mode: the attacks that follow differentiate through the model.
    predictions = predict(
        model,
        images,
        batch_size=batch_size,
        transform=lambda logits: logits.argmax(1),
        inference=False,
    )
    return predictions == labels.cpu()
