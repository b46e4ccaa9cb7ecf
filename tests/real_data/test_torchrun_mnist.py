"""Issue #22's acceptance test on the real MNIST data: ``torchrun --nproc-per-node=2`` with Gloo on
this machine's CPU (two processes on two cores) gives exactly the JSON results of one process with
the same settings: clean accuracy, FGSM, PGD, calibration and the Fashion-MNIST OOD set, every
value, interval, n, verdict and per-image bitmap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
GATE = """
[ood]
sets = ["fmnist"]
scores = ["msp", "energy", "mahalanobis"]
"""
ARGS = [
    "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
    f"--safety-model={REPO / 'example_models' / 'lenet.py'}",
    "--safety-checks=clean_accuracy,fgsm,pgd_linf,calibration,ood_auroc,ood_fpr95",
    "--safety-thresholds=gate.toml",
]  # fmt: skip


def environment(data_root) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    # torchrun gives each rank one intra-op thread; the serial run gets the same.
    return env | {"SAFETYCHECK_DATA": str(data_root.path), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize(
    "mode",
    [
        ("--safety-attack-samples=200",),
        # Quick mode stops attack sweeps early (blocks of 100, each split over the ranks): the
        # same images are scored and every sweep stops where the serial one does.
        ("--safety-samples=1000", "--safety-attack-samples=400", "--safety-early-stop=on"),
    ],
    ids=["whole_test_set", "quick_with_early_stopping"],
)
def test_two_ranks_give_the_serial_results_on_mnist(data_root, tmp_path, mode):
    (tmp_path / "gate.toml").write_text(GATE)
    env = environment(data_root)
    serial = subprocess.run(
        [sys.executable, "-m", "pytest", *ARGS, *mode, "--safety-json=serial.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (tmp_path / "serial.json").is_file(), serial.stdout[-3000:] + serial.stderr[-3000:]
    job = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "pytest", *ARGS, *mode, "--safety-json=job.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=1200,
    )  # fmt: skip
    output = job.stdout + job.stderr
    assert (tmp_path / "job.json").is_file(), output[-4000:]
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("serial.json", "job.json"))
    assert two["metadata"]["ranks"]["world_size"] == 2
    families = {r["family"] for r in two["results"]}
    assert {"clean_accuracy", "fgsm", "pgd_linf", "calibration", "ood_auroc"} <= families
    clean = next(r for r in two["results"] if r["check"] == "clean_accuracy")
    assert clean["n"] == (1000 if "--safety-samples=1000" in mode else 10000)
    if "--safety-early-stop=on" in mode:
        assert any((r["artifacts"] or {}).get("early_stop") for r in two["results"])
    assert any(r["check"] == "ood_auroc[fmnist-mahalanobis]" for r in two["results"])
    for mine, theirs in zip(two["results"], one["results"], strict=True):
        assert mine == theirs, mine["check"]
    # The same exit status as the serial run (the built-in bounds fail at large eps).
    assert (job.returncode != 0) == (serial.returncode != 0), output[-3000:]
    assert output.count("safetycheck results") == 1
