"""``attack_acceleration``: the accelerated attacks are not weaker than plain fp32 ones.

Generated only when the run asks for reduced precision, channels_last or torch.compile
(:mod:`safetycheck.measures.acceleration`). PGD-Linf (40 steps of 0.01, the same seed) attacks the
first
:data:`COMPARED_SAMPLES` images of the attacked subset at the middle radius of the run, once
through the accelerated model and once through the plain fp32 model. The value is the robust
accuracy the acceleration adds (accelerated minus fp32; negative when it finds more), gated from
above: a bf16 attack that loses adversarial examples to rounding fails here instead of quietly
overstating every robust accuracy of the run.
"""

from __future__ import annotations

from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.robustness import robust_accuracy_sweep

COMPARED_SAMPLES = 200


def compared_eps(settings: RunSettings) -> float:
    """The middle radius of the run (the lower middle for an even count): 0.1 by default, where an
    undefended model's robust accuracy is far from both 0 and 1, so lost examples show."""
    ordered = sorted(settings.epsilons)
    return float(ordered[(len(ordered) - 1) // 2])


def _measure(evaluation: ModelEvaluation, params: dict) -> Measurement:
    settings = evaluation.settings
    eps = compared_eps(settings)
    index = evaluation.attack_indices[:COMPARED_SAMPLES]
    images = evaluation.test_set.images[index].to(settings.device)
    labels = evaluation.test_set.labels[index].to(settings.device)
    attack = [("pgd_linf", lambda radius: PGD(eps=radius, norm="Linf", seed=settings.seed))]

    def accuracy(model) -> float:
        sweep = robust_accuracy_sweep(
            model,
            images,
            labels,
            (eps,),
            attack,
            clean_correct=evaluation.clean_correct[index],
            batch_size=settings.batch_size,
        )
        return sweep.accuracy(eps)

    accelerated = evaluation.cached(
        "acceleration:accelerated", lambda ev: accuracy(ev.attack_model)
    )
    plain = evaluation.cached("acceleration:fp32", lambda ev: accuracy(ev.model))
    return Measurement(
        accelerated - plain,
        len(index),
        f"PGD-Linf eps={eps:g}, 40 steps of 0.01, seed {settings.seed}: robust accuracy "
        f"{accelerated:.4f} with {settings.acceleration.describe()} against {plain:.4f} in plain "
        f"fp32, on the first {len(index)} attacked images (value: accelerated minus fp32; positive "
        "means the acceleration weakens the attacks)",
    )


ATTACK_ACCELERATION = CheckFamily(
    name="attack_acceleration",
    metric="robust accuracy added by the attack acceleration",
    bound="max",
    variants=lambda settings: [{}] if settings.acceleration.active else [],
    measure=_measure,
    value_range=(-1.0, 1.0),
    default=False,  # planned by plan_checks whenever the run is accelerated, whatever the selection
    # At most 2 points of robust accuracy above plain fp32 on the same 200 images (4 images), or
    # the acceleration is weakening the attack.
    default_bounds={"attack_acceleration": 0.02},
)

FAMILIES = (ATTACK_ACCELERATION,)
