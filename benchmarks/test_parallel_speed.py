"""Serial against ``pytest -n 2 --dist loadgroup`` on two models of similar cost (the example
LeNet and the zoo's CutOut LeNet, the same architecture), as a user runs them: a fresh pytest
process per mode, wall time including interpreter start, imports, data loading and the xdist
workers' start-up. Three modes:

- ``serial``: one process, torch's own thread count (every core);
- ``xdist``: two workers, each with its share of the cores (the plugin's default);
- ``xdist_oversubscribed``: two workers that each keep every core (``--safety-threads`` = cores),
  which is what every worker did before the plugin shared the cores out.

The figure that holds is the ratio to serial in the same run (these machines are shared).
Figures go to the terminal and to ``.benchmarks/parallel_speed.json``; docs/PERFORMANCE.md records
them. Commands::

    SAFETYCHECK_DATA=... pytest benchmarks/test_parallel_speed.py -p no:randomly -s          # full
    SAFETYCHECK_DATA=... pytest benchmarks/test_parallel_speed.py --benchmark-disable -s     # quick
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safetycheck.measures.acceleration import available_cores

REPO = Path(__file__).resolve().parents[1]
# The two models: the example LeNet and the zoo's CutOut LeNet (same architecture, same cost).
MODELS_FILE = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from example_models.zoo import load


def safety_model():
    return {{"lenet": load("lenet"), "cutout": load("cutout")}}
"""
CHECKS = {
    "full": [
        "--safety-checks=clean_accuracy,fgsm,pgd_linf,calibration,ood_auroc",
        "--safety-samples=1000",
    ],
    "quick": [
        "--safety-checks=clean_accuracy,fgsm,pgd_linf",
        "--safety-eps=0.1,0.3",
        "--safety-samples=100",
    ],
}
MODES = {
    "serial": [],
    "xdist": ["-n", "2", "--dist", "loadgroup"],
    "xdist_oversubscribed": [
        "-n",
        "2",
        "--dist",
        "loadgroup",
        f"--safety-threads={available_cores()}",
    ],
}
RESULTS: dict = {}


def _run(mode: str, size: str, tmp_path: Path) -> dict:
    report = tmp_path / f"{mode}.json"
    models = tmp_path / "two_lenets.py"
    models.write_text(MODELS_FILE)
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"--safety-model={models}",
        *CHECKS[size],
        *MODES[mode],
        "-q",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        f"--safety-json={report}",
    ]
    log = tmp_path / f"{mode}.log"
    with open(log, "w") as output:
        started = time.perf_counter()
        status = subprocess.call(
            command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        seconds = time.perf_counter() - started
    assert status in (0, 1), log.read_text()[-6000:]  # 1: a check failed its bound, still measured
    records = json.loads(report.read_text())["results"]
    return {
        "seconds": round(seconds, 1),
        "checks": len(records),
        "values": {f"{r['model']}/{r['check']}": r["value"] for r in records},
    }


@pytest.mark.parametrize("mode", list(MODES))
def test_parallel_speed(benchmark, mode, quick, tmp_path):
    if not os.environ.get("SAFETYCHECK_DATA"):
        pytest.skip(
            "real data unavailable: set SAFETYCHECK_DATA to a folder with the MNIST raw files"
        )
    if quick and mode == "xdist_oversubscribed":
        pytest.skip(
            "the oversubscribed mode runs only in the full benchmark (without --benchmark-disable)"
        )
    figures = benchmark.pedantic(
        _run, args=(mode, "quick" if quick else "full", tmp_path), rounds=1, iterations=1
    )
    RESULTS[mode] = figures
    if "serial" in RESULTS and mode != "serial":
        serial = RESULTS["serial"]
        figures["ratio_to_serial"] = round(figures["seconds"] / serial["seconds"], 2)
        assert figures["checks"] == serial["checks"]
        # The same checks measured the same images: counts equal, float sums within rounding.
        assert figures["values"] == pytest.approx(serial["values"], rel=1e-5)
    print(
        f"\n{mode} ({available_cores()} cores): {figures['seconds']} s for "
        f"{figures['checks']} checks"
        + (f", {figures['ratio_to_serial']}x serial" if "ratio_to_serial" in figures else "")
    )


def test_write_figures():
    if not RESULTS:
        pytest.skip("no mode was run")
    out = REPO / ".benchmarks" / "parallel_speed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {mode: {k: v for k, v in f.items() if k != "values"} for mode, f in RESULTS.items()},
            indent=2,
        )
        + "\n"
    )
