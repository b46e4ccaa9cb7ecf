"""The benchmark suite's quick mode runs in CI as part of the project's tests: one round each, on
fewer images, ratios printed, no timing gates (a shared CI runner's load decides wall times). The
full figures are taken by hand (docs/PERFORMANCE.md); this proves the documented command works."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_suite_runs_in_quick_mode(data_root):
    if not (REPO / "benchmarks").is_dir():
        pytest.skip("no benchmarks folder beside the tests (installed without the repository)")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks",
        "--benchmark-disable",
        "-p",
        "no:randomly",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "SAFETYCHECK_DATA": str(data_root.path)},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for figure in (
        "torchattacks PGD)",
        "eps sweep",
        "MNIST-C, all 15 corruptions",
        "quick: {",
        "dataset loading, CIFAR-10 batch",
        "common corruptions, all 19 x 5 at 32x32",
        "autoattack standard, lenet at eps 0.3",
        "certified bounds, lenet ibp",
        "early stopping on the zoo",
        "torchrun scaling",
    ):
        assert figure in result.stdout, f"{figure!r} missing from the benchmark output"
