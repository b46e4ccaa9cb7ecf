"""Is the model's robust accuracy trustworthy? Gradient-masking diagnostics and attack
invariants as checks.

``attack_trust[gradients]``, ``[iterative]``, ``[budget]``, ``[large_eps]`` and ``[black_box]``
run :mod:`safetycheck.measures.attacks.diagnostics` (AutoAttack's runtime checks and the checklists
of Athalye et al. 2018 and Carlini et al. 2019) on the first :data:`TRUST_SAMPLES` images of the
attacked subset. The value is 1 when no symptom was found and 0 when one was; the default bound is
1, so a model that masks its gradients fails here instead of being reported robust. The details
carry the diagnostic's own sentence and numbers.
"""

from __future__ import annotations

from collections.abc import Callable

from safetycheck.checks.evaluation import ModelEvaluation
from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.measures.attacks import diagnostics
from safetycheck.measures.attacks.invariants import PROPERTIES, check_invariant

TRUST_SAMPLES = 200
DIAGNOSTICS: dict[str, Callable[..., diagnostics.Diagnostic]] = {
    "gradients": diagnostics.gradient_health,
    "iterative": diagnostics.iterative_vs_single_step,
    "budget": diagnostics.more_budget_not_weaker,
    "large_eps": diagnostics.large_eps_accuracy,
    "black_box": diagnostics.black_box_vs_white_box,
}
_SEEDED = {"iterative", "budget", "large_eps", "black_box"}


def run_diagnostic(evaluation: ModelEvaluation, name: str) -> diagnostics.Diagnostic:
    def compute(ev: ModelEvaluation) -> diagnostics.Diagnostic:
        index = ev.attack_indices[:TRUST_SAMPLES]
        images = ev.test_set.images[index].to(ev.settings.device)
        labels = ev.test_set.labels[index].to(ev.settings.device)
        options = {"seed": ev.settings.seed} if name in _SEEDED else {}
        return DIAGNOSTICS[name](ev.model, images, labels, **options)

    return evaluation.cached(f"trust:{name}", compute)


def _measure(evaluation: ModelEvaluation, params: dict) -> Measurement:
    result = run_diagnostic(evaluation, params["diagnostic"])
    numbers = ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in result.measured.items()
    )
    n = int(result.measured.get("n", min(TRUST_SAMPLES, len(evaluation.attack_indices))))
    return Measurement(
        1.0 if result.passed else 0.0, n, f"{result.message} ({numbers}; 1 = no symptom)"
    )


ATTACK_TRUST = CheckFamily(
    name="attack_trust",
    metric="trustworthiness (1 = no gradient-masking symptom)",
    bound="min",
    variants=lambda settings: [{"diagnostic": name} for name in DIAGNOSTICS],
    measure=_measure,
    param_names=("diagnostic",),
    positional=True,  # attack_trust[gradients]
    param_choices={"diagnostic": tuple(DIAGNOSTICS)},
    # 1 means no gradient-masking symptom: a masking model must not pass as robust.
    default_bounds={"attack_trust": 1.0},
    note="gradient-masking diagnostics",
)


# ---------------------------------------------------------------------------------------------
# attack_invariants[...]: the attack invariants, searched with Hypothesis on the model under test

INVARIANT_SAMPLES = 8


def _measure_invariant(evaluation: ModelEvaluation, params: dict) -> Measurement:
    name = params["invariant"]

    def compute(ev: ModelEvaluation):
        index = ev.attack_indices[:INVARIANT_SAMPLES]
        return check_invariant(
            name,
            ev.model,
            ev.test_set.images[index].to(ev.settings.device),
            ev.test_set.labels[index].to(ev.settings.device),
        )

    result = evaluation.cached(f"invariant:{name}", compute)
    return Measurement(
        1.0 if result.passed else 0.0,
        result.examples,
        f"{result.message} (Hypothesis, derandomised, on {INVARIANT_SAMPLES} MNIST test images; "
        f"n counts the drawn examples)",
    )


ATTACK_INVARIANTS = CheckFamily(
    name="attack_invariants",
    metric="attack invariant holds (1 = no violation found)",
    bound="min",
    variants=lambda settings: [{"invariant": name} for name in PROPERTIES],
    measure=_measure_invariant,
    param_names=("invariant",),
    positional=True,  # attack_invariants[in_ball]
    param_choices={"invariant": tuple(PROPERTIES)},
    default_bounds={"attack_invariants": 1.0},
    note="attack invariants searched with Hypothesis",
)

FAMILIES = (ATTACK_TRUST, ATTACK_INVARIANTS)
