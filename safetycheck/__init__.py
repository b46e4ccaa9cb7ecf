"""safetycheck: safety tests for image classifiers, as plain functions on tensors.

The engine (this package) never imports pytest; the pytest plugin lives in ``plugins/``
(importable as ``safetycheck_pytest``). Its layers, each importing only the ones above it in
this list: ``core`` (errors, the check-family type, statistics, files, options), ``io`` (data,
models, batched prediction), ``measures`` (attacks, corruptions, OOD, calibration), ``checks``
(the families and the shared per-model evaluation), ``gate`` (thresholds, baselines), ``run``
(settings, running a check, results), ``report`` (HTML), ``study`` and the ``cli``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

__version__ = "0.1.0"

# Modules of the flat layout before the layers (0.1.0), still importable under their old names:
# the old name is the same module object as the new one.
MOVED_MODULES = {
    "safetycheck.errors": "safetycheck.core.errors",
    "safetycheck.stats": "safetycheck.core.stats",
    "safetycheck.data": "safetycheck.io.data",
    "safetycheck.models": "safetycheck.io.models",
    "safetycheck.acceleration": "safetycheck.measures.acceleration",
    "safetycheck.attacks": "safetycheck.measures.attacks",
    "safetycheck.corruptions": "safetycheck.measures.corruptions",
    "safetycheck.calibration": "safetycheck.measures.calibration",
    "safetycheck.ood": "safetycheck.measures.ood",
    "safetycheck.ood_metrics": "safetycheck.measures.ood_metrics",
    "safetycheck.ood_scores": "safetycheck.measures.ood_scores",
    "safetycheck.robustness": "safetycheck.measures.robustness",
    "safetycheck.evaluation": "safetycheck.checks.evaluation",
    "safetycheck.families": "safetycheck.checks",
    "safetycheck.runner": "safetycheck.run.runner",
    "safetycheck.settings": "safetycheck.run.settings",
    "safetycheck.results": "safetycheck.run.results",
    "safetycheck.config": "safetycheck.gate.thresholds",
    "safetycheck.baseline": "safetycheck.gate.baseline",
    "safetycheck.threshold_update": "safetycheck.gate.update",
    "safetycheck.html_report": "safetycheck.report.html",
    "safetycheck.html_plots": "safetycheck.report.plots",
    "safetycheck.html_svg": "safetycheck.report.svg",
    "safetycheck.study_claims": "safetycheck.study.claims",
    "safetycheck.study_plots": "safetycheck.study.plots",
    "safetycheck.study_report": "safetycheck.study.report",
}


def _new_name(old: str) -> str | None:
    for before, after in MOVED_MODULES.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before) :]
    return None


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        # The module was executed under its new name; the import system now files it under the
        # old one too, and ``module.__spec__`` stays the new one's.
        pass


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        new = _new_name(fullname)
        if new is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new))
        return spec


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())


def __getattr__(name: str):
    # The public functions load torch on first use, not when pytest loads the plugin.
    if name == "corrupt":
        from safetycheck.measures.common_corruptions import corrupt

        return corrupt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["corrupt"]
