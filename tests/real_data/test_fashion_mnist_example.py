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
