"""The paired gate on the real MNIST test set (issue #21): a LeNet that gets 20 more test images
wrong and none newly right (0.9927 -> 0.9907) is flagged by McNemar's test against the original's
results and not by the unpaired rule, with its calibration compared by a paired bootstrap and its
OOD AUROC by DeLong's paired test; a LeNet whose maximum softmax probability is a slightly worse
OOD detector (AUROC against Fashion-MNIST 0.9923 -> 0.9913) is flagged by DeLong's test and not by
the unpaired rule; the original against itself, and against a quick run on another subset of
images, passes. DeLong's variance agrees with an exact paired bootstrap of the two AUROCs on the
real scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safetycheck.gate.baseline import compare
from safetycheck.gate.paired import delong_regression
from safetycheck.measures.ood_metrics import (
    _resample_counts,
    auroc,
    misranked_counts,
    weighted_auroc,
)

pytestmark = pytest.mark.real_data
REPO = Path(__file__).resolve().parents[2]
LENET = REPO / "example_models" / "lenet.py"
REGRESSED = Path(__file__).with_name("regressed_lenet.py")
OVERCONFIDENT = Path(__file__).with_name("overconfident_lenet.py")
GATE = (
    "[thresholds]\nclean_accuracy = 0.0\nfgsm = 0.0\ncalibration = 100.0\nood_auroc = 0.5\n"
    '[ood]\nsets = ["fmnist"]\nscores = ["msp"]\n'
)


def run_plugin(tmp_path: Path, model: Path, out: str, *args: str) -> tuple[int, str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         f"--safety-model={model}", "--safety-checks=clean_accuracy,fgsm,calibration,ood_auroc",
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
    # OOD AUROC by DeLong's paired test on the same MNIST and Fashion-MNIST images.
    ood = by_check(document)["ood_auroc[fmnist-msp]"]["baseline"]
    assert ood["paired"] and ood["test"] == "DeLong" and 0.0 <= ood["p_value"] <= 1.0
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


def test_a_worse_ood_detector_fails_delong_test_not_the_unpaired_rule(baseline):
    folder, base = baseline
    code, output, document = run_plugin(
        folder, OVERCONFIDENT, "overconfident.json", "--safety-baseline=base.json"
    )
    assert code == 1, output[-3000:]
    record = by_check(document)["ood_auroc[fmnist-msp]"]
    assert record["value"] == pytest.approx(0.9913, abs=5e-5)
    verdict = record["baseline"]
    assert verdict["regressed"] and verdict["test"] == "DeLong" and verdict["z"] > 10
    assert "AUROC 0.9913 now vs 0.9923 on the same 20000 images (DeLong's paired test" in output
    # The predictions did not change: every accuracy-type check is paired and unchanged.
    assert by_check(document)["clean_accuracy"]["baseline"]["p_value"] == 1.0
    unpaired = compare(record, by_check(base)["ood_auroc[fmnist-msp]"])
    assert not unpaired.regressed and unpaired.difference == pytest.approx(0.001, abs=5e-5)


def test_delong_variance_is_that_of_an_exact_paired_bootstrap_on_real_scores(data_root):
    """On the real MNIST test set against Fashion-MNIST, the original LeNet's and the sharpened
    one's maximum softmax probabilities: the standard error of the AUROC difference by DeLong's
    formula is within 10% of the standard deviation of 1,000 exact paired stratified bootstrap
    replicates (both runs' AUROC on each resample of the same images), and the one-sided p-values
    agree."""
    import sys

    import numpy as np
    import torch

    from example_models.lenet import safety_model as lenet
    from safetycheck.io.data import load_split

    sys.path.insert(0, str(OVERCONFIDENT.parent))
    try:
        from regressed_lenet import safety_model as nudged
    finally:
        sys.path.remove(str(OVERCONFIDENT.parent))
    inside, outside = load_split("mnist", "test").images, load_split("fashion_mnist", "test").images

    def msp(model, images):
        with torch.no_grad():
            batches = [model(batch).softmax(1).amax(1) for batch in images.split(1000)]
        return torch.cat(batches).double().numpy()

    original, other = lenet().eval(), nudged()
    base_in, base_out = msp(original, inside), msp(original, outside)
    now_in, now_out = msp(other, inside), msp(other, outside)
    test = delong_regression(
        *misranked_counts(base_in, base_out), *misranked_counts(now_in, now_out)
    )
    assert test.difference == pytest.approx(auroc(base_in, base_out) - auroc(now_in, now_out))
    rng = np.random.default_rng(0)
    replicates = []
    for _ in range(4):
        in_weights = _resample_counts(rng, 250, base_in.size)
        out_weights = _resample_counts(rng, 250, base_out.size)
        replicates.append(
            weighted_auroc(base_in, base_out, in_weights, out_weights)
            - weighted_auroc(now_in, now_out, in_weights, out_weights)
        )
    differences = np.concatenate(replicates)
    standard_error = test.difference / test.z
    assert standard_error == pytest.approx(differences.std(), rel=0.1)
    bootstrap_p = (1 + np.count_nonzero(differences <= 0)) / (differences.size + 1)
    assert test.p_value == pytest.approx(bootstrap_p, abs=0.05)
