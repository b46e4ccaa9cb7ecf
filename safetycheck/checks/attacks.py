"""Robust accuracy under the other attack sets: ``fgsm``, ``pgd_l2``, ``apgd``, ``apgd_fast``,
``autoattack`` and ``autoattack_fast``.

Each family reads one sweep per model (:func:`~safetycheck.checks.adversarial.attack_sweep`),
computed the first time one of its checks asks and shared by the others. ``fgsm``, ``apgd*`` and
``autoattack*`` sweep the run's Linf epsilons; ``pgd_l2`` has its own radii,
:data:`PGD_L2_EPSILONS`, because L2 and Linf radii are not comparable (an Linf ball of 0.1 holds
L2 perturbations of size up to 2.8 on 784 pixels).

One meaning per name: ``apgd`` and ``autoattack`` run the standard budget on every device, the
``*_fast`` families the fast one (see :mod:`safetycheck.measures.attacks.cascades`); each has its
own threshold keys, and every result records its cascade, budget and device in its params.
"""

from __future__ import annotations

from safetycheck.checks.adversarial import (
    attack_column,
    attack_params,
    attack_sweep,
    attacked_subset,
    sweep_measurement,
)
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.errors import ConfigError
from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.measures.attacks.cascades import BUDGETS, NORM, budget_of, cascade
from safetycheck.measures.robustness import SweepResult

# L2 radii in pixel units, fixed rather than taken from the run's Linf epsilons: the MNIST range
# where undefended CNNs go from mostly robust (0.5) to mostly broken (2.0), and where L2-trained
# models are compared in the literature (Madry et al.'s L2 challenge uses 2.0).
PGD_L2_EPSILONS = (0.5, 1.0, 1.5, 2.0)


def l2_epsilons(settings: RunSettings) -> tuple[float, ...]:
    """The L2 radii of the run's dataset profile (MNIST's: :data:`PGD_L2_EPSILONS`)."""
    return tuple(settings.dataset.epsilons.get("l2", PGD_L2_EPSILONS))


def _sweep(evaluation: ModelEvaluation, name: str) -> SweepResult:
    epsilons = l2_epsilons(evaluation.settings) if name == "pgd_l2" else None
    return attack_sweep(evaluation, name, cascade(name, seed=evaluation.settings.seed), epsilons)


def _measurer(name: str):
    def measure(evaluation: ModelEvaluation, params: dict) -> Measurement:
        sweep = _sweep(evaluation, name)
        eps = float(params["eps"])
        if eps not in sweep.robust:
            raise ConfigError(
                f"{name} is not measured at eps={eps:g}; its radii are "
                f"{', '.join(map(str, sweep.epsilons))}."
            )
        broken = ", ".join(
            f"{attack} broke {count}" for attack, count in sweep.broken_by[eps].items()
        )
        budget = f"; {budget_of(name)} budget" if name in BUDGETS else ""
        measurement = sweep_measurement(
            sweep,
            eps,
            f"{NORM[name]} worst case over {'; '.join(sweep.descriptions[eps])}{budget}; {broken}; "
            f"{attacked_subset(evaluation)}",
            evaluation,
        )
        attacks = cascade(name, seed=evaluation.settings.seed)
        return attack_params(measurement, attacks, budget_of(name), evaluation)

    return measure


def _run_epsilons(settings: RunSettings) -> list[dict]:
    return [{"eps": float(eps)} for eps in sorted(settings.epsilons)]


def _l2_epsilons(settings: RunSettings) -> list[dict]:
    return [{"eps": eps} for eps in l2_epsilons(settings)]


# The built-in bounds: the example LeNet-5 on 200 images measures FGSM 0.965, 0.86 at eps 0.05,
# 0.1; APGD (fast budget) 0.945, 0.765; AutoAttack (fast) 0.94, 0.79; PGD-L2 0.97, 0.885 at 0.5, 1.
_LINF_BOUNDS = {"": 0.50, "[eps=0.05]": 0.80, "[eps=0.1]": 0.50}
_NOTES = {
    "fgsm": "robust accuracy under FGSM (L\u221e); an upper bound of the true robust accuracy",
    "pgd_l2": "robust accuracy under PGD (L2); an upper bound",
    "apgd": "robust accuracy under APGD-CE + APGD-T (100 steps, 9 targets); an upper bound",
    "apgd_fast": "robust accuracy under APGD-CE + APGD-T at the fast budget; an upper bound",
    "autoattack": (
        "robust accuracy under standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square); an upper "
        "bound of the true robust accuracy"
    ),
    "autoattack_fast": "robust accuracy under AutoAttack at the fast budget; an upper bound",
}


def _attack_family(name: str, variants, plot: str, plot_rank: int, bounds: dict) -> CheckFamily:
    return CheckFamily(
        name=name,
        metric="robust accuracy",
        bound="min",
        variants=variants,
        measure=_measurer(name),
        param_names=("eps",),
        # FGSM is nearly free; the others cost minutes on a CPU and are opt-in (``checks``).
        default=name == "fgsm",
        default_bounds={f"{name}{suffix}": value for suffix, value in bounds.items()},
        note=_NOTES[name],
        plot=plot,
        plot_rank=plot_rank,
        proportion=True,
        study_column=attack_column(name),
        study_rank=1,
    )


FGSM = _attack_family("fgsm", _run_epsilons, "linf_attacks", 0, _LINF_BOUNDS)
APGD = _attack_family("apgd", _run_epsilons, "linf_attacks", 2, _LINF_BOUNDS)
APGD_FAST = _attack_family("apgd_fast", _run_epsilons, "linf_attacks", 3, _LINF_BOUNDS)
AUTOATTACK = _attack_family("autoattack", _run_epsilons, "linf_attacks", 4, _LINF_BOUNDS)
AUTOATTACK_FAST = _attack_family("autoattack_fast", _run_epsilons, "linf_attacks", 5, _LINF_BOUNDS)
PGD_L2 = _attack_family(
    "pgd_l2", _l2_epsilons, "l2_attacks", 0, {"": 0.50, "[eps=0.5]": 0.80, "[eps=1]": 0.60}
)

# Registry order (and so test order) as before, the fast variants after their standard ones.
FAMILIES = (FGSM, PGD_L2, APGD, APGD_FAST, AUTOATTACK, AUTOATTACK_FAST)


def threat_models(settings: RunSettings) -> dict[str, dict]:
    """The threat model of every attack family the settings plan, as explicit data (norm, budget,
    each attack with all its parameters), for the run metadata and the study's fingerprint."""
    from safetycheck.checks import plan_checks
    from safetycheck.checks.adversarial import pgd_linf_attacks
    from safetycheck.measures.attacks.cascades import describe_attacks, threat_model

    planned = {check.family.name for check in plan_checks(settings)}
    models = {}
    if "pgd_linf" in planned:
        models["pgd_linf"] = {
            "cascade": "pgd_linf",
            "norm": "Linf",
            "budget": None,
            "attacks": describe_attacks(pgd_linf_attacks(settings.seed)),
        }
    for family in FAMILIES:
        if family.name in planned:
            models[family.name] = threat_model(family.name, settings.seed)
    return models
