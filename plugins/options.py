"""Command-line options, read from the one option table (:mod:`safetycheck.core.options`, shared
with ``safetycheck study``) and given pytest's ``--safety-`` prefix. Nothing here imports the
engine: pytest loads this plugin in every run of every project where safetycheck is installed, and
a run that names no model must not pay for importing torch (see :mod:`.settings` for turning
options into run settings)."""

from __future__ import annotations

import pytest

from safetycheck.core.options import PYTEST, options_for


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("safetycheck", "safety tests for image classifiers")
    for option in options_for(PYTEST):
        group.addoption(option.flag_name(PYTEST), **option.add_arguments(PYTEST))
