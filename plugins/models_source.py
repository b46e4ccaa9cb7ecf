"""Where the models under test come from: ``--safety-model`` files, a ``safety_model`` fixture."""

from __future__ import annotations

import inspect
import types
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from safetycheck.core.errors import ModelLoadError

if TYPE_CHECKING:
    from safetycheck.io.models import ModelUnderTest

FIXTURE_NAME = "safety_model"
DATASET_FIXTURE = "safety_dataset"


def collect_models(session: pytest.Session) -> tuple[list[ModelUnderTest], list]:
    """All models of this run, with unique names; and the teardowns of generator fixtures."""
    models: list[ModelUnderTest] = []
    for path in session.config.getoption("safety_model"):
        from safetycheck.io.models import load_model_file  # torch only when a model is named

        models.extend(load_model_file(path))
    fixture_models, teardowns = _models_from_fixture(session.config)
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


def _models_from_fixture(config: pytest.Config) -> tuple[list[ModelUnderTest], list]:
    """Build the ``safety_model`` fixture visible at the root (the rootdir's conftest.py).

    The generated tests are named after the models, so the fixture is built at collection time,
    before pytest sets up any fixture (and pytest offers no public way to get a fixture's value
    then). It therefore cannot depend on other fixtures; a generator fixture's teardown runs at
    session end.
    """
    func = _fixture_function(config)
    if func is None:
        return [], []
    where = _location(func)
    requested = [
        name
        for name, parameter in inspect.signature(func).parameters.items()
        if parameter.default is inspect.Parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    if requested:
        raise ModelLoadError(
            f"the {FIXTURE_NAME} fixture ({where}) requests {', '.join(requested)}; safetycheck "
            f"builds it at collection time to name the generated tests, so it must take no "
            f"arguments."
        )
    try:
        value = func()
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


def dataset_from_fixture(config: pytest.Config):
    """The test images of a ``safety_dataset`` fixture at the root (a ``torch.utils.data.Dataset``
    of (image, label) pairs, or an ``(images, labels)`` pair of tensors), as (LabelledImages with
    the fixture's location as its name, teardowns, a note on the pixels); (None, [], "") without
    one. Built at collection
    time, like ``safety_model``, so it takes no arguments."""
    func = _fixture_function(config, DATASET_FIXTURE)
    if func is None:
        return None, [], ""
    where = _location(func)
    if [n for n, p in inspect.signature(func).parameters.items() if p.default is p.empty]:
        raise ModelLoadError(
            f"the {DATASET_FIXTURE} fixture ({where}) must take no arguments: safetycheck builds "
            "it at collection time."
        )
    try:
        value = func()
    except Exception as exc:
        raise ModelLoadError(
            f"the {DATASET_FIXTURE} fixture ({where}) raised {type(exc).__name__}: {exc}"
        ) from exc
    teardowns = []
    if inspect.isgenerator(value):
        generator = value
        value = next(generator)
        teardowns.append(lambda: next(generator, None))
    from safetycheck.io.data import LabelledImages
    from safetycheck.io.formats import tensors_to_images

    source = f"fixture {DATASET_FIXTURE} ({where})"
    images, labels, note = tensors_to_images(value, source)
    return LabelledImages(images, labels, source), teardowns, note


def _fixture_function(config: pytest.Config, name: str = FIXTURE_NAME):
    """The function behind the ``name`` fixture (``safety_model``) that every test sees, or None.

    Like pytest, look in the registered plugins: conftest.py files at the rootdir or above it (a
    conftest.py below the rootdir serves only its own folder) and plugin modules; the one
    registered last, the nearest conftest.py, wins. A fixture is what ``@pytest.fixture`` made
    of a function: a wrapper whose ``__wrapped__`` (``inspect.unwrap``) is that function.
    """
    found = None
    for _, plugin in config.pluginmanager.list_name_plugin():
        if not isinstance(plugin, types.ModuleType) or not _visible_at_root(plugin, config):
            continue
        fixture = getattr(plugin, name, None)
        if fixture is None or not callable(fixture):
            continue
        func = inspect.unwrap(fixture)
        if func is not fixture:
            found = func
    return found


def _visible_at_root(module: types.ModuleType, config: pytest.Config) -> bool:
    path = getattr(module, "__file__", None)
    if not path or Path(path).name != "conftest.py":
        return True  # a plugin module: its fixtures serve every test
    folder, root = Path(path).resolve().parent, Path(config.rootpath).resolve()
    return folder == root or root not in folder.parents


def _location(func) -> str:
    try:
        return f"{inspect.getsourcefile(func)}:{inspect.getsourcelines(func)[1]}"
    except (OSError, TypeError):
        return getattr(func, "__qualname__", repr(func))
