"""Robustness to common corruptions for any image: the 15 corruptions of ImageNet-C / CIFAR-10-C and
the 4 held out (Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR), five severities each.

``corruptions_mean`` (the headline) is the accuracy averaged over the 15 benchmark corruptions and
their 5 severities; ``corruptions[fog]`` the accuracy on one corruption averaged over its
severities, ``corruptions[fog,severity=5]`` one severity; ``corruptions_drop`` the clean accuracy
minus the mean. With ``--safety-corruption-baseline`` (the results JSON of a baseline model on the
same dataset), ``corruptions_mce`` is the paper's mean corruption error, the mean over the 15 of
``sum_s E(c, s) / sum_s E_base(c, s)``, and ``corruptions_relative_mce`` its relative form,
``sum_s (E(c, s) - E_clean) / sum_s (E_base(c, s) - E_base_clean)`` averaged likewise.

The families apply to profiles whose ``corruptions`` is ``"common"`` (CIFAR-10, SVHN, a user's
1- or 3-channel images of at least 16x16); on the 28x28 grayscale profiles MNIST-C applies instead
and these families plan no checks; elsewhere they are skipped as not applicable. Each corrupted set
is generated once per dataset, parameter set and seed and cached on disk
(:mod:`safetycheck.measures.common_corruptions.dataset`), or read from the published set when the
profile's ``corrupted`` folder holds it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from safetycheck.checks.accuracy import accuracy, accuracy_measurement
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.errors import ConfigError
from safetycheck.core.registry import CheckFamily, CheckSkipped, Measurement
from safetycheck.core.stats import wilson_interval
from safetycheck.measures.common_corruptions import BENCHMARK, NAMES, SEVERITIES, get_corruption
from safetycheck.measures.common_corruptions.dataset import (
    content_digest,
    has_published,
    load_generated,
    load_published,
)

OPTION = "--safety-corruption-baseline"


@dataclass(frozen=True)
class CorruptionBaseline:
    """The errors of a baseline model, read from its results JSON, that mCE normalises by.

    Attributes
    ----------
    path : str
    model : str
    dataset : str
    clean_error : float
        1 - its clean accuracy.
    errors : tuple of ((corruption, severity), error)
        1 - its accuracy at each corruption and severity it was measured on.
    """

    path: str
    model: str
    dataset: str
    clean_error: float
    errors: tuple[tuple[tuple[str, int], float], ...]

    def error(self, name: str, severity: int) -> float | None:
        return dict(self.errors).get((name, severity))


def load_corruption_baseline(path: str | Path, dataset: str) -> CorruptionBaseline:
    """Read a results JSON (``--safety-json``) of one baseline model on ``dataset``.

    Raises
    ------
    ConfigError
        The file is missing or not a results file, holds no or several models' corruption
        results, was measured on another dataset, or lacks a clean accuracy or one of the 15
        benchmark corruptions at some severity.
    """
    file = Path(path)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        records = document["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{OPTION} {file}: not a readable results JSON ({exc}); give the --safety-json file "
            "of a run of the baseline model."
        ) from None
    measured = dataset_of(document)
    if measured != dataset:
        raise ConfigError(
            f"{OPTION} {file} was measured on the {measured} dataset and this run tests {dataset}; "
            "mCE needs a baseline on the same images."
        )
    models = sorted({r["model"] for r in records if r.get("family") == "corruptions"})
    if len(models) != 1:
        raise ConfigError(
            f"{OPTION} {file} holds corruption results of "
            + (f"{len(models)} models ({', '.join(models)})" if models else "no model")
            + "; give the results of exactly one baseline model."
        )
    model = models[0]
    errors: dict[tuple[str, int], float] = {}
    clean = None
    for record in records:
        if record.get("model") != model or record.get("skipped"):
            continue
        value = record.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        params = record.get("params") or {}
        if record.get("family") == "clean_accuracy":
            clean = 1.0 - float(value)
        elif record.get("family") == "corruptions" and "severity" in params:
            errors[(str(params["corruption"]), int(params["severity"]))] = 1.0 - float(value)
    missing = [f"{n}@{s}" for n in BENCHMARK for s in SEVERITIES if (n, s) not in errors]
    if clean is None or missing:
        lacks = "its clean accuracy" if clean is None else f"{len(missing)} corruption results"
        example = f" (e.g. {missing[0]})" if missing else ""
        raise ConfigError(
            f"{OPTION} {file}: model {model} lacks {lacks}{example}; run the baseline with the "
            "whole corruptions family."
        )
    assert clean is not None
    return CorruptionBaseline(str(file), model, dataset, clean, tuple(sorted(errors.items())))


def dataset_of(document: dict) -> str:
    """The dataset a results document was measured on (MNIST before dataset profiles)."""
    described = (document.get("metadata") or {}).get("dataset") or {}
    return str(described.get("name") or "mnist") if isinstance(described, dict) else "mnist"


# Which images, which set --------------------------------------------------------------------


def _applicable(evaluation: ModelEvaluation) -> None:
    dataset = evaluation.settings.dataset
    if dataset.corruptions != "common":
        shape = "x".join(map(str, dataset.input_shape))
        raise CheckSkipped(
            f"not applicable: the common corruptions need 1- or 3-channel images of at least "
            f"16x16 pixels; {dataset.title} images are {shape}"
        )


def _published_folder(evaluation: ModelEvaluation) -> Path | None:
    corrupted = evaluation.settings.dataset.corrupted
    if not corrupted:
        return None
    folder = Path(corrupted)
    return folder if folder.is_absolute() else evaluation.settings.data_root.path / folder


def _unavailable(name: str) -> None:
    reason = get_corruption(name).unavailable()
    if reason is not None:
        raise CheckSkipped(f"{name} cannot run here: {reason}")


def corrupted_correct(
    evaluation: ModelEvaluation, name: str, severity: int
) -> tuple[torch.Tensor, str]:
    """((N,) bool, source): which evaluated test images the model classifies correctly under
    ``name`` at ``severity``, and where the corrupted images came from."""
    _applicable(evaluation)

    def run(ev: ModelEvaluation) -> tuple[torch.Tensor, str]:
        folder = _published_folder(ev)
        if folder is not None and has_published(folder, name):
            published = load_published(folder, name, severity)
            images, labels = published.images, published.labels
            if len(images) == len(ev.full_test_set):
                images, labels = ev.select(images), ev.select(labels)
            source = published.source
            predictions = ev.predictions(images, f"{name} at severity {severity}")
            return predictions == labels, source
        _unavailable(name)
        return _generated_correct(ev, name, severity)

    return evaluation.cached(f"corruptions/{name}/{severity}", run)


def _generated_correct(
    evaluation: ModelEvaluation, name: str, severity: int
) -> tuple[torch.Tensor, str]:
    """Which evaluated test images the model classifies correctly under the generated corruption,
    and the source. Each image is corrupted from its own seed and index, so in a torchrun job each
    rank makes (and caches, under a key that names its slice) and predicts only its slice; the
    verdicts are gathered, the same as one process's."""
    settings, test, shard = evaluation.settings, evaluation.test_set, evaluation.shard

    def rows(part: slice) -> tuple[torch.Tensor, str]:
        index = evaluation.test_indices
        if shard.active:
            index = (torch.arange(len(test)) if index is None else index)[part]
        generated = load_generated(
            test.images[part],
            test.labels[part],
            root=settings.data_root,
            dataset=settings.dataset.name,
            name=name,
            severity=severity,
            seed=settings.seed,
            params=settings.dataset.corruption_params,
            indices=index,
            device=settings.device,
            content=None
            if shard.active
            else evaluation.cached(
                "corruptions/content", lambda e: content_digest(e.test_set.images), False
            ),
        )
        everything = slice(0, len(generated.images))
        correct = evaluation.predict_rows(generated.images, everything) == generated.labels
        return correct, generated.source

    def join(parts: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, str]:
        return torch.cat([correct for correct, _ in parts]), parts[0][1]

    # Whole batches of predictions, as one process predicts them; each image is corrupted alone
    # (tests/unit/test_distributed.py: a set made in slices is the set made whole).
    align = settings.batch_size * 4
    return shard.rows(f"generating {name} at severity {severity}", len(test), rows, join, align)


def _accuracies(evaluation: ModelEvaluation, names) -> dict[tuple[str, int], torch.Tensor]:
    return {
        (name, severity): corrupted_correct(evaluation, name, severity)[0]
        for name in names
        for severity in SEVERITIES
    }


def _sources(evaluation: ModelEvaluation, names) -> str:
    found = sorted({corrupted_correct(evaluation, n, s)[1] for n in names for s in SEVERITIES})
    return "; ".join(found)


def _details(evaluation: ModelEvaluation, source: str) -> str:
    dataset = evaluation.settings.dataset
    return (
        f"{dataset.corruption_params} parameters, {source}, "
        f"{evaluation.describe_test_set()} per corruption and severity"
    )


def _benchmark_ready(evaluation: ModelEvaluation) -> None:
    """The aggregates need all 15: one missing would change what the headline means."""
    _applicable(evaluation)
    folder = _published_folder(evaluation)
    for name in BENCHMARK:
        if folder is not None and has_published(folder, name):
            continue
        reason = get_corruption(name).unavailable()
        if reason is not None:
            raise CheckSkipped(
                f"the mean over the 15 benchmark corruptions needs {name}, which cannot run here: "
                f"{reason}"
            )


def _mean(evaluation: ModelEvaluation) -> tuple[float, int, tuple[float, float] | None]:
    _benchmark_ready(evaluation)
    correct = _accuracies(evaluation, BENCHMARK)
    n = sum(int(values.numel()) for values in correct.values())
    interval = wilson_interval(sum(int(values.sum()) for values in correct.values()), n)
    mean = sum(accuracy(values) for values in correct.values()) / len(correct)
    return mean, n, interval


# Measurements -------------------------------------------------------------------------------


def _measure_mean(evaluation: ModelEvaluation, params: dict) -> Measurement:
    value, n, interval = _mean(evaluation)
    per_corruption = {
        name: sum(accuracy(corrupted_correct(evaluation, name, s)[0]) for s in SEVERITIES) / 5
        for name in BENCHMARK
    }
    return Measurement(
        value,
        n,
        "mean over the 15 benchmark corruptions x 5 severities; "
        + _details(evaluation, _sources(evaluation, BENCHMARK)),
        ci=interval,
        artifacts={"per_corruption": per_corruption},
    )


def _measure_one(evaluation: ModelEvaluation, params: dict) -> Measurement:
    name = params["corruption"]
    severity = params.get("severity")
    if severity is not None:
        correct, source = corrupted_correct(evaluation, name, int(severity))
        return accuracy_measurement(
            correct,
            f"{name} at severity {severity}; {_details(evaluation, source)}",
            # The corrupted images are those of this source (generated: parameters and seed).
            per_example=evaluation.per_example(correct, f"corrupted:{source}:{name}:{severity}"),
        )
    per_severity = [corrupted_correct(evaluation, name, s)[0] for s in SEVERITIES]
    pooled = torch.cat(per_severity)
    by_severity = {s: accuracy(v) for s, v in zip(SEVERITIES, per_severity, strict=True)}
    return Measurement(
        sum(by_severity.values()) / len(by_severity),
        int(pooled.numel()),
        f"{name}, mean over severities 1-5; {_details(evaluation, _sources(evaluation, [name]))}",
        ci=wilson_interval(int(pooled.sum()), int(pooled.numel())),
        artifacts={"by_severity": by_severity},
    )


def _measure_drop(evaluation: ModelEvaluation, params: dict) -> Measurement:
    mean, n, mean_interval = _mean(evaluation)
    correct = evaluation.clean_correct
    clean = accuracy(correct)
    clean_interval = wilson_interval(int(correct.sum()), int(correct.numel()))
    interval = None
    if mean_interval and clean_interval:
        # Half-widths add in quadrature (the two estimates treated as independent).
        half = (
            math.hypot(clean_interval[1] - clean_interval[0], mean_interval[1] - mean_interval[0])
            / 2
        )
        interval = (clean - mean - half, clean - mean + half)
    return Measurement(
        clean - mean,
        n,
        f"clean accuracy {clean:.4f} minus the corruption mean {mean:.4f}; "
        + _details(evaluation, _sources(evaluation, BENCHMARK)),
        ci=interval,
    )


def _corruption_errors(evaluation: ModelEvaluation) -> tuple[CorruptionBaseline, dict, float]:
    baseline = evaluation.settings.corruption_baseline
    if baseline is None:  # planned only with a baseline; kept for a direct call
        raise CheckSkipped(f"needs a baseline model's results: {OPTION} PATH")
    _benchmark_ready(evaluation)
    errors = {
        key: 1.0 - accuracy(values) for key, values in _accuracies(evaluation, BENCHMARK).items()
    }
    return baseline, errors, 1.0 - accuracy(evaluation.clean_correct)


def _mean_ratio(
    evaluation: ModelEvaluation, ratios: dict[str, float | None], what: str, baseline
) -> Measurement:
    """The mean of the per-corruption ratios that are defined; a corruption whose baseline
    denominator is not positive (the baseline makes no error there, or, for the relative form,
    no more than on clean images) has no ratio and is left out, and the details say so."""
    defined = {name: value for name, value in ratios.items() if value is not None}
    if not defined:
        raise CheckSkipped(
            f"{what} is undefined: the baseline {baseline.model} ({baseline.path}) has no "
            "corruption error to normalise by"
        )
    left_out = sorted(set(ratios) - set(defined))
    note = (
        f"; left out (no baseline error to normalise by): {', '.join(left_out)}" if left_out else ""
    )
    return Measurement(
        sum(defined.values()) / len(defined),
        sum(int(v.numel()) for v in _accuracies(evaluation, BENCHMARK).values()),
        f"{what} against model {baseline.model} ({baseline.path}){note}; "
        + _details(evaluation, _sources(evaluation, BENCHMARK)),
        artifacts={"ratios": ratios},
    )


def _measure_mce(evaluation: ModelEvaluation, params: dict) -> Measurement:
    baseline, errors, _ = _corruption_errors(evaluation)
    ratios: dict[str, float | None] = {}
    for name in BENCHMARK:
        base = sum(baseline.error(name, s) or 0.0 for s in SEVERITIES)
        ours = sum(errors[(name, s)] for s in SEVERITIES)
        ratios[name] = ours / base if base > 0 else None
    return _mean_ratio(evaluation, ratios, "mean corruption error", baseline)


def _measure_relative_mce(evaluation: ModelEvaluation, params: dict) -> Measurement:
    baseline, errors, clean_error = _corruption_errors(evaluation)
    ratios: dict[str, float | None] = {}
    for name in BENCHMARK:
        base = sum((baseline.error(name, s) or 0.0) - baseline.clean_error for s in SEVERITIES)
        ours = sum(errors[(name, s)] - clean_error for s in SEVERITIES)
        ratios[name] = ours / base if base > 0 else None
    return _mean_ratio(evaluation, ratios, "relative mean corruption error", baseline)


# Families -----------------------------------------------------------------------------------


def _planned(settings: RunSettings) -> bool:
    """No checks where MNIST-C applies (its own families cover those profiles)."""
    return settings.dataset.corruptions != "mnist_c"


def _one_variants(settings: RunSettings) -> list[dict]:
    if not _planned(settings):
        return []
    variants: list[dict] = [{"corruption": name} for name in NAMES]
    if settings.dataset.corruptions == "common":
        variants += [{"corruption": n, "severity": s} for n in NAMES for s in SEVERITIES]
    return variants


CORRUPTIONS_MEAN = CheckFamily(
    name="corruptions_mean",
    metric="mean accuracy over the 15 common corruptions and 5 severities",
    bound="min",
    variants=lambda settings: [{}] if _planned(settings) else [],
    measure=_measure_mean,
    # A standard CIFAR-10 ResNet-18 scores about 0.73 on CIFAR-10-C (Hendrycks & Dietterich 2019);
    # the built-in floor only catches a model that corruptions break.
    default_bounds={"corruptions_mean": 0.5},
    note="mean accuracy over the common corruptions (ImageNet-C / CIFAR-10-C)",
    plot="common_corruptions",
    proportion=True,
    study_column=lambda params: "corruptions_mean",
    study_rank=2,
)

CORRUPTIONS = CheckFamily(
    name="corruptions",
    metric="accuracy on one common corruption",
    bound="min",
    variants=_one_variants,
    measure=_measure_one,
    param_names=("corruption", "severity"),
    positional=True,  # corruptions[fog], corruptions[fog,severity=5]
    keyword_params=("severity",),
    param_choices={"corruption": NAMES, "severity": SEVERITIES},
    default_bounds={"corruptions": 0.3},
    note="accuracy per common corruption, and per severity",
    plot="common_corruptions",
    proportion=True,
)

CORRUPTIONS_DROP = CheckFamily(
    name="corruptions_drop",
    metric="clean accuracy minus mean common-corruption accuracy",
    bound="max",
    variants=lambda settings: [{}] if _planned(settings) else [],
    measure=_measure_drop,
    value_range=(-1.0, 1.0),
    default_bounds={"corruptions_drop": 0.25},
    note="accuracy drop from clean under the common corruptions",
    plot="common_corruptions",
    study_column=lambda params: "corruptions_drop",
    study_rank=2,
)

CORRUPTIONS_MCE = CheckFamily(
    name="corruptions_mce",
    metric="mean corruption error relative to a baseline model (mCE)",
    bound="max",
    variants=lambda s: [{}] if _planned(s) and s.corruption_baseline is not None else [],
    measure=_measure_mce,
    value_range=(0.0, math.inf),
    # 1.0: no worse than the baseline it is normalised by.
    default_bounds={"corruptions_mce": 1.0},
    note="mean corruption error (Hendrycks & Dietterich 2019), baseline = 1",
)

CORRUPTIONS_RELATIVE_MCE = CheckFamily(
    name="corruptions_relative_mce",
    metric="relative mean corruption error against a baseline model",
    bound="max",
    variants=lambda s: [{}] if _planned(s) and s.corruption_baseline is not None else [],
    measure=_measure_relative_mce,
    value_range=(-math.inf, math.inf),
    default_bounds={"corruptions_relative_mce": 1.0},
    note="relative mCE: the drop from clean, baseline = 1",
)

FAMILIES = (
    CORRUPTIONS_MEAN,
    CORRUPTIONS,
    CORRUPTIONS_DROP,
    CORRUPTIONS_MCE,
    CORRUPTIONS_RELATIVE_MCE,
)
