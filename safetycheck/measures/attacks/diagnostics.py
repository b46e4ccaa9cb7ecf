"""Is the robust accuracy trustworthy? Symptoms of gradient masking, after AutoAttack's runtime
checks (Croce and Hein 2020) and the checklists of Athalye, Carlini and Wagner 2018 ("Obfuscated
Gradients Give a False Sense of Security", arXiv:1802.00420, Section 3.1) and Carlini et al. 2019
("On Evaluating Adversarial Robustness", arXiv:1902.06705, Section 6).

A model that hides its gradients (a hard threshold, a non-differentiable preprocessing, saturated
outputs) defeats the gradient attacks without being robust, and the robust accuracy they report
is then a false reassurance. Each function here runs one test of the checklist and returns a
:class:`Diagnostic`: passed or not, the numbers it measured, and a sentence a person can act on.

- :func:`gradient_health`: zero or non-finite input gradients on a sizeable share of samples;
- :func:`iterative_vs_single_step`: PGD weaker than FGSM at the same eps;
- :func:`more_budget_not_weaker`: more steps or restarts weaker than fewer;
- :func:`black_box_vs_white_box`: the gradient-free Square attack beating PGD;
- :func:`large_eps_accuracy`: accuracy not near zero at Linf eps 0.5, where any digit can be
  turned into a uniform grey image.

Accuracies are compared with a tolerance, by default the larger of 0.02 and two binomial standard
errors, because attacks with random starts differ by sampling noise even on honest models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from safetycheck.core.errors import ConfigError
from safetycheck.io.models import evaluation_mode, model_device
from safetycheck.measures.attacks.base import check_label_range, loss_gradient, validate_batch
from safetycheck.measures.attacks.fgsm import FGSM
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.attacks.square import Square, margin


@dataclass(frozen=True)
class Diagnostic:
    """``name``: which check; ``passed``: no symptom found; ``measured``: the numbers behind the
    verdict; ``message``: one sentence saying what was measured and what it means."""

    name: str
    passed: bool
    measured: dict = field(default_factory=dict)
    message: str = ""


def _tolerance(accuracy: float, n: int, tolerance: float | None) -> float:
    if tolerance is not None:
        return tolerance
    return max(0.02, 2 * math.sqrt(max(accuracy * (1 - accuracy), 1 / max(n, 1)) / max(n, 1)))


def _accuracy(attack, model, images, labels) -> float:
    return 1.0 - float(attack(model, images, labels).fooled.float().mean())


def _pgd(eps: float, steps: int, restarts: int = 1, seed: int = 0) -> PGD:
    # Madry et al.'s rule: 2.5 eps / steps lets the iterates cross the ball and come back.
    return PGD(
        eps=eps,
        norm="Linf",
        steps=steps,
        step_size=min(2.5 * eps / steps, 1.0),
        restarts=restarts,
        seed=seed,
    )


def _validate(images, labels, name: str, value: float, low: float, high: float) -> None:
    validate_batch(images, labels)
    if len(labels) == 0:
        raise ConfigError("the diagnostics need at least one image; got an empty batch.")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is outside its valid range [{low}, {high}].")


def gradient_health(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, max_share: float = 0.05
) -> Diagnostic:
    """Share of samples whose input gradient is all zero or has a non-finite entry.

    The gradient is that of the logit margin ``z_y - max_{i != y} z_i`` at the clean image, not of
    the cross-entropy: a confident honest model's cross-entropy gradient underflows to zero in
    float32, its margin gradient does not. Passed when the share is at most ``max_share``.
    """
    _validate(images, labels, "max_share", max_share, 0.0, 1.0)
    device = model_device(model)
    images, labels = images.detach().to(device), labels.to(device)
    with evaluation_mode(model):
        logits, _, grad = loss_gradient(model, images, labels, margin)
    check_label_range(labels, logits)
    flat = grad.flatten(1)
    non_finite = ~torch.isfinite(flat).all(dim=1)
    zero = (flat == 0).all(dim=1) & ~non_finite
    n = len(labels)
    share = float((zero | non_finite).float().mean())
    measured = {
        "zero_share": float(zero.float().mean()),
        "non_finite_share": float(non_finite.float().mean()),
        "n": n,
    }
    if share <= max_share:
        return Diagnostic(
            "gradient_health",
            True,
            measured,
            f"input gradients are non-zero and finite on {1 - share:.1%} of {n} samples.",
        )
    return Diagnostic(
        "gradient_health",
        False,
        measured,
        f"input gradients are zero on {measured['zero_share']:.1%} and non-finite on "
        f"{measured['non_finite_share']:.1%} of {n} samples (allowed: {max_share:.0%}): gradient "
        f"attacks cannot see this model, so their robust accuracy is meaningless; look for hard "
        f"thresholds, argmax or detached preprocessing in the forward pass.",
    )


def iterative_vs_single_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.1,
    steps: int = 40,
    tolerance: float | None = None,
    seed: int = 0,
) -> Diagnostic:
    """PGD (``steps`` steps of 2.5 eps / steps) must not leave more samples robust than FGSM."""
    _validate(images, labels, "eps", eps, 0.0, 1.0)
    single = _accuracy(FGSM(eps), model, images, labels)
    iterative = _accuracy(_pgd(eps, steps, seed=seed), model, images, labels)
    allowed = _tolerance(single, len(labels), tolerance)
    measured = {
        "eps": eps,
        "fgsm_accuracy": single,
        "pgd_accuracy": iterative,
        "tolerance": allowed,
        "n": len(labels),
    }
    passed = iterative <= single + allowed
    verdict = (
        "as expected"
        if passed
        else ("the iterative attack is weaker than one step, a sign of masked or noisy gradients")
    )
    return Diagnostic(
        "iterative_vs_single_step",
        passed,
        measured,
        f"at Linf eps {eps:g} on {len(labels)} samples: PGD-{steps} accuracy {iterative:.3f}, FGSM "
        f"{single:.3f} (tolerance {allowed:.3f}): {verdict}.",
    )


def more_budget_not_weaker(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.1,
    steps: tuple[int, int] = (10, 40),
    restarts: tuple[int, int] = (1, 3),
    tolerance: float | None = None,
    seed: int = 0,
) -> Diagnostic:
    """PGD with more steps, and with more restarts, must not be weaker than with fewer."""
    _validate(images, labels, "eps", eps, 0.0, 1.0)
    if not (len(steps) == 2 and 1 <= steps[0] < steps[1]) or not (
        len(restarts) == 2 and 1 <= restarts[0] < restarts[1]
    ):
        raise ConfigError(
            f"steps={steps!r} and restarts={restarts!r} must each be (fewer, more) with 1 "
            "<= fewer < more."
        )
    few_steps = _accuracy(_pgd(eps, steps[0], seed=seed), model, images, labels)
    many_steps = _accuracy(_pgd(eps, steps[1], seed=seed), model, images, labels)
    few_restarts = (
        _accuracy(_pgd(eps, steps[0], restarts[0], seed=seed), model, images, labels)
        if restarts[0] != 1
        else few_steps
    )
    many_restarts = _accuracy(_pgd(eps, steps[0], restarts[1], seed=seed), model, images, labels)
    allowed = _tolerance(few_steps, len(labels), tolerance)
    steps_ok = many_steps <= few_steps + allowed
    restarts_ok = many_restarts <= few_restarts + allowed
    measured = {
        "eps": eps,
        f"accuracy_{steps[0]}_steps": few_steps,
        f"accuracy_{steps[1]}_steps": many_steps,
        f"accuracy_{restarts[0]}_restarts": few_restarts,
        f"accuracy_{restarts[1]}_restarts": many_restarts,
        "tolerance": allowed,
        "n": len(labels),
    }
    passed = steps_ok and restarts_ok
    verdict = (
        "as expected"
        if passed
        else "a larger budget found less, a sign of masked or noisy gradients"
    )
    return Diagnostic(
        "more_budget_not_weaker",
        passed,
        measured,
        f"at Linf eps {eps:g} on {len(labels)} samples: PGD accuracy {few_steps:.3f} with "
        f"{steps[0]} steps vs {many_steps:.3f} with {steps[1]}, {few_restarts:.3f} with "
        f"{restarts[0]} restart(s) vs {many_restarts:.3f} with {restarts[1]} "
        f"(tolerance {allowed:.3f}): {verdict}.",
    )


def black_box_vs_white_box(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.3,
    n_queries: int = 1000,
    steps: int = 40,
    tolerance: float | None = None,
    seed: int = 0,
) -> Diagnostic:
    """The gradient-free Square attack must not leave fewer samples robust than PGD (with the
    gradients) beyond the tolerance: a black-box attack sees less of the model than a white-box
    one."""
    _validate(images, labels, "eps", eps, 0.0, 1.0)
    white = _accuracy(_pgd(eps, steps, seed=seed), model, images, labels)
    black = _accuracy(Square(eps, n_queries=n_queries, seed=seed), model, images, labels)
    allowed = _tolerance(white, len(labels), tolerance)
    passed = black >= white - allowed
    measured = {
        "eps": eps,
        "pgd_accuracy": white,
        "square_accuracy": black,
        "tolerance": allowed,
        "n": len(labels),
    }
    verdict = (
        "as expected"
        if passed
        else (
            "the black-box attack beats the white-box one, so the gradients mislead the "
            "attacks (masking)"
        )
    )
    return Diagnostic(
        "black_box_vs_white_box",
        passed,
        measured,
        f"at Linf eps {eps:g} on {len(labels)} samples: Square ({n_queries} queries) accuracy "
        f"{black:.3f}, PGD-{steps} {white:.3f} (tolerance {allowed:.3f}): {verdict}.",
    )


def large_eps_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.5,
    max_accuracy: float = 0.1,
    steps: int = 40,
    seed: int = 0,
) -> Diagnostic:
    """At Linf eps 0.5 every MNIST digit can become a uniform grey image, so no honest model keeps
    more than about chance accuracy; PGD accuracy above ``max_accuracy`` there means the attack
    is blind, not that the model is robust."""
    _validate(images, labels, "eps", eps, 0.0, 1.0)
    _validate(images, labels, "max_accuracy", max_accuracy, 0.0, 1.0)
    accuracy = _accuracy(_pgd(eps, steps, seed=seed), model, images, labels)
    passed = accuracy <= max_accuracy
    measured = {
        "eps": eps,
        "pgd_accuracy": accuracy,
        "max_accuracy": max_accuracy,
        "n": len(labels),
    }
    verdict = (
        "as expected"
        if passed
        else (
            "the gradient attack is blind here, so its accuracies at smaller eps are "
            "not trustworthy"
        )
    )
    return Diagnostic(
        "large_eps_accuracy",
        passed,
        measured,
        f"at Linf eps {eps:g} on {len(labels)} samples: PGD-{steps} accuracy {accuracy:.3f} "
        f"(at most {max_accuracy:g} expected): {verdict}.",
    )


def run_all(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int = 0
) -> list[Diagnostic]:
    """Every diagnostic with its defaults, in order of cost."""
    return [
        gradient_health(model, images, labels),
        iterative_vs_single_step(model, images, labels, seed=seed),
        more_budget_not_weaker(model, images, labels, seed=seed),
        large_eps_accuracy(model, images, labels, seed=seed),
        black_box_vs_white_box(model, images, labels, seed=seed),
    ]
