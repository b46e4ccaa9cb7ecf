"""Where the models under test come from: ``--safety-model`` files and a ``safety_model`` fixture."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import pytest

from safetycheck.core.errors import ModelLoadError

if TYPE_CHECKING:
    from safetycheck.io.models import ModelUnderTest

FIXTURE_NAME = "safety_model"


def collect_models(session: pytest.Session) -> tuple[list[ModelUnderTest], list]:
    """All models of this run, with unique names; and the teardowns of generator fixtures."""
    models: list[ModelUnderTest] = []
    for path in session.config.getoption("safety_model"):
        from safetycheck.io.models import (
            load_model_file,
        )  # torch is imported only when a model is named

        models.extend(load_model_file(path))
    fixture_models, teardowns = _models_from_fixture(session)
    models.extend(fixture_models)
    seen: dict[str, str] = {}
    for model in models:
        if model.name in seen:
            raise ModelLoadError(
                f"two models are named {model.name!r} ({seen[model.name]} and {model.source}); "
                f"give one a `name` attribute or use a dict with distinct keys."
            )
        seen[model.name] = model.source
    return models, teardowns


def _models_from_fixture(session: pytest.Session) -> tuple[list[ModelUnderTest], list]:
    """Build the ``safety_model`` fixture visible at the root (the rootdir's conftest.py).

    The generated tests are named after the models, so the fixture is built at collection time. It
    therefore cannot depend on other fixtures; a generator fixture's teardown runs at session end.
    """
    definitions = session._fixturemanager.getfixturedefs(FIXTURE_NAME, session)
    if not definitions:
        return [], []
    definition = definitions[-1]
    where = _location(definition.func)
    if definition.argnames:
        raise ModelLoadError(
            f"the {FIXTURE_NAME} fixture ({where}) requests {', '.join(definition.argnames)}; safetycheck builds it "
            f"at collection time to name the generated tests, so it must take no arguments."
        )
    try:
        value = definition.func()
    except Exception as exc:
        raise ModelLoadError(
            f"the {FIXTURE_NAME} fixture ({where}) raised {type(exc).__name__}: {exc}"
        ) from exc
    from safetycheck.io.models import models_from_object

    teardowns = []
    if inspect.isgenerator(value):
        generator = value
        value = next(generator)
        teardowns.append(lambda: next(generator, None))
    return models_from_object(
        value, default_name=FIXTURE_NAME, source=f"fixture {FIXTURE_NAME} ({where})"
    ), teardowns


def _location(func) -> str:
    try:
        return f"{inspect.getsourcefile(func)}:{inspect.getsourcelines(func)[1]}"
    except (OSError, TypeError):
        return getattr(func, "__qualname__", repr(func))
