"""``safetycheck study``: the whole suite over a family of models, and the trade-off study report.

:mod:`~safetycheck.study.runner` runs the models, :mod:`~safetycheck.study.claims` reads the
numbers and judges the claims, :mod:`~safetycheck.study.plots` and :mod:`~safetycheck.study.report`
draw and write them.
"""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # ``safetycheck.study`` was one module; its public names stay importable from here.
    runner = importlib.import_module(f"{__name__}.runner")
    if name != "runner" and hasattr(runner, name):
        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
