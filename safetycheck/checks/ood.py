"""OOD detection, one check per (OOD set, score): MNIST test (positive) against the set. AUROC
(``ood_auroc``) and the operating point a deployment runs, the false-positive rate at 95% TPR with
its score threshold (``ood_fpr95``).

All checks of one model share one :class:`~safetycheck.measures.ood.ModelOOD`, cached on its
:class:`~safetycheck.checks.evaluation.ModelEvaluation`: the MNIST test logits are the evaluation's
``clean_logits``, each OOD set passes through the model once, the feature detectors are fitted once.
MSP (Hendrycks & Gimpel 2017) is the gated score of the default profile; the others are measured
with a floor of chance level.
"""

from __future__ import annotations

import dataclasses
import hashlib

import torch

from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.per_example import PerExampleRanking, images_digest
from safetycheck.core.registry import CheckFamily, CheckSkipped, Measurement
from safetycheck.core.stats import wilson_interval
from safetycheck.measures.ood import (
    IN_DISTRIBUTION,
    SCORES,
    ModelOOD,
    OODSet,
    OODSettings,
    load_ood_set,
)
from safetycheck.measures.ood_metrics import misranked_counts


def ood_settings(settings: RunSettings) -> OODSettings:
    return settings.ood


def model_ood(evaluation: ModelEvaluation) -> ModelOOD:
    """The model's shared OOD work, created on first use."""

    def create(ev: ModelEvaluation) -> ModelOOD:
        # The evaluation's test set and its clean logits are the in-distribution side of every
        # check.
        settings = ood_settings(ev.settings)
        image_sets = {
            IN_DISTRIBUTION: OODSet(IN_DISTRIBUTION, ev.test_set.images, ev.describe_test_set())
        }
        if ev.settings.samples is not None:
            image_sets.update(_ood_subsets(ev, settings))
            # Quick mode fits the feature detectors on fewer training images too (at least 10 per
            # evaluated test image, so the fit is never the weak part).
            fit = min(
                settings.fit_samples or 60_000, max(10 * ev.settings.samples, settings.knn_k, 100)
            )
            settings = dataclasses.replace(
                settings, fit_samples=fit, knn_bank=min(settings.knn_bank, fit)
            )
        return ModelOOD(
            ev.model,
            settings,
            root=ev.settings.data_root,
            download=ev.settings.download,
            seed=ev.settings.seed,
            batch_size=ev.settings.batch_size,
            in_logits=ev.clean_logits,
            in_outputs=ev.clean_outputs,
            image_sets=image_sets,
            profile=ev.settings.dataset,
            # The OOD work goes into the evaluation's one cache (and its progress lines).
            store=lambda key, compute, announce: ev.cached(key, lambda _: compute(), announce),
            outputs_of=(
                (lambda images, what: ev.outputs_of(images, what, ev.settings.batch_size))
                if ev.shard.active
                else None
            ),
        )

    return evaluation.cached("ood", create, announce=False)


def _ood_subsets(evaluation: ModelEvaluation, settings: OODSettings) -> dict[str, OODSet]:
    """Under ``samples``, each OOD set shrinks to a seeded random subset of as many images as the
    in-distribution side, so that a quick run stays quick and AUROC stays balanced."""
    samples = evaluation.settings.samples
    assert samples is not None, "OOD subsets are drawn only under --safety-samples"
    subsets = {}
    for name in settings.all_sets:
        full = load_ood_set(
            name,
            settings,
            evaluation.settings.data_root,
            evaluation.settings.download,
            evaluation.settings.seed,
            evaluation.settings.dataset,
        )
        n = min(samples, len(full.images))
        order = torch.randperm(
            len(full.images), generator=torch.Generator().manual_seed(evaluation.settings.seed)
        )
        subsets[name] = OODSet(
            name,
            full.images[order[:n].sort().values],
            f"{full.description}, a seeded subset of {n} (--safety-samples)",
        )
    return subsets


def _variants(settings: RunSettings) -> list[dict]:
    ood = ood_settings(settings)
    return [{"set": name, "score": score} for name in ood.all_sets for score in ood.scores]


def _study_column(params) -> str | None:
    if params.get("set") is None or params.get("score") is None:
        return None
    return f"auroc:{params['set']}-{params['score']}"


def _ranking(evaluation: ModelEvaluation, set_name: str, score: str) -> PerExampleRanking:
    """The per-image ranking of an AUROC (DeLong's placements as counts), with a digest of the
    evaluated test images and of the OOD set's very images (their bytes: a set is identified by
    what was scored, whatever produced it)."""
    ood = model_ood(evaluation)

    def digest_of_set(_: ModelEvaluation) -> str:
        images = ood.images(set_name).images.detach().to("cpu", torch.float32).contiguous()
        return hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]

    set_digest = evaluation.cached(f"ood_images_digest:{set_name}", digest_of_set, announce=False)
    index = evaluation.test_indices
    if index is None:
        index = torch.arange(len(evaluation.test_set))
    digest = images_digest(
        evaluation.settings.dataset.name,
        f"ood:{set_name}:{set_digest}",
        evaluation.settings.seed,
        index,
    )
    inside, outside = ood.scores(IN_DISTRIBUTION, score), ood.scores(set_name, score)
    in_counts, out_counts = misranked_counts(inside.values, outside.values)
    return PerExampleRanking(in_counts, out_counts, digest, evaluation.settings.seed)


def _measure_ood_auroc(evaluation: ModelEvaluation, params: dict) -> Measurement:
    set_name, score = str(params["set"]), str(params["score"])
    result = model_ood(evaluation).result(set_name, score)
    if result.skipped:
        raise CheckSkipped(result.skipped)
    m = result.metrics
    assert m is not None, "an OOD result that is not skipped has metrics"
    low, high = m.auroc_ci
    return Measurement(
        m.auroc,
        m.n_in + m.n_out,
        ci=(float(low), float(high)),
        per_example=_ranking(evaluation, set_name, score),
        artifacts={"roc": {"fpr": result.roc["fpr"], "tpr": result.roc["tpr"]}}
        if result.roc
        else {},
        details=(
            f"{result.description}; higher score = in-distribution, "
            f"{evaluation.settings.dataset.title} test positive; AUROC "
            f"{m.confidence:.0%} CI [{low:.4f}, {high:.4f}] (bootstrap {m.bootstrap}, seed "
            f"{m.seed}); AUPR-in {m.aupr_in:.4f}, AUPR-out {m.aupr_out:.4f}, FPR at 95% TPR "
            f"{m.fpr_at_95_tpr:.4f}; {m.n_in} in vs {m.n_out} OOD images"
        ),
    )


OOD_AUROC = CheckFamily(
    name="ood_auroc",
    metric="OOD detection AUROC",
    bound="min",
    variants=_variants,
    measure=_measure_ood_auroc,
    param_names=("set", "score"),
    positional=True,  # ood_auroc[fmnist-msp]
    param_choices={"score": tuple(SCORES)},
    # Every score at least better than chance (a flipped sign gives well below 0.5); MSP, the gated
    # score, near the example LeNet-5's values (Fashion-MNIST 0.992, KMNIST 0.971, uniform 0.994,
    # Gaussian noise 0.985).
    default_bounds={
        "ood_auroc": 0.50,
        "ood_auroc[fmnist-msp]": 0.95,
        "ood_auroc[kmnist-msp]": 0.95,
        "ood_auroc[uniform-msp]": 0.90,
        "ood_auroc[gaussian-msp]": 0.90,
    },
    note="OOD detection AUROC against MNIST",
    plot="ood",
    study_column=_study_column,
    study_rank=3,
)


def _measure_ood_fpr95(evaluation: ModelEvaluation, params: dict) -> Measurement:
    result = model_ood(evaluation).result(str(params["set"]), str(params["score"]))
    if result.skipped:
        raise CheckSkipped(result.skipped)
    m = result.metrics
    assert m is not None, "an OOD result that is not skipped has metrics"
    accepted = round(m.fpr_at_95_tpr * m.n_out)
    title = evaluation.settings.dataset.title
    return Measurement(
        m.fpr_at_95_tpr,
        m.n_out,
        # The threshold is taken as given (it is the deployed detector's): the interval is the
        # binomial one of the OOD images it accepts.
        ci=wilson_interval(accepted, m.n_out),
        artifacts={
            "operating_point": {
                "tpr": 0.95,
                "threshold": m.threshold_at_95_tpr,
                "fpr": m.fpr_at_95_tpr,
            }
        },
        details=(
            f"{result.description}; a detector accepting a score >= {m.threshold_at_95_tpr:.6g} "
            f"keeps at least 95% of {m.n_in} {title} test images and accepts {accepted} of "
            f"{m.n_out} OOD images; higher score = in-distribution"
        ),
    )


OOD_FPR95 = CheckFamily(
    name="ood_fpr95",
    metric="OOD false-positive rate at 95% TPR",
    bound="max",
    variants=_variants,
    measure=_measure_ood_fpr95,
    param_names=("set", "score"),
    positional=True,  # ood_fpr95[fmnist-msp]
    param_choices={"score": tuple(SCORES)},
    # The operating point OpenOOD and the OOD literature report beside AUROC. Every score at
    # least better than chance (a detector that keeps 95% of the test images by chance accepts
    # 95% of any OOD set); MSP, the gated score, at most a fifth of each OOD set (the example
    # LeNet-5: Fashion-MNIST 0.011, KMNIST 0.145, uniform 0.0, Gaussian noise 0.005).
    default_bounds={
        "ood_fpr95": 0.95,
        "ood_fpr95[fmnist-msp]": 0.20,
        "ood_fpr95[kmnist-msp]": 0.20,
        "ood_fpr95[uniform-msp]": 0.20,
        "ood_fpr95[gaussian-msp]": 0.20,
    },
    note="share of OOD images a detector keeping 95% of the test images accepts",
    study_column=lambda params: (
        f"fpr95:{params['set']}-{params['score']}"
        if params.get("set") is not None and params.get("score") is not None
        else None
    ),
    study_rank=3,
)

FAMILIES = (OOD_AUROC, OOD_FPR95)
