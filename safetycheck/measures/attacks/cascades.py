"""Named attack sets for :func:`safetycheck.measures.robustness.robust_accuracy_sweep`, cheapest
first.

Each cascade is a list of ``(name, factory)`` pairs, ``factory(eps)`` giving an attack. A sample
is robust at eps only if every attack of its cascade failed on it, and each attack only runs on
the samples the cheaper ones before it left standing, so putting FGSM first costs two model
evaluations per sample and saves most of the iterative work on an undefended model.

=============== ================================================================== ======
name            attacks, in order                                                  norm
=============== ================================================================== ======
fgsm            FGSM                                                               Linf
pgd_linf        FGSM, PGD (40 steps of 0.01, Madry's MNIST challenge)              Linf
pgd_l2          PGD (40 steps of 2.5 eps / 40)                                     L2
fast_linf       FGSM, APGD-CE (20 steps)                                           Linf
apgd            APGD-CE (100 steps), APGD-T (9 targets x 100 steps)                Linf
apgd_fast       APGD-CE (50 steps), APGD-T (3 targets x 50 steps)                  Linf
autoattack      APGD-CE, APGD-T, FAB-T (9 targets x 100 steps), Square (5000       Linf
                queries): Croce and Hein 2020's "standard" AutoAttack
autoattack_fast the same four at the fast budget (50 steps, 3 targets, 250 queries)  Linf
=============== ================================================================== ======

One meaning per name: a cascade's budget is part of its name, never chosen from the device, so a
threshold on ``autoattack[eps=0.1]`` means the standard protocol on a laptop and on a GPU alike.
``*_fast`` spends about a tenth of the standard budget, for CPU CI; it is a weaker attack (on the
PGD-trained zoo model it left 3 more images per thousand robust than the official AutoAttack) and
keeps its own threshold keys.

``fast_linf`` is the quick Linf sweep: APGD's adaptive step makes 20 of its steps at least as
strong as Madry's 40 fixed steps of 0.01 (on the example LeNet over 400 MNIST test images:
robust accuracy 0.760 for both at eps 0.1, 0.210 against 0.233 at eps 0.15), for half the
gradient evaluations.

Square's queries are the cost that dominates on the CPU: every sample that survives the gradient
attacks pays all of them, at every eps. Every attack here gives an *upper* bound of the true
robust accuracy (an attack that fails proves nothing); the ``certified`` family gives the lower
bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from safetycheck.core.errors import ConfigError
from safetycheck.measures.attacks.apgd import APGD
from safetycheck.measures.attacks.fab import FAB
from safetycheck.measures.attacks.fgsm import FGSM
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.attacks.square import Square


@dataclass(frozen=True)
class Budget:
    """How much an AutoAttack-grade cascade spends per attacked image."""

    apgd_steps: int
    target_classes: int  # of APGD-T and FAB-T: the most likely wrong classes, attacked in turn
    fab_steps: int
    square_queries: int


STANDARD = Budget(apgd_steps=100, target_classes=9, fab_steps=100, square_queries=5000)
FAST = Budget(apgd_steps=50, target_classes=3, fab_steps=50, square_queries=250)
PGD_STEPS = 40
FAST_APGD_STEPS = 20


def _pgd_l2_step(eps: float) -> float:
    # Madry et al.'s rule of thumb, 2.5 eps / steps, so the steps can cross the ball and come back.
    return max(2.5 * eps / PGD_STEPS, 1e-6)


def _fgsm(seed: int) -> list:
    return [("fgsm", lambda eps: FGSM(eps=eps))]


def _pgd_linf(seed: int) -> list:
    return _fgsm(seed) + [("pgd_linf", lambda eps: PGD(eps=eps, norm="Linf", seed=seed))]


def _pgd_l2(seed: int) -> list:
    return [("pgd_l2", lambda eps: PGD(eps=eps, norm="L2", step_size=_pgd_l2_step(eps), seed=seed))]


def _fast_linf(seed: int) -> list:
    return _fgsm(seed) + [
        ("apgd_ce", lambda eps: APGD(eps=eps, loss="ce", steps=FAST_APGD_STEPS, seed=seed))
    ]


def _apgd(budget: Budget) -> Callable[[int], list]:
    def attacks(seed: int) -> list:
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

    return attacks


def _autoattack(budget: Budget) -> Callable[[int], list]:
    def attacks(seed: int) -> list:
        return _apgd(budget)(seed) + [
            (
                "fab_t",
                lambda eps: FAB(
                    eps=eps,
                    steps=budget.fab_steps,
                    seed=seed,
                    targeted=True,
                    n_target_classes=budget.target_classes,
                ),
            ),
            ("square", lambda eps: Square(eps=eps, n_queries=budget.square_queries, seed=seed)),
        ]

    return attacks


CASCADES: dict[str, Callable[[int], list]] = {
    "fgsm": _fgsm,
    "pgd_linf": _pgd_linf,
    "pgd_l2": _pgd_l2,
    "fast_linf": _fast_linf,
    "apgd": _apgd(STANDARD),
    "apgd_fast": _apgd(FAST),
    "autoattack": _autoattack(STANDARD),
    "autoattack_fast": _autoattack(FAST),
}
BUDGETS: dict[str, Budget] = {
    "apgd": STANDARD,
    "apgd_fast": FAST,
    "autoattack": STANDARD,
    "autoattack_fast": FAST,
}
NORM = {name: "L2" if name == "pgd_l2" else "Linf" for name in CASCADES}


def cascade(name: str, seed: int = 0) -> list[tuple[str, Callable]]:
    """The attacks of cascade ``name`` as ``(attack name, factory(eps))`` pairs, cheapest first."""
    if name not in CASCADES:
        raise ConfigError(f"unknown attack set {name!r}; valid names are {', '.join(CASCADES)}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer.")
    return CASCADES[name](seed)


def budget_of(name: str) -> str:
    """``"standard"``, ``"fast"`` or ``"fixed"`` (the attack sets with one budget)."""
    if name not in BUDGETS:
        return "fixed"
    return "fast" if BUDGETS[name] == FAST else "standard"


def describe_attacks(pairs: list[tuple[str, Callable]]) -> list[dict]:
    """``(name, factory(eps))`` pairs as data: each attack's name, class and every parameter but
    the radius (``{"name": "apgd_t", "attack": "APGD", "steps": 100, "targeted": True, ...}``)."""
    described = []
    for attack_name, factory in pairs:
        attack = factory(0.0)
        fields = {key: value for key, value in asdict(attack).items() if key != "eps"}
        described.append({"name": attack_name, "attack": type(attack).__name__, **fields})
    return described


def threat_model(name: str, seed: int = 0) -> dict:
    """Cascade ``name`` as explicit data, for results, run metadata and fingerprints: its norm,
    budget (None for the sets with one fixed budget) and every attack with all its parameters but
    the radius."""
    budget = BUDGETS.get(name)
    return {
        "cascade": name,
        "norm": NORM[name],
        "budget": None if budget is None else asdict(budget),
        "attacks": describe_attacks(cascade(name, seed)),
    }
