"""The whole default suite on the example LeNet, as a user runs it: wall time and peak memory of
``pytest --safety-model=example_models/lenet.py`` in a fresh process, over the full test sets and in
quick mode (``--safety-samples 1000``). Budgets (issue #7): 5 minutes and 1 minute on 2 CPU cores;
where CUDA is present, also the full suite with ``--safety-device=cuda`` (issue #9: 30 seconds).

The run is a subprocess, so the figures include interpreter start, imports, data loading and
collection, exactly what a CI job pays; MNIST-C sets come from the user cache (warm) unless
``SAFETYCHECK_CACHE`` points at an empty folder. Figures go to the terminal and to
``.benchmarks/suite_budget.json``; docs/PERFORMANCE.md records them. Commands::

    # full and quick:
    SAFETYCHECK_DATA=... pytest benchmarks/test_suite_budget.py -p no:randomly -s
    # quick mode only:
    SAFETYCHECK_DATA=... pytest benchmarks/test_suite_budget.py --benchmark-disable -s
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = {"full": 300, "quick": 60, "full_cuda": 30}
RESULTS: dict = {}


def _run_suite(extra: list[str], tmp_path: Path) -> dict:
    report = tmp_path / "results.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"--safety-model={REPO / 'example_models' / 'lenet.py'}",
        "-q",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        f"--safety-json={report}",
        *extra,
    ]
    log = tmp_path / "suite.log"
    with open(log, "w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        _, status, usage = os.wait4(
            process.pid, 0
        )  # this child's own peak memory, not the largest child's
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    peak_mib = usage.ru_maxrss / 1024
    assert process.returncode == 0, log.read_text()[-6000:]
    records = json.loads(report.read_text())["results"]
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_mib),
        "checks": len(records),
        "failed": sum(not r["passed"] for r in records if not r.get("skipped")),
    }


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("mode", ["full", "quick", "full_cuda"])
def test_default_suite(benchmark, mode, quick, tmp_path):
    if not os.environ.get("SAFETYCHECK_DATA"):
        pytest.skip(
            "real data unavailable: set SAFETYCHECK_DATA to a folder with the MNIST raw files"
        )
    if quick and mode != "quick":
        pytest.skip("the full suite runs only in the full benchmark (without --benchmark-disable)")
    if mode == "full_cuda" and not _cuda_available():
        pytest.skip("no CUDA device here: the GPU budget is measured only where one is present")
    extra = {"full": [], "quick": ["--safety-samples=1000"], "full_cuda": ["--safety-device=cuda"]}[
        mode
    ]
    figures = benchmark.pedantic(_run_suite, args=(extra, tmp_path), rounds=1, iterations=1)
    figures["budget_seconds"] = BUDGET_SECONDS[mode]
    figures["ratio_to_budget"] = round(figures["seconds"] / BUDGET_SECONDS[mode], 2)
    RESULTS[mode] = figures
    print(f"\n{mode}: {figures}")
    assert figures["failed"] == 0  # the suite passes under this repository's thresholds


def test_write_figures():
    if not RESULTS:
        pytest.skip("no suite was run")
    out = REPO / ".benchmarks" / "suite_budget.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=2) + "\n")
