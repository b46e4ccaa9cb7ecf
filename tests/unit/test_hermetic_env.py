"""The project's tests do not depend on the user's environment: with SAFETYCHECK_CACHE (and any
other SAFETYCHECK_* setting) pointing somewhere unrelated, the environment-sensitive tests still
pass, and nothing is written there."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The tests that read the cache and the data-root rules, the ones a user's variables could sway.
SENSITIVE = [
    "tests/real_data/test_corruptions.py::test_generated_set_is_cached_and_reused",
    "tests/real_data/test_corruptions.py::test_damaged_or_foreign_cache_is_regenerated",
    "tests/unit/test_data.py",
]


def test_suite_passes_with_unrelated_safetycheck_variables(tmp_path, data_root):
    unrelated = tmp_path / "unrelated-cache"
    unrelated.mkdir()
    env = {**os.environ, "SAFETYCHECK_CACHE": str(unrelated), "SAFETYCHECK_SOMETHING_ELSE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *SENSITIVE,
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
    assert list(unrelated.iterdir()) == []


def test_variables_are_cleared_inside_each_test():
    assert not [
        name
        for name in os.environ
        if name.startswith("SAFETYCHECK_") and name != "SAFETYCHECK_DATA"
    ]
