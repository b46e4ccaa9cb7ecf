"""Repository-level pytest configuration.

``pytest --safety-model=...`` in this repository is the main job: it runs the generated safety
tests alone, not the project's own test suite (``tests/``, ``benchmarks/``), unless paths are
given explicitly (``pytest tests --safety-model=...``).
"""

from pathlib import Path

ROOT = Path(__file__).parent
OWN_SUITES = (ROOT / "tests", ROOT / "benchmarks")


def pytest_ignore_collect(collection_path, config):
    if config.getoption("safety_model", None) and not config.option.file_or_dir:
        if any(
            collection_path == suite or suite in collection_path.parents for suite in OWN_SUITES
        ):
            return True
    return None
