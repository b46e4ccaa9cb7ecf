"""Check results as records, run metadata, and the JSON results file.

The JSON shape is stable: later versions add keys, never remove or rename them::

    {
      "format": "safetycheck-results", "format_version": 2,
      "metadata": {...versions, device, seed, data root, models...},
      "results": [
        {"model": "lenet", "check": "pgd_linf[eps=0.1]", "params": {"eps": 0.1},
         "value": 0.766, "threshold": 0.5, "passed": true, "n": 1000, ...},
        ...
      ]
    }
"""

from __future__ import annotations

import json
import math
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from safetycheck.core.files import write_atomic

if TYPE_CHECKING:
    from safetycheck.io.profiles import DatasetProfile

FORMAT_VERSION = 2  # 2: records may carry per_example (safetycheck.core.per_example)


@dataclass(frozen=True)
class CheckResult:
    model: str
    check: str
    family: str
    params: dict
    value: float
    threshold: float
    threshold_source: str
    bound: str  # "min": value must be >= threshold; "max": <=
    passed: bool
    n: int
    metric: str
    details: str
    randomized: bool = False  # the model's eval-mode outputs are random (allowed by the user)
    ci: tuple[float, float] | None = None  # 95% interval of the value (see checks.Measurement)
    artifacts: dict = field(default_factory=dict)  # plot data for the reports
    skipped: str | None = None  # why the check could not be measured (value is then NaN)
    baseline: dict | None = None  # the comparison with --safety-baseline, when one was given
    dataset: str = "mnist"  # the dataset profile the check was measured on
    # Which scored images were right, for accuracy-type checks (PerExample.encode()'s form).
    per_example: dict | None = None

    def record(self) -> dict:
        record = asdict(self)
        record["value"] = _json_number(self.value)
        record["ci"] = None if self.ci is None else [_json_number(float(v)) for v in self.ci]
        return record

    def message(self) -> str:
        """One line for a failure: measured vs required, parameters, sample count, threshold
        source."""
        relation = "<" if self.bound == "min" else ">"
        verb = "at least" if self.bound == "min" else "at most"
        return (
            f"{self.model} {self.check}: measured {self.metric} {self.value:.4f} {relation} "
            f"required {verb} {self.threshold:.4f} ({self.details}; n={self.n}; threshold from "
            f"{self.threshold_source})"
        )


def compare(value: float, threshold: float, bound: str) -> bool:
    """NaN never passes."""
    if math.isnan(value):
        return False
    return value >= threshold if bound == "min" else value <= threshold


def _json_number(value: float):
    return (
        None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
    )


def run_metadata(settings, models: list) -> dict:
    """Versions, device, seed, sample counts and the models evaluated, for every report."""
    from importlib.metadata import version

    import numpy
    import torch

    from safetycheck import __version__
    from safetycheck.checks.attacks import threat_models
    from safetycheck.io.data import data_checksums

    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "safetycheck": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": version("torchvision"),  # not imported: the run does not need it
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(settings.device),
        "dataset": {
            "name": settings.dataset.name,
            "title": settings.dataset.title,
            "input_shape": list(settings.dataset.input_shape),
            "classes": list(settings.dataset.classes),
            **({"note": settings.dataset.note} if settings.dataset.note else {}),
            **(
                {"mean_std": [list(part) for part in settings.dataset.mean_std]}
                if settings.dataset.mean_std
                else {}
            ),
        },
        "attack_acceleration": settings.acceleration.describe(),
        # Every planned attack family's cascade and budget, the same on every device.
        "threat_models": threat_models(settings),
        "seed": settings.seed,
        "attack_samples": settings.attack_samples,
        # None: whole test sets; N: every family saw a stratified, seeded subset of N MNIST test
        # images.
        "samples": settings.samples,
        # None: every attack sweep attacked all its images; else --safety-early-stop's level and
        # block (each stopped record says where and why in its details).
        "early_stop": (
            None
            if getattr(settings, "early_stop_alpha", None) is None
            else {"alpha": settings.early_stop_alpha, "block": settings.early_stop_block}
        ),
        "epsilons": list(settings.epsilons),
        "data_root": str(settings.data_root.path),
        "data_root_source": settings.data_root.source,
        "data_checksums": data_checksums(settings.data_root),
        "models": [
            {
                "name": m.name,
                "source": m.source,
                "randomized": m.randomized,
                **(
                    {"warning": "randomised model: attack results may overstate robustness"}
                    if m.randomized
                    else {}
                ),
            }
            for m in models
        ],
    }


def results_document(records: list[dict], metadata: dict) -> dict:
    """The JSON results document (the shape in this module's docstring)."""
    return {
        "format": "safetycheck-results",
        "format_version": FORMAT_VERSION,
        "metadata": metadata,
        "results": records,
    }


def add_gallery(
    document: dict,
    root,
    seed: int = 0,
    download: bool = False,
    dataset: str | DatasetProfile = "mnist",
) -> dict[str, bytes] | None:
    """When the document holds measured MNIST-C results, put the corruption gallery (one test
    image of ``dataset`` under each corruption, PNG, base64) into it under ``"gallery"``, so that
    the JSON carries all the HTML report shows; returns the PNG bytes by corruption name (None
    without such results).

    When it holds measured common-corruption results (the ``corruptions*`` families), it also
    puts the common-corruption gallery under ``"common_gallery"``: the profile's first test image
    clean and under every common corruption at severities 1, 3 and 5 (``"clean"``,
    ``"fog@3"``, ...; :func:`~safetycheck.measures.common_corruptions.gallery.common_gallery`).
    ``dataset`` is the run's profile, or the name of a built-in one.
    """
    import base64

    name = dataset if isinstance(dataset, str) else dataset.name
    if any(
        r["family"].startswith("corruptions") and not r.get("skipped") for r in document["results"]
    ):
        from safetycheck.io.profiles import profile

        described = profile(dataset) if isinstance(dataset, str) else dataset
        if described.corruptions == "common":  # what the measured records were made on
            from safetycheck.measures.common_corruptions.gallery import profile_gallery

            common = profile_gallery(described, root, seed=seed, download=download)
            document["common_gallery"] = {
                key: base64.b64encode(png).decode("ascii") for key, png in common.items()
            }
    if not any(
        r["family"].startswith("mnist_c") and not r.get("skipped") for r in document["results"]
    ):
        return None

    from safetycheck.measures.corruptions.gallery import test_set_gallery

    pictures = test_set_gallery(root, seed=seed, download=download, dataset=name)
    document["gallery"] = {
        name: base64.b64encode(png).decode("ascii") for name, png in pictures.items()
    }
    return pictures


def write_document(path: str | Path, document: dict) -> None:
    """Write a results document atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def write_json(path: str | Path, records: list[dict], metadata: dict) -> None:
    write_document(path, results_document(records, metadata))
