"""One process against a torchrun job of two ranks on this machine's CPU (issue #22).

The main job's expensive families on the example LeNet (clean accuracy, PGD and FGSM at the four
epsilons on 1,000 attacked images, calibration, the OOD checks on the whole test set), timed in a
fresh process each way:

- ``serial``: one process, torch's own thread count (every core): what a user runs today;
- ``serial_1_thread``: one process with one intra-op thread, the settings each rank runs with;
- ``torchrun_2``: ``torchrun --standalone --nproc-per-node=2``, one thread per rank (torchrun's
  default), Gloo.

The job must give the one-thread serial run's results exactly (the same settings); the figures go
to the terminal and ``.benchmarks/torchrun.json``, and docs/PERFORMANCE.md records them. Commands::

    SAFETYCHECK_DATA=... pytest benchmarks/test_torchrun_scaling.py -p no:randomly -s
    # quick (the benchmarks' smoke run in CI): a 400-image subset, 200 attacked
    SAFETYCHECK_DATA=... pytest benchmarks/test_torchrun_scaling.py --benchmark-disable -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKS = "clean_accuracy,pgd_linf,fgsm,calibration,ood_auroc,ood_fpr95"


def timed(command: list[str], cwd: Path, env: dict, out: Path) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert out.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return seconds, json.loads(out.read_text())["results"]


def test_two_ranks_against_one_process(quick, tmp_path):
    if not os.environ.get("SAFETYCHECK_DATA"):
        pytest.skip("real data unavailable: set SAFETYCHECK_DATA")
    attacked = 200 if quick else 1000
    args = [
        "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
        f"--safety-model={REPO / 'example_models' / 'lenet.py'}",
        f"--safety-checks={CHECKS}", f"--safety-attack-samples={attacked}",
        *(["--safety-samples=400"] if quick else []),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("OMP_NUM_THREADS", None)
    pytest_command = [sys.executable, "-m", "pytest", *args]
    serial, _ = timed([*pytest_command, "--safety-json=a.json"], tmp_path, env, tmp_path / "a.json")
    one_thread = env | {"OMP_NUM_THREADS": "1"}
    serial_1, reference = timed(
        [*pytest_command, "--safety-json=b.json"], tmp_path, one_thread, tmp_path / "b.json"
    )
    job_command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node=2", "-m", "pytest", *args, "--safety-json=c.json"]  # fmt: skip
    job, results = timed(job_command, tmp_path, env, tmp_path / "c.json")
    figures = {
        "attacked_images": attacked,
        "cpu_cores": os.cpu_count(),
        "seconds_serial": round(serial, 1),
        "seconds_serial_1_thread": round(serial_1, 1),
        "seconds_torchrun_2": round(job, 1),
        "ratio_torchrun_2_to_serial": round(job / serial, 3),
        "ratio_torchrun_2_to_serial_1_thread": round(job / serial_1, 3),
    }
    print(f"\ntorchrun scaling: {figures}")
    if not quick:
        path = REPO / ".benchmarks" / "torchrun.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")
    assert results == reference  # the job computes the one-thread serial run's results
