"""Named attack sets for :func:`safetycheck.measures.robustness.robust_accuracy_sweep`, cheapest
first.

Each cascade is a list of ``(name, factory)`` pairs, ``factory(eps)`` giving an attack. A sample
is robust at eps only if every attack of its cascade failed on it, and each attack only runs on
the samples the cheaper ones before it left standing, so putting FGSM first costs two model
evaluations per sample and saves most of the iterative work on an undefended model.

========== ======================================================================= =============
name       attacks, in order                                                       norm
========== ======================================================================= =============
fgsm       FGSM                                                                    Linf
pgd_linf   FGSM, PGD (40 steps of 0.01, Madry's MNIST challenge)                   Linf
pgd_l2     PGD (40 steps of 2.5 eps / 40)                                          L2
fast_linf  FGSM, APGD-CE (20 steps)                                                Linf
apgd       APGD-CE, APGD-T (targeted DLR)                                          Linf
autoattack APGD-CE, APGD-T, Square (Croce and Hein 2020's "standard" AutoAttack)   Linf
========== ======================================================================= =============

``fast_linf`` is the quick Linf sweep: APGD's adaptive step makes 20 of its steps at least as
strong as Madry's 40 fixed steps of 0.01 (on the example LeNet over 400 MNIST test images:
robust accuracy 0.760 for both at eps 0.1, 0.210 against 0.233 at eps 0.15), for half the
gradient evaluations.

Two budgets (for ``apgd`` and ``autoattack``): ``"standard"`` is AutoAttack's (APGD 100 steps,
APGD-T on 9 target classes, Square 5000 queries); ``"fast"``, meant for CPU CI, spends about a
tenth of it (APGD 50 steps, APGD-T on the 3 most likely wrong classes, Square 250 queries).
Square's queries are the cost that dominates on the CPU: every sample that survives the APGDs
pays all of them, at every eps. On the example LeNet (200 MNIST test images, fast budget) APGD-CE
breaks all but one of the samples the set breaks; on a robust or gradient-masking model report the
standard budget, and see :mod:`safetycheck.measures.attacks.diagnostics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from safetycheck.core.errors import ConfigError
from safetycheck.measures.attacks.apgd import APGD
from safetycheck.measures.attacks.fgsm import FGSM
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.attacks.square import Square


@dataclass(frozen=True)
class Budget:
    apgd_steps: int
    target_classes: int
    square_queries: int


BUDGETS = {
    "standard": Budget(apgd_steps=100, target_classes=9, square_queries=5000),
    "fast": Budget(apgd_steps=50, target_classes=3, square_queries=250),
}
PGD_STEPS = 40
FAST_APGD_STEPS = 20


def _pgd_l2_step(eps: float) -> float:
    # Madry et al.'s rule of thumb, 2.5 eps / steps, so the steps can cross the ball and come back.
    return max(2.5 * eps / PGD_STEPS, 1e-6)


def _fgsm(seed: int, budget: Budget) -> list:
    return [("fgsm", lambda eps: FGSM(eps=eps))]


def _pgd_linf(seed: int, budget: Budget) -> list:
    return _fgsm(seed, budget) + [("pgd_linf", lambda eps: PGD(eps=eps, norm="Linf", seed=seed))]


def _pgd_l2(seed: int, budget: Budget) -> list:
    return [("pgd_l2", lambda eps: PGD(eps=eps, norm="L2", step_size=_pgd_l2_step(eps), seed=seed))]


def _fast_linf(seed: int, budget: Budget) -> list:
    return _fgsm(seed, budget) + [
        ("apgd_ce", lambda eps: APGD(eps=eps, loss="ce", steps=FAST_APGD_STEPS, seed=seed))
    ]


def _apgd(seed: int, budget: Budget) -> list:
    return [
        ("apgd_ce", lambda eps: APGD(eps=eps, loss="ce", steps=budget.apgd_steps, seed=seed)),
        (
            "apgd_t",
            lambda eps: APGD(
                eps=eps,
                targeted=True,
                steps=budget.apgd_steps,
                seed=seed,
                n_target_classes=budget.target_classes,
            ),
        ),
    ]


def _autoattack(seed: int, budget: Budget) -> list:
    return _apgd(seed, budget) + [
        ("square", lambda eps: Square(eps=eps, n_queries=budget.square_queries, seed=seed))
    ]


CASCADES: dict[str, Callable[[int, Budget], list]] = {
    "fgsm": _fgsm,
    "pgd_linf": _pgd_linf,
    "pgd_l2": _pgd_l2,
    "fast_linf": _fast_linf,
    "apgd": _apgd,
    "autoattack": _autoattack,
}
NORM = {
    "fgsm": "Linf",
    "pgd_linf": "Linf",
    "pgd_l2": "L2",
    "fast_linf": "Linf",
    "apgd": "Linf",
    "autoattack": "Linf",
}


def cascade(name: str, seed: int = 0, budget: str = "standard") -> list[tuple[str, Callable]]:
    """The attacks of cascade ``name`` as ``(attack name, factory(eps))`` pairs, cheapest first."""
    if name not in CASCADES:
        raise ConfigError(f"unknown attack set {name!r}; valid names are {', '.join(CASCADES)}.")
    if budget not in BUDGETS:
        raise ConfigError(
            f"unknown attack budget {budget!r}; valid budgets are {', '.join(BUDGETS)}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer.")
    return CASCADES[name](seed, BUDGETS[budget])
