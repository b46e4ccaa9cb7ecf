"""Robust accuracy under the other attack sets: ``fgsm``, ``pgd_l2``, ``apgd`` and ``autoattack``.

Each family reads one sweep per model (:func:`~safetycheck.checks.adversarial.attack_sweep`),
computed the first time one of its checks asks and shared by the others. ``fgsm``, ``apgd`` and
``autoattack`` sweep the run's Linf epsilons; ``pgd_l2`` has its own radii,
:data:`PGD_L2_EPSILONS`, because L2 and Linf radii are not comparable (an Linf ball of 0.1 holds
L2 perturbations of size up to 2.8 on 784 pixels).

The AutoAttack-grade sets run the ``"standard"`` budget on a GPU and the ``"fast"`` one on the CPU
(see :mod:`safetycheck.measures.attacks.cascades`); the measurement's details say which.
"""

from __future__ import annotations

from safetycheck.checks.adversarial import (
    attack_column,
    attack_sweep,
    attacked_subset,
    sweep_measurement,
)
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.errors import ConfigError
from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.measures.attacks.cascades import NORM, cascade
from safetycheck.measures.robustness import SweepResult

# L2 radii in pixel units, fixed rather than taken from the run's Linf epsilons: the MNIST range
# where undefended CNNs go from mostly robust (0.5) to mostly broken (2.0), and where L2-trained
# models are compared in the literature (Madry et al.'s L2 challenge uses 2.0).
PGD_L2_EPSILONS = (0.5, 1.0, 1.5, 2.0)


def l2_epsilons(settings: RunSettings) -> tuple[float, ...]:
    """The L2 radii of the run's dataset profile (MNIST's: :data:`PGD_L2_EPSILONS`)."""
    return tuple(settings.dataset.epsilons.get("l2", PGD_L2_EPSILONS))


def _budget(evaluation: ModelEvaluation) -> str:
    return "standard" if evaluation.settings.device.type == "cuda" else "fast"


def _sweep(evaluation: ModelEvaluation, name: str) -> SweepResult:
    budget = _budget(evaluation) if name in ("apgd", "autoattack") else "standard"
    epsilons = l2_epsilons(evaluation.settings) if name == "pgd_l2" else None
    return attack_sweep(
        evaluation, name, cascade(name, seed=evaluation.settings.seed, budget=budget), epsilons
    )


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
        budget = f"; {_budget(evaluation)} budget" if name in ("apgd", "autoattack") else ""
        return sweep_measurement(
            sweep,
            eps,
            f"{NORM[name]} worst case over {'; '.join(sweep.descriptions[eps])}{budget}; {broken}; "
            f"{attacked_subset(evaluation)}",
        )

    return measure


def _run_epsilons(settings: RunSettings) -> list[dict]:
    return [{"eps": float(eps)} for eps in sorted(settings.epsilons)]


def _l2_epsilons(settings: RunSettings) -> list[dict]:
    return [{"eps": eps} for eps in l2_epsilons(settings)]


# The built-in bounds: the example LeNet-5 on 200 images measures FGSM 0.965, 0.86 at eps 0.05,
# 0.1; APGD 0.945, 0.765; AutoAttack 0.94, 0.79; PGD-L2 0.97, 0.885 at 0.5, 1.
_LINF_BOUNDS = {"": 0.50, "[eps=0.05]": 0.80, "[eps=0.1]": 0.50}
_NOTES = {
    "fgsm": "robust accuracy under FGSM (L\u221e)",
    "pgd_l2": "robust accuracy under PGD (L2)",
    "apgd": "robust accuracy under APGD-CE + APGD-T",
    "autoattack": "robust accuracy under APGD-CE, APGD-T and Square",
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
AUTOATTACK = _attack_family("autoattack", _run_epsilons, "linf_attacks", 3, _LINF_BOUNDS)
PGD_L2 = _attack_family(
    "pgd_l2", _l2_epsilons, "l2_attacks", 0, {"": 0.50, "[eps=0.5]": 0.80, "[eps=1]": 0.60}
)

# Registry order (and so test order) as before: fgsm, pgd_l2, apgd, autoattack.
FAMILIES = (FGSM, PGD_L2, APGD, AUTOATTACK)
