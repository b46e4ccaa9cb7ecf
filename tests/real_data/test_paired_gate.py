"""The paired gate on the real MNIST test set (issue #21): a LeNet that gets 20 more test images
wrong and none newly right (0.9927 -> 0.9907) is flagged by McNemar's test against the original's
results and not by the unpaired rule, with its calibration compared by a paired bootstrap; the
original against itself, and against a quick run on another subset of images, passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safetycheck.gate.baseline import compare

pytestmark = pytest.mark.real_data
REPO = Path(__file__).resolve().parents[2]
LENET = REPO / "example_models" / "lenet.py"
REGRESSED = Path(__file__).with_name("regressed_lenet.py")
GATE = "[thresholds]\nclean_accuracy = 0.0\nfgsm = 0.0\ncalibration = 100.0\n"


def run_plugin(tmp_path: Path, model: Path, out: str, *args: str) -> tuple[int, str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         f"--safety-model={model}", "--safety-checks=clean_accuracy,fgsm,calibration",
         "--safety-thresholds=gate.toml", f"--safety-json={out}", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return (
        result.returncode,
        result.stdout + result.stderr,
        json.loads((tmp_path / out).read_text()),
    )


def by_check(document: dict) -> dict[str, dict]:
    return {r["check"]: r for r in document["results"]}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp("paired")
    (folder / "gate.toml").write_text(GATE)
    code, output, document = run_plugin(folder, LENET, "base.json")
    assert code == 0, output[-3000:]
    assert by_check(document)["clean_accuracy"]["value"] == pytest.approx(0.9927)
    return folder, document


def test_twenty_images_newly_wrong_fail_the_paired_gate_not_the_unpaired_rule(baseline):
    folder, base = baseline
    code, output, document = run_plugin(
        folder, REGRESSED, "regressed.json", "--safety-baseline=base.json"
    )
    assert code == 1, output[-3000:]
    record = by_check(document)["clean_accuracy"]
    assert record["value"] == pytest.approx(0.9907)
    verdict = record["baseline"]
    assert verdict["regressed"] and verdict["paired"]
    assert (verdict["lost"], verdict["gained"]) == (20, 0)
    assert verdict["p_value"] == pytest.approx(2.0**-20)
    assert "0.9907 now vs 0.9927" in output and "20 newly wrong, 0 newly right" in output
    assert "McNemar's exact test, one-sided p = 9.54e-07" in output
    # Calibration is compared by a paired bootstrap over the same images.
    calibration = [r["baseline"] for r in document["results"] if r["family"] == "calibration"]
    assert len(calibration) == 5 and all(v["test"] == "paired bootstrap" for v in calibration)
    # The rule before paired tests (the two 95% intervals in quadrature) does not see it.
    unpaired = compare(record, by_check(base)["clean_accuracy"])
    assert not unpaired.regressed and unpaired.difference == pytest.approx(0.002)


def test_the_original_against_itself_and_another_subset_passes(baseline):
    folder, _ = baseline
    code, output, document = run_plugin(folder, LENET, "same.json", "--safety-baseline=base.json")
    assert code == 0, output[-3000:]
    paired = [r["baseline"] for r in document["results"] if r["baseline"]["paired"]]
    assert len(paired) == len(document["results"])  # clean, every FGSM eps, every calibration
    assert all(v["p_value"] == 1.0 and v.get("lost", 0) == 0 for v in paired)
    code, output, document = run_plugin(
        folder, LENET, "subset.json", "--safety-baseline=base.json", "--safety-samples=2000"
    )
    assert code == 0, output[-3000:]
    for record in document["results"]:
        assert not record["baseline"]["paired"] and not record["baseline"]["regressed"]
        assert "unpaired: the two runs scored different images" in record["baseline"]["method"]
