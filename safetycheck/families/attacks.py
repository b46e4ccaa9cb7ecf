"""Robust accuracy under the other attack sets: ``fgsm``, ``pgd_l2``, ``apgd`` and ``autoattack``.

Each family reads one sweep per model (:func:`~safetycheck.families.adversarial.attack_sweep`),
computed the first time one of its checks asks and shared by the others. ``fgsm``, ``apgd`` and
``autoattack`` sweep the run's Linf epsilons; ``pgd_l2`` has its own radii,
:data:`PGD_L2_EPSILONS`, because L2 and Linf radii are not comparable (an Linf ball of 0.1 holds
L2 perturbations of size up to 2.8 on 784 pixels).

The AutoAttack-grade sets run the ``"standard"`` budget on a GPU and the ``"fast"`` one on the CPU
(see :mod:`safetycheck.attacks.cascades`); the measurement's details say which.
"""

from __future__ import annotations

from ..attacks.cascades import NORM, cascade
from ..checks import CheckFamily, Measurement, register
from ..errors import ConfigError
from ..evaluation import ModelEvaluation, RunSettings
from ..robustness import SweepResult
from .adversarial import attack_sweep, attacked_subset, sweep_measurement

# L2 radii in pixel units, fixed rather than taken from the run's Linf epsilons: the MNIST range
# where undefended CNNs go from mostly robust (0.5) to mostly broken (2.0), and where L2-trained
# models are compared in the literature (Madry et al.'s L2 challenge uses 2.0).
PGD_L2_EPSILONS = (0.5, 1.0, 1.5, 2.0)


def _budget(evaluation: ModelEvaluation) -> str:
    return "standard" if evaluation.settings.device.type == "cuda" else "fast"


def _sweep(evaluation: ModelEvaluation, name: str) -> SweepResult:
    budget = _budget(evaluation) if name in ("apgd", "autoattack") else "standard"
    epsilons = PGD_L2_EPSILONS if name == "pgd_l2" else None
    return attack_sweep(
        evaluation, name, cascade(name, seed=evaluation.settings.seed, budget=budget), epsilons
    )


def _measurer(name: str):
    def measure(evaluation: ModelEvaluation, params: dict) -> Measurement:
        sweep = _sweep(evaluation, name)
        eps = float(params["eps"])
        if eps not in sweep.robust:
            raise ConfigError(
                f"{name} is not measured at eps={eps:g}; its radii are {', '.join(map(str, sweep.epsilons))}."
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
    return [{"eps": eps} for eps in PGD_L2_EPSILONS]


for _name, _variants in (
    ("fgsm", _run_epsilons),
    ("pgd_l2", _l2_epsilons),
    ("apgd", _run_epsilons),
    ("autoattack", _run_epsilons),
):
    register(
        CheckFamily(
            name=_name,
            metric="robust accuracy",
            bound="min",
            variants=_variants,
            measure=_measurer(_name),
            param_names=("eps",),
            # FGSM is nearly free; the others cost minutes on a CPU and are opt-in (``checks``).
            default=_name == "fgsm",
        )
    )
