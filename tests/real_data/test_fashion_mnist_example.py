"""The second real example: ``example_models/fashion_mnist.py`` on the real Fashion-MNIST test set.

Its clean accuracy over all 10,000 test images is counted exactly and must be the one the training
script recorded in ``example_models/weights/manifest.json`` (so the committed weights are the
trained ones) and at least 0.90.
"""

import json

import pytest
import torch

from example_models import fashion_mnist
from safetycheck.io.data import load_split

MANIFEST = fashion_mnist.WEIGHTS.with_name("manifest.json")
MIN_ACCURACY = 0.90


@pytest.mark.real_data
def test_fashion_mnist_example_clean_accuracy(data_root):
    test_set = load_split("fashion_mnist", "test", root=data_root)
    assert len(test_set) == 10_000
    model = fashion_mnist.safety_model()
    assert not model.training
    assert model.name == "fashion_mnist"
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(test_set), 1000):
            logits = model(test_set.images[start : start + 1000])
            assert logits.shape == (len(test_set.labels[start : start + 1000]), 10)
            correct += int((logits.argmax(1) == test_set.labels[start : start + 1000]).sum())
    accuracy = correct / len(test_set)

    entry = json.loads(MANIFEST.read_text())["fashion_mnist"]
    assert entry["dataset"] == "fashion_mnist"
    assert entry["weights"] == fashion_mnist.WEIGHTS.name
    assert abs(accuracy - entry["fashion_mnist_test_accuracy"]) < 1e-4, (correct, entry)
    assert accuracy >= MIN_ACCURACY, f"{correct}/10000 = {accuracy:.4f} < {MIN_ACCURACY}"


def test_fashion_mnist_example_weights_are_small():
    assert fashion_mnist.WEIGHTS.is_file()
    assert fashion_mnist.WEIGHTS.stat().st_size < 2 * 1024 * 1024


def test_fashion_mnist_example_classes_in_torchvision_order():
    assert fashion_mnist.CLASSES == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )


@pytest.mark.real_data
@pytest.mark.slow
def test_fashion_mnist_example_passes_its_gate(data_root, tmp_path):
    """The repository's own gate for the example (pyproject.toml, models.fashion_mnist), run as a
    user would: every check of the default suite on the whole Fashion-MNIST test set; the bounds
    sit in the model's table for Fashion-MNIST (models.fashion_mnist.datasets.fashion_mnist)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--safety-model=example_models/fashion_mnist.py",
            "--safety-dataset=fashion_mnist",
            f"--safety-json={out}",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    document = json.loads(out.read_text())
    assert document["metadata"]["dataset"]["name"] == "fashion_mnist"
    records = document["results"]
    assert len(records) == 90 and all(r["dataset"] == "fashion_mnist" for r in records)
    assert all(r["passed"] for r in records)
    sources = {r["check"]: r["threshold_source"] for r in records}
    assert sources["clean_accuracy"].endswith(
        "models.fashion_mnist.datasets.fashion_mnist.thresholds.clean_accuracy"
    )
    assert {r["params"]["set"] for r in records if r["family"] == "ood_auroc"} == {
        "mnist",
        "kmnist",
        "uniform",
        "gaussian",
    }
