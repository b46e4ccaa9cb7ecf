"""Robust accuracy under attack, per epsilon, from one shared sweep per model and attack."""

import dataclasses
import math

from safetycheck.checks.evaluation import ModelEvaluation
from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.core.sequential import confidence_sequence, sequential_verdict
from safetycheck.core.stats import wilson_interval
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.robustness import StopRule, SweepResult, robust_accuracy_sweep


def attack_sweep(
    evaluation: ModelEvaluation, key: str, attacks: list, epsilons=None
) -> SweepResult:
    """The sweep of the cascade ``attacks`` (``(name, factory(eps))`` pairs, cheapest first) over
    ``epsilons`` (the run's Linf epsilons by default) on the attacked subset, computed once per
    model under ``key`` and shared by every check that reads it."""

    def run(ev: ModelEvaluation) -> SweepResult:
        index = ev.attack_indices
        radii = ev.settings.epsilons if epsilons is None else epsilons
        return robust_accuracy_sweep(
            ev.attack_model,
            ev.test_set.images[index].to(ev.settings.device),
            ev.test_set.labels[index].to(ev.settings.device),
            radii,
            attacks,
            clean_correct=ev.clean_correct[index],
            batch_size=ev.settings.batch_size,
            stop=early_stop_rule(ev, key, radii),
            block=ev.settings.early_stop_block,
            shard=ev.shard,
        )

    return evaluation.sweep(key, run)


def early_stop_rule(evaluation: ModelEvaluation, family_name: str, epsilons) -> StopRule | None:
    """The sweep's stopping rule under ``--safety-early-stop``: stop once, at every epsilon, the
    anytime-valid confidence sequence of the robust accuracy (:mod:`safetycheck.core.sequential`)
    lies wholly on one side of that check's threshold. None where early stopping is off or the
    thresholds are unknown (a study run)."""
    alpha, threshold_of = evaluation.settings.early_stop_alpha, evaluation.threshold_of
    if alpha is None or threshold_of is None:
        return None
    from safetycheck.checks import families

    family = families().get(family_name)
    if family is None:
        return None
    thresholds = {}
    for eps in sorted(set(float(e) for e in epsilons)):
        threshold = threshold_of(family_name, family.check_id({"eps": eps}))
        if threshold is None or not math.isfinite(threshold):
            return None  # a check without a threshold has no verdict to wait for
        thresholds[eps] = threshold

    def stop(sweep: SweepResult) -> dict[float, str]:
        known = {}
        for eps, threshold in thresholds.items():
            scored, robust = sweep.scored(eps), int(sweep.robust[eps].sum())
            verdict = sequential_verdict(robust, scored, threshold, family.bound, alpha)
            if verdict is None:
                continue
            low, high = confidence_sequence(robust, scored, alpha)
            side = "above" if (verdict == "pass") == (family.bound == "min") else "below"
            known[eps] = (
                f"stopped early after {scored} of {sweep.planned} images: the robust accuracy's "
                f"{1 - alpha:.0%} confidence sequence [{low:.3f}, {high:.3f}] lies {side} the "
                f"threshold {threshold:g} ({verdict}; --safety-early-stop)"
            )
        return known

    return stop


def pgd_sweep(evaluation: ModelEvaluation, norm: str) -> SweepResult:
    """The PGD sweep over the run's epsilons on the attacked subset, computed once per model."""
    seed = evaluation.settings.seed
    attacks = (
        pgd_linf_attacks(seed)
        if norm == "Linf"
        else [(f"pgd_{norm.lower()}", lambda eps: PGD(eps=eps, norm=norm, seed=seed))]
    )
    return attack_sweep(evaluation, f"pgd_{norm.lower()}", attacks)


def sweep_measurement(
    sweep: SweepResult, eps: float, details: str, evaluation: ModelEvaluation | None = None
) -> Measurement:
    """Robust accuracy at ``eps`` with its Wilson interval; the artifacts say which attack of the
    cascade broke how many images there, for the reports. With ``evaluation``, the record gets
    each attacked image's verdict (per-example results)."""
    robust, scored = int(sweep.robust[eps].sum()), sweep.scored(eps)
    per_example = None
    if evaluation is not None:
        per_example = evaluation.per_example(
            sweep.robust[eps], "attacked", subset=evaluation.attack_indices[:scored]
        )
    artifacts: dict = {
        "broken_by": {name: int(count) for name, count in sweep.broken_by[eps].items()}
    }
    if eps in sweep.stopped:
        details = f"{details}; {sweep.stopped[eps]}"
        artifacts["early_stop"] = {"images": scored, "planned": sweep.planned}
    return Measurement(
        sweep.accuracy(eps),
        scored,
        details,
        ci=wilson_interval(robust, scored),
        artifacts=artifacts,
        per_example=per_example,
    )


def attack_params(
    measurement: Measurement,
    attacks: list,
    budget: str,
    evaluation: ModelEvaluation,
) -> Measurement:
    """``measurement`` with its threat model in its params: the attacks of the cascade in order
    (``(name, factory)`` pairs), the budget ("standard", "fast", or "fixed" for the attack sets
    with one budget) and the device, so that a result says what it measured on every machine (the
    full parameters of every attack are in the run metadata's ``threat_models``)."""
    params = {
        "attacks": ", ".join(name for name, _ in attacks),
        "budget": budget,
        "device": str(evaluation.settings.device),
    }
    return dataclasses.replace(measurement, params=params)


def pgd_linf_attacks(seed: int) -> list:
    """The ``pgd_linf`` family's one attack: Madry's PGD-40 (no FGSM before it)."""
    return [("pgd_linf", lambda eps: PGD(eps=eps, norm="Linf", seed=seed))]


def attacked_subset(evaluation: ModelEvaluation) -> str:
    """Which images were attacked, for a check's details."""
    attacked, evaluated = len(evaluation.attack_indices), evaluation.describe_test_set()
    if attacked == len(evaluation.test_set):
        asked = evaluation.settings.attack_samples
        clamped = f" (fewer than the {asked} attack samples asked for)" if asked > attacked else ""
        return f"attacked: {evaluated}{clamped}"
    return f"attacked: a seeded random {attacked} of {evaluated}"


def attack_column(name: str):
    """The study's column for a record of attack family ``name``: ``"pgd_linf@0.1"``."""

    def column(params) -> str | None:
        eps = params.get("eps")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
            return None
        return f"{name}@{float(eps):g}"

    return column


def _measure_pgd_linf(evaluation: ModelEvaluation, params: dict) -> Measurement:
    sweep = pgd_sweep(evaluation, "Linf")
    eps = float(params["eps"])
    measurement = sweep_measurement(
        sweep,
        eps,
        f"{'; '.join(sweep.descriptions[eps])}; {attacked_subset(evaluation)}",
        evaluation,
    )
    return attack_params(
        measurement, pgd_linf_attacks(evaluation.settings.seed), "fixed", evaluation
    )


PGD_LINF = CheckFamily(
    name="pgd_linf",
    metric="robust accuracy",
    bound="min",
    variants=lambda settings: [{"eps": float(eps)} for eps in sorted(settings.epsilons)],
    measure=_measure_pgd_linf,
    param_names=("eps",),
    # At small radii (0.05, 0.1) a floor that an undefended CNN clears, so that failing it means a
    # regression below an undefended baseline; at any other radius, that at least half of the
    # attacked images survive, which only adversarially trained models reach at 0.2 and 0.3 (Madry
    # et al.: 0.89 at 0.3). An undefended model therefore fails the large-eps checks, as it should:
    # a project records its own, lower bounds in its threshold file, as this repository does.
    default_bounds={"pgd_linf": 0.50, "pgd_linf[eps=0.05]": 0.80, "pgd_linf[eps=0.1]": 0.50},
    note=(
        "robust accuracy under PGD-40 (L\u221e); an upper bound of the true robust accuracy, "
        "and PGD alone is not a worst case (use autoattack)"
    ),
    plot="linf_attacks",
    plot_rank=1,
    proportion=True,
    study_column=attack_column("pgd_linf"),
    study_rank=1,
)

FAMILIES = (PGD_LINF,)
