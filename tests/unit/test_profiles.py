"""Dataset profiles: the MNIST profile is exactly today's contract and defaults, every built-in
profile is consistent, and the model contract is checked against the profile a run uses."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from safetycheck.checks.attacks import PGD_L2_EPSILONS
from safetycheck.checks.evaluation import RunSettings
from safetycheck.core.errors import ConfigError, ModelContractError
from safetycheck.io import models, profiles
from safetycheck.io.models import ModelUnderTest, check_contract
from safetycheck.measures.ood import BUILTIN_SETS, DEFAULT_SETS

CPU = torch.device("cpu")


def test_the_mnist_profile_is_todays_contract_and_defaults():
    mnist = profiles.profile("mnist")
    assert profiles.DEFAULT_PROFILE is mnist
    assert mnist.contract == "float32 images (N, 1, 28, 28) in [0, 1] in, logits (N, 10) out"
    assert models.CONTRACT == mnist.contract and models.INPUT_SHAPE == (1, 28, 28)
    assert mnist.epsilons["linf"] == RunSettings().epsilons
    assert mnist.epsilons["l2"] == PGD_L2_EPSILONS
    assert mnist.ood_sets == DEFAULT_SETS
    assert mnist.corruptions == "mnist_c"


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_every_built_in_profile_is_consistent(name):
    profile = profiles.PROFILES[name]
    assert profile.name == name and profile.num_classes == len(set(profile.classes)) >= 2
    assert profile.headline in profile.epsilons["linf"]
    assert name not in profile.ood_sets
    known_sets = set(BUILTIN_SETS) | set(profiles.PROFILES) | {"fmnist"}
    assert set(profile.ood_sets) <= known_sets, profile.ood_sets
    assert (profile.corruptions == "mnist_c") == (profile.input_shape == (1, 28, 28))


def test_cifar_and_svhn_are_each_others_ood_set_with_the_usual_radii():
    cifar, svhn = profiles.profile("cifar10"), profiles.profile("svhn")
    assert "svhn" in cifar.ood_sets and "cifar10" in svhn.ood_sets
    assert (
        cifar.epsilons["linf"] == (1 / 255, 2 / 255, 4 / 255, 8 / 255) and cifar.headline == 8 / 255
    )
    assert cifar.input_shape == svhn.input_shape == (3, 32, 32)
    assert svhn.classes == tuple("0123456789")


def test_an_unknown_profile_names_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        profiles.profile("cifar")
    with pytest.raises(ConfigError, match="built-in profiles: mnist, fashion_mnist"):
        profiles.profile("imagenet")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"channels": 5}, "1 to 4 channels"),
        ({"classes": ("one",)}, "at least 2 classes"),
        ({"epsilons": {"linf": (0.1, 0.05)}}, "positive and ascending"),
    ],
)
def test_an_inconsistent_profile_is_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(profiles.profile("mnist"), **fields)


def rgb_model(classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, classes)).eval()


def test_an_rgb_model_honours_the_cifar_contract():
    check_contract(
        ModelUnderTest("rgb", rgb_model(), "test"), CPU, profile=profiles.profile("cifar10")
    )


def test_an_rgb_model_under_the_mnist_contract_is_told_the_contract():
    with pytest.raises(
        ModelContractError, match=r"The contract is float32 images \(N, 1, 28, 28\)"
    ):
        check_contract(ModelUnderTest("rgb", rgb_model(), "test"), CPU)


def test_a_model_for_another_number_of_classes_is_told_the_datasets():
    with pytest.raises(ModelContractError, match=r"expected \(8, 10\) logits. \(CIFAR-10 has 10"):
        check_contract(
            ModelUnderTest("rgb", rgb_model(classes=100), "test"),
            CPU,
            profile=profiles.profile("cifar10"),
        )


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (4, 5, 7)])
def test_the_probe_batch_has_the_profiles_shape_and_the_extremes(shape):
    batch = models.probe_batch(shape=shape)
    assert batch.shape == (8, *shape) and batch.dtype == torch.float32
    assert batch[0].max() == 0 and batch[1].min() == 1 and 0 <= batch.min() <= batch.max() <= 1


def test_a_missing_cifar10_says_how_to_get_it(tmp_path):
    from safetycheck.core.errors import DataError

    with pytest.raises(DataError, match="cifar-10-batches-py/test_batch.*--safety-download"):
        profiles.profile("cifar10").load_test(tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_download_fetches_with_torchvision_into_the_layout_the_loader_reads(
    tmp_path, monkeypatch, name
):
    import sys
    from pathlib import Path

    import numpy as np
    import torchvision

    sys.path.insert(0, str(Path(__file__).parent))
    from official_formats import random_images, write_cifar10, write_svhn

    calls = []
    images = random_images(6)

    def fake_cifar10(root, train, download):
        calls.append(("cifar10", root, train, download))
        write_cifar10(Path(root), images, np.arange(6) % 10, split="train" if train else "test")

    def fake_svhn(root, split, download):
        calls.append(("svhn", root, split, download))
        write_svhn(Path(root) / f"{split}_32x32.mat", images.transpose(0, 2, 3, 1), np.arange(6))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    monkeypatch.setattr(torchvision.datasets, "SVHN", fake_svhn)
    loaded = profiles.profile(name).load_test(tmp_path, download=True)
    assert loaded.images.shape == (6, 3, 32, 32) and len(calls) == 1
    expected_root = str(tmp_path) if name == "cifar10" else str(tmp_path / "svhn")
    assert calls[0][0] == name and calls[0][1] == expected_root and calls[0][3] is True
    profiles.profile(name).load_test(tmp_path, download=True)
    assert len(calls) == 1  # the files are there now: no second download
