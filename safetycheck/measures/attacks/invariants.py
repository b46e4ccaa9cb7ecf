"""Attack invariants as Hypothesis properties, run against the user's own model.

The project's tests check these on small models; running them on the model under test catches what
only that model triggers (a layer that breaks batch independence, non-determinism, outputs that
escape [0, 1] after the model's own preprocessing). Hypothesis draws the threat model (norm, eps,
steps, seed) and the batch; the search is derandomised and keeps no database, so a run is
reproducible and leaves no files behind.

Each property returns :class:`InvariantResult`; a violation carries Hypothesis' minimal
counterexample in words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from safetycheck.io.models import evaluation_mode
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.robustness import robust_accuracy_sweep

TOLERANCE = 1e-5  # float32 slack for ball and range checks


@dataclass(frozen=True)
class InvariantResult:
    name: str
    passed: bool
    examples: int
    message: str


def _threats(max_images: int):
    from hypothesis import strategies as st

    return dict(
        norm=st.sampled_from(["Linf", "L2"]),
        eps=st.floats(0.0, 0.3),
        steps=st.integers(1, 5),
        seed=st.integers(0, 2**16),
        size=st.integers(1, max_images),
    )


def _pgd(norm: str, eps: float, steps: int, seed: int) -> PGD:
    # L2 radii are about sqrt(784) / 3 times larger than Linf ones for comparable strength.
    scale = 9.0 if norm == "L2" else 1.0
    return PGD(
        eps=eps * scale, norm=norm, steps=steps, step_size=max(eps * scale / 4, 1e-4), seed=seed
    )


def _in_ball(model, images, labels, norm, eps, steps, seed, size):
    attack = _pgd(norm, eps, steps, seed)
    x, y = images[:size], labels[:size]
    adversarial = attack(model, x, y).adversarial
    delta = (adversarial - x).flatten(1)
    radius = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert float(radius.max()) <= attack.eps + TOLERANCE, (
        f"{attack.describe()}: a perturbation of size {float(radius.max()):.6g} left the eps-ball"
    )
    assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1, (
        f"{attack.describe()}: adversarial pixels left [0, 1]"
    )


def _eps_zero(model, images, labels, norm, eps, steps, seed, size):
    x, y = images[:size], labels[:size]
    result = _pgd(norm, 0.0, steps, seed)(model, x, y)
    assert torch.equal(result.adversarial, x), "eps=0 changed the input"


def _loss_not_below_clean(model, images, labels, norm, eps, steps, seed, size):
    x, y = images[:size], labels[:size]
    result = _pgd(norm, eps, steps, seed)(model, x, y)
    with evaluation_mode(model), torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
        attacked = F.cross_entropy(model(result.adversarial), y, reduction="none")
    worst = float((clean - attacked).max())
    assert worst <= 1e-4 * (1 + float(clean.abs().max())), (
        f"PGD returned a point whose loss is {worst:.3g} below the clean loss"
    )


def _seeded(model, images, labels, norm, eps, steps, seed, size):
    x, y = images[:size], labels[:size]
    first, second = (_pgd(norm, eps, steps, seed)(model, x, y) for _ in range(2))
    assert torch.equal(first.fooled, second.fooled) and torch.equal(
        first.adversarial, second.adversarial
    ), (
        f"two runs with seed {seed} gave different results: the model or the attack is "
        "not deterministic"
    )


def _permutation(model, images, labels, norm, eps, steps, seed, size):
    x, y = images[:size], labels[:size]
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).to(x.device)
    attack = _pgd(norm, eps, steps, seed)
    plain, permuted = attack(model, x, y), attack(model, x[order], y[order])
    assert torch.equal(plain.fooled[order], permuted.fooled), (
        "attacking a permuted batch did not give the permuted result: samples influence each other "
        "(batch statistics in eval mode?)"
    )


def _monotone(model, images, labels, norm, eps, steps, seed, size):
    x, y = images[:size], labels[:size]
    epsilons = sorted({0.0, eps / 2, eps})
    sweep = robust_accuracy_sweep(
        model, x, y, epsilons, [("pgd", lambda e: _pgd(norm, e, steps, seed))]
    )
    accuracies = [sweep.accuracy(e) for e in sweep.epsilons]
    clean = float(sweep.clean_correct.float().mean())
    assert all(a <= clean + 1e-12 for a in accuracies), "robust accuracy above clean accuracy"
    assert all(b <= a + 1e-12 for a, b in zip(accuracies, accuracies[1:], strict=False)), (
        f"robust accuracy rose with eps: {accuracies} at {sweep.epsilons}"
    )


PROPERTIES: dict[str, Callable] = {
    "in_ball": _in_ball,
    "eps_zero": _eps_zero,
    "loss_not_below_clean": _loss_not_below_clean,
    "seeded": _seeded,
    "permutation": _permutation,
    "monotone": _monotone,
}


def check_invariant(
    name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, max_examples: int = 8
) -> InvariantResult:
    """Search for a violation of property ``name`` with Hypothesis on ``images``/``labels``
    (a small batch: each example attacks at most all of them with at most 5 PGD steps)."""
    from hypothesis import HealthCheck, given, settings  # here: it costs ~0.4 s in every process

    prop = PROPERTIES[name]
    count = 0

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(**_threats(len(labels)))
    def search(norm, eps, steps, seed, size):
        nonlocal count
        count += 1
        prop(model, images, labels, norm, eps, steps, seed, size)

    try:
        search()
    except AssertionError as violation:
        return InvariantResult(name, False, count, str(violation))
    return InvariantResult(
        name, True, count, f"no violation in {count} drawn threat models and batches"
    )
