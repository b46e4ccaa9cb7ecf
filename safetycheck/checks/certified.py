"""Certified robust accuracy: the share of the attacked test images that no perturbation in the
Linf ball can misclassify, proved by interval bound propagation (``certified[ibp,eps=0.1]``) or by
CROWN's backward linear bounds (``certified[crown,eps=0.1]``; CROWN-IBP where full CROWN would not
fit in memory, and the details say so).

A certificate is a *lower* bound of the true robust accuracy, where every attack family gives an
*upper* bound: the true value lies between ``certified`` and the strongest attack's figure. The
family reads the same attacked subset as the attack families, so both bounds are of the same
images, and it checks that they never cross: an image certified at eps that an attack of this run
broke at eps is a bug in one of the two, reported as an error, never counted.

A model with a layer the bounds do not cover is skipped with ``not certifiable: <layer>``, never
passed. A randomised model (allowed with ``--safety-allow-randomized``) is skipped too: a bound on
one draw of its randomness proves nothing of the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from safetycheck.checks.accuracy import accuracy_measurement
from safetycheck.checks.adversarial import attacked_subset
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.errors import NotCertifiable, SafetyCheckError
from safetycheck.core.registry import CheckFamily, CheckSkipped, Measurement

METHODS = ("ibp", "crown")


@dataclass(frozen=True)
class CertifiedSweep:
    """``certified[eps]``: (N,) bool over the attacked images; ``method[eps]``: the bound method
    actually used; ``seconds``: time spent on bounds; ``skipped``: why nothing could be
    certified (``not certifiable: ...``), else None."""

    certified: dict[float, torch.Tensor]
    method: dict[float, str]
    seconds: float
    skipped: str | None = None


def certified_sweep(evaluation: ModelEvaluation, method: str) -> CertifiedSweep:
    """Certify the attacked images at every Linf eps of the run, in ascending order, each eps only
    on the images certified at the one before (the clean-correct ones first): a larger ball is
    never certified where a smaller one was not, so this costs least and loses nothing. Computed
    once per model and method."""

    def run(ev: ModelEvaluation) -> CertifiedSweep:
        from safetycheck.measures.certified import certify

        index = ev.attack_indices
        images, labels = ev.test_set.images[index], ev.test_set.labels[index]
        alive = ev.clean_correct[index].clone()
        certified: dict[float, torch.Tensor] = {}
        used: dict[float, str] = {}
        seconds = 0.0
        try:  # whether the model can be bounded at all, even if no image is left to certify
            probe = images[:1].to(ev.settings.device), labels[:1].to(ev.settings.device)
            certify(ev.model, *probe, 0.0, method=method)
        except NotCertifiable as exc:
            return CertifiedSweep({}, {}, seconds, skipped=str(exc))
        for eps in sorted(ev.settings.epsilons):
            rows = torch.nonzero(alive).flatten()
            if len(rows):
                result = certify(
                    ev.model,
                    images[rows].to(ev.settings.device),
                    labels[rows].to(ev.settings.device),
                    float(eps),
                    method=method,
                    batch_size=ev.settings.batch_size,
                )
                alive[rows] = result.certified.cpu()
                used[float(eps)] = result.method
                seconds += result.seconds
            else:
                used[float(eps)] = method
            certified[float(eps)] = alive.clone()
        return CertifiedSweep(certified, used, seconds)

    return evaluation.cached(f"certified:{method}", run)


def _check_soundness(evaluation: ModelEvaluation, eps: float, certified: torch.Tensor) -> None:
    """Raise if an attack of this run broke an image certified at ``eps``."""
    for key, sweep in evaluation.computed("sweep:").items():
        robust = getattr(sweep, "robust", {}).get(eps)
        if robust is None or len(robust) > len(certified):
            continue
        # an early-stopped sweep attacked a prefix of the same images
        broken = certified[: len(robust)] & ~robust.cpu()
        if bool(broken.any()):
            raise SafetyCheckError(
                f"{evaluation.mut.name}: {int(broken.sum())} image(s) certified robust at "
                f"eps={eps:g} were broken by the {key.removeprefix('sweep:')} attacks: the bounds "
                "or the attack are wrong; please report this with the model."
            )


def _measure(evaluation: ModelEvaluation, params: dict) -> Measurement:
    if evaluation.mut.randomized:
        raise CheckSkipped(
            "not certifiable: the model is randomised (its eval-mode outputs vary between "
            "calls), so a bound on one draw of its randomness proves nothing of the next"
        )
    method, eps = str(params["method"]), float(params["eps"])
    sweep = certified_sweep(evaluation, method)
    if sweep.skipped is not None:
        raise CheckSkipped(sweep.skipped)
    certified = sweep.certified[eps]
    _check_soundness(evaluation, eps, certified)
    used = sweep.method[eps]
    how = used if used == method else f"{used} (full {method} would not fit in memory)"
    return accuracy_measurement(
        certified,
        f"lower bound of the robust accuracy: certified by {how} in the Linf ball of radius "
        f"{eps:g} (images certified at the next smaller radius only); "
        f"{attacked_subset(evaluation)}",
        per_example=evaluation.per_example(
            certified, f"certified:{method}", subset=evaluation.attack_indices
        ),
    )


def _variants(settings: RunSettings) -> list[dict]:
    return [
        {"method": method, "eps": float(eps)}
        for method in METHODS
        for eps in sorted(settings.epsilons)
    ]


def _study_column(params) -> str | None:
    method, eps = params.get("method"), params.get("eps")
    if method not in METHODS or isinstance(eps, bool) or not isinstance(eps, (int, float)):
        return None
    # Not an "<attack>@<eps>" column: a certificate is a lower bound, never compared as an attack.
    return f"certified:{method}:{float(eps):g}"


CERTIFIED = CheckFamily(
    name="certified",
    metric="certified robust accuracy",
    bound="min",
    variants=_variants,
    measure=_measure,
    param_names=("method", "eps"),
    positional=True,
    keyword_params=("eps",),
    param_choices={"method": METHODS},
    # Opt-in: an undefended network certifies next to nothing beyond tiny radii, and full CROWN
    # costs seconds per image on a LeNet-sized CNN.
    default=False,
    # The example IBP-trained small CNN certifies about 0.9 at 0.1; a release gate's own file
    # sets what its model must keep.
    default_bounds={"certified": 0.5},
    note="certified robust accuracy (IBP or CROWN): a lower bound, where attacks give upper ones",
    proportion=True,
    study_column=_study_column,
    study_rank=1,
)

FAMILIES = (CERTIFIED,)
