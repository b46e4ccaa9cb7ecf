"""Robustness to distribution shift: accuracy on the 15 MNIST-C corruptions (Mu & Gilmer 2019).

``mnist_c_mean`` is the article's metric, the mean accuracy over the 15 corruptions (never
``identity``); ``mnist_c`` is the accuracy on each corruption; ``mnist_c_drop`` is the clean
accuracy minus the mean. Each corrupted test set is predicted once per model, whichever check
asks first, and the clean accuracy comes from the shared clean logits.

The corrupted sets come from :func:`safetycheck.corruptions.load_corrupted`: generated with the
run's seed and cached under the data root, or the official static files when the run settings
ask for ``mnist_c_source = "official"``.
"""

from __future__ import annotations

import torch

from ..checks import CheckFamily, Measurement, register
from ..corruptions import CORRUPTIONS, load_corrupted
from ..evaluation import ModelEvaluation
from ..models import evaluation_mode
from .accuracy import accuracy


def _source(evaluation: ModelEvaluation) -> str:
    return evaluation.settings.mnist_c_source


def corrupted_correct(evaluation: ModelEvaluation, name: str) -> torch.Tensor:
    """(10000,) bool: which corrupted test images of ``name`` the model classifies correctly."""
    def run(ev: ModelEvaluation) -> torch.Tensor:
        settings = ev.settings
        data = load_corrupted(name, source=_source(ev), root=settings.data_root, seed=settings.seed,
                              download=settings.download)
        size = settings.batch_size * 4
        with evaluation_mode(ev.model), torch.inference_mode():
            predictions = torch.cat([
                ev.model(data.images[i:i + size].to(settings.device)).argmax(dim=1).cpu()
                for i in range(0, len(data), size)
            ])
        return predictions == data.labels

    return evaluation.cached(f"mnist_c/{_source(evaluation)}/{name}", run)


def _details(evaluation: ModelEvaluation) -> str:
    source = _source(evaluation)
    seed = f", seed {evaluation.settings.seed}" if source == "generated" else ""
    return f"MNIST-C ({source}{seed}), all 10000 test images per corruption"


def _mean_accuracy(evaluation: ModelEvaluation) -> tuple[float, int]:
    accuracies = [accuracy(corrupted_correct(evaluation, name)) for name in CORRUPTIONS]
    return sum(accuracies) / len(accuracies), 10_000 * len(accuracies)


def _measure_mean(evaluation: ModelEvaluation, params: dict) -> Measurement:
    value, n = _mean_accuracy(evaluation)
    return Measurement(value, n, f"mean over the 15 corruptions; {_details(evaluation)}")


def _measure_one(evaluation: ModelEvaluation, params: dict) -> Measurement:
    correct = corrupted_correct(evaluation, params["corruption"])
    return Measurement(accuracy(correct), int(correct.numel()),
                       f"corruption {params['corruption']}; {_details(evaluation)}")


def _measure_drop(evaluation: ModelEvaluation, params: dict) -> Measurement:
    mean, n = _mean_accuracy(evaluation)
    clean = accuracy(evaluation.clean_correct)
    return Measurement(clean - mean, n, f"clean accuracy {clean:.4f} minus MNIST-C mean {mean:.4f}; "
                                        f"{_details(evaluation)}")


register(CheckFamily(
    name="mnist_c_mean",
    metric="mean accuracy over the 15 MNIST-C corruptions",
    bound="min",
    variants=lambda settings: [{}],
    measure=_measure_mean,
))

register(CheckFamily(
    name="mnist_c",
    metric="accuracy on one MNIST-C corruption",
    bound="min",
    variants=lambda settings: [{"corruption": name} for name in CORRUPTIONS],
    measure=_measure_one,
    param_names=("corruption",),
    positional=True,  # mnist_c[fog]
    param_choices={"corruption": tuple(CORRUPTIONS)},
))

register(CheckFamily(
    name="mnist_c_drop",
    metric="clean accuracy minus mean MNIST-C accuracy",
    bound="max",
    variants=lambda settings: [{}],
    measure=_measure_drop,
    value_range=(-1.0, 1.0),
))
