"""Robust accuracy under attack, per epsilon, from one shared sweep per model and attack."""

from ..attacks.pgd import PGD
from ..checks import CheckFamily, Measurement, register
from ..evaluation import ModelEvaluation
from ..robustness import SweepResult, robust_accuracy_sweep
from ..stats import wilson_interval


def attack_sweep(
    evaluation: ModelEvaluation, key: str, attacks: list, epsilons=None
) -> SweepResult:
    """The sweep of the cascade ``attacks`` (``(name, factory(eps))`` pairs, cheapest first) over
    ``epsilons`` (the run's Linf epsilons by default) on the attacked subset, computed once per
    model under ``key`` and shared by every check that reads it."""

    def run(ev: ModelEvaluation) -> SweepResult:
        index = ev.attack_indices
        return robust_accuracy_sweep(
            ev.attack_model,
            ev.test_set.images[index].to(ev.settings.device),
            ev.test_set.labels[index].to(ev.settings.device),
            ev.settings.epsilons if epsilons is None else epsilons,
            attacks,
            clean_correct=ev.clean_correct[index],
            batch_size=ev.settings.batch_size,
        )

    return evaluation.sweep(key, run)


def pgd_sweep(evaluation: ModelEvaluation, norm: str) -> SweepResult:
    """The PGD sweep over the run's epsilons on the attacked subset, computed once per model."""
    seed = evaluation.settings.seed
    return attack_sweep(
        evaluation,
        f"pgd_{norm.lower()}",
        [(f"pgd_{norm.lower()}", lambda eps: PGD(eps=eps, norm=norm, seed=seed))],
    )


def sweep_measurement(sweep: SweepResult, eps: float, details: str) -> Measurement:
    """Robust accuracy at ``eps`` with its Wilson interval; the artifacts say which attack of the
    cascade broke how many images there, for the reports."""
    robust = int(sweep.robust[eps].sum())
    return Measurement(
        sweep.accuracy(eps),
        sweep.n,
        details,
        ci=wilson_interval(robust, sweep.n),
        artifacts={"broken_by": {name: int(count) for name, count in sweep.broken_by[eps].items()}},
    )


def attacked_subset(evaluation: ModelEvaluation) -> str:
    """Which images were attacked, for a check's details."""
    attacked, evaluated = len(evaluation.attack_indices), evaluation.describe_test_set()
    if attacked == len(evaluation.test_set):
        return f"attacked: {evaluated}"
    return f"attacked: a seeded random {attacked} of {evaluated}"


def _measure_pgd_linf(evaluation: ModelEvaluation, params: dict) -> Measurement:
    sweep = pgd_sweep(evaluation, "Linf")
    eps = float(params["eps"])
    return sweep_measurement(
        sweep, eps, f"{'; '.join(sweep.descriptions[eps])}; {attacked_subset(evaluation)}"
    )


register(
    CheckFamily(
        name="pgd_linf",
        metric="robust accuracy",
        bound="min",
        variants=lambda settings: [{"eps": float(eps)} for eps in sorted(settings.epsilons)],
        measure=_measure_pgd_linf,
        param_names=("eps",),
    )
)
