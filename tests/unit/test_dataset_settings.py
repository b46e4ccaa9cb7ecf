"""A run's dataset: chosen by option or threshold file, it sets the defaults (radii, OOD sets),
the thresholds that apply, what the records say, and which baselines compare."""

from __future__ import annotations

import pytest

from safetycheck.core.errors import ConfigError
from safetycheck.gate.baseline import Baseline, refuse_other_dataset
from safetycheck.gate.thresholds import load_config
from safetycheck.io.profiles import CIFAR_LINF, MNIST_LINF, PROFILES
from safetycheck.run.settings import Options, build_settings


def settings_for(tmp_path, text: str = "", **options):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return build_settings(Options(**options), load_config(path))


def test_mnist_is_the_default_and_keeps_its_defaults(tmp_path):
    settings = settings_for(tmp_path)
    assert settings.dataset is PROFILES["mnist"]
    assert settings.epsilons == MNIST_LINF
    assert settings.ood.sets == ("fmnist", "kmnist", "uniform", "gaussian")


@pytest.mark.parametrize(
    ("name", "epsilons", "sets"),
    [
        ("fashion_mnist", MNIST_LINF, ("mnist", "kmnist", "uniform", "gaussian")),
        ("kmnist", MNIST_LINF, ("mnist", "fmnist", "uniform", "gaussian")),
        ("cifar10", CIFAR_LINF, ("svhn", "uniform", "gaussian")),
        ("svhn", CIFAR_LINF, ("cifar10", "uniform", "gaussian")),
    ],
)
def test_a_profile_brings_its_radii_and_ood_sets(tmp_path, name, epsilons, sets):
    by_option = settings_for(tmp_path, dataset=name)
    by_file = settings_for(tmp_path, f'dataset = "{name}"\n')
    for settings in (by_option, by_file):
        assert settings.dataset.name == name
        assert settings.epsilons == epsilons and settings.ood.sets == sets


def test_the_option_wins_over_the_file_and_explicit_settings_win_over_the_profile(tmp_path):
    settings = settings_for(
        tmp_path,
        'dataset = "cifar10"\nepsilons = [0.01]\n[ood]\nsets = ["uniform"]\n',
        dataset="svhn",
    )
    assert settings.dataset.name == "svhn"
    assert settings.epsilons == (0.01,) and settings.ood.sets == ("uniform",)


def test_an_unknown_dataset_names_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'fashion_mnist'"):
        settings_for(tmp_path, dataset="fashion")
    with pytest.raises(ConfigError, match=r"thresholds.toml: dataset: unknown dataset 'cifar'"):
        settings_for(tmp_path, 'dataset = "cifar"\n')
    with pytest.raises(ConfigError, match="dataset must be a dataset name"):
        settings_for(tmp_path, "dataset = 3\n")


def test_thresholds_per_dataset_sit_between_the_models_and_the_files(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text(
        "[thresholds]\nclean_accuracy = 0.95\n"
        "[datasets.fashion_mnist.thresholds]\nclean_accuracy = 0.90\n"
        "[models.special.thresholds]\nclean_accuracy = 0.5\n"
    )
    config = load_config(path)
    on_fashion = config.threshold("m", "clean_accuracy", "clean_accuracy", "fashion_mnist")
    assert on_fashion.value == 0.90
    assert on_fashion.source == "thresholds.toml: datasets.fashion_mnist.thresholds.clean_accuracy"
    assert config.threshold("m", "clean_accuracy", "clean_accuracy", "mnist").value == 0.95
    assert (
        config.threshold("special", "clean_accuracy", "clean_accuracy", "fashion_mnist").value
        == 0.5
    )


def test_a_model_on_a_dataset_is_the_most_specific_table(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text(
        "[datasets.fashion_mnist.thresholds]\nclean_accuracy = 0.90\n"
        "[models.m.thresholds]\nclean_accuracy = 0.5\npgd_linf = 0.1\n"
        "[models.m.datasets.fashion_mnist.thresholds]\nclean_accuracy = 0.88\n"
        "[models.m.datasets.defects.thresholds]\nclean_accuracy = 0.7\n"
    )
    config = load_config(path)
    found = config.threshold("m", "clean_accuracy", "clean_accuracy", "fashion_mnist")
    assert (found.value, found.source) == (
        0.88,
        "thresholds.toml: models.m.datasets.fashion_mnist.thresholds.clean_accuracy",
    )
    # a user's own dataset is named by its file's stem, as the results records name it
    assert config.threshold("m", "clean_accuracy", "clean_accuracy", "defects").value == 0.7
    # the model's own table still applies on every dataset, below the per-dataset table
    assert config.threshold("m", "clean_accuracy", "clean_accuracy", "mnist").value == 0.5
    assert config.threshold("m", "pgd_linf", "pgd_linf[eps=0.1]", "fashion_mnist").value == 0.1
    assert config.threshold("other", "clean_accuracy", "clean_accuracy", "fashion_mnist").value == (
        0.90
    )


@pytest.mark.parametrize(
    ("section", "nearest"),
    [
        ("datasets.fashion_mnst", "fashion_mnist"),
        ("datasets.cifar", "cifar10"),
        ("models.m.datasets.kmnst", "kmnist"),
        ('datasets."Fashion-MNIST"', None),
    ],
)
def test_thresholds_for_a_mistyped_dataset_are_refused(tmp_path, section, nearest):
    path = tmp_path / "thresholds.toml"
    path.write_text(f"[{section}.thresholds]\nclean_accuracy = 0.9\n")
    hint = f"did you mean '{nearest}'" if nearest else "use a built-in profile"
    with pytest.raises(ConfigError, match=rf"is not a dataset name; {hint}"):
        load_config(path)


def test_a_baseline_of_another_dataset_is_refused(tmp_path):
    old = Baseline(tmp_path / "old.json", {"seed": 0}, [])  # before profiles: MNIST
    refuse_other_dataset(old, "mnist")
    with pytest.raises(ConfigError, match="measured on the mnist dataset and this run tests svhn"):
        refuse_other_dataset(old, "svhn")
    cifar = Baseline(tmp_path / "c.json", {"dataset": {"name": "cifar10"}}, [])
    refuse_other_dataset(cifar, "cifar10")


def write_npz(path, n: int = 12, shape=(8, 8)):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (n, *shape), dtype=np.uint8), y=np.arange(n) % 3)


def test_a_dataset_table_reads_the_file_beside_the_threshold_file(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    write_npz(tmp_path / "data" / "mine.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = settings_for(
        tmp_path,
        '[dataset]\npath = "data/mine.npz"\nclasses = ["a", "b", "c"]\nepsilons = [0.2, 0.1]\n',
    )
    assert settings.dataset.name == "mine" and settings.dataset.classes == ("a", "b", "c")
    assert settings.dataset.input_shape == (1, 8, 8) and settings.epsilons == (0.1, 0.2)
    assert settings.dataset.note == "uint8 pixels divided by 255"
    assert settings.ood.sets == ("uniform", "gaussian")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[dataset]\nname = "mnist"\npath = "x.npz"\n', "exactly one of name"),
        ('[dataset]\npath = "missing.npz"\n', "is not an .npz file or an image folder"),
        (
            '[dataset]\nname = "mnist"\nmean_sd = [0.1]\n',
            "unknown key 'dataset.mean_sd'; did you mean 'mean_std'",
        ),
        ('[dataset]\npath = "data/mine.npz"\nclasses = ["a"]\n', "labels go up to 2"),
    ],
)
def test_a_bad_dataset_table_is_one_usage_error(tmp_path, text, message):
    (tmp_path / "data").mkdir()
    write_npz(tmp_path / "data" / "mine.npz")
    with pytest.raises(ConfigError, match=message):
        settings_for(tmp_path, text)


def test_a_dataset_table_adds_its_own_ood_sets(tmp_path):
    import numpy as np

    (tmp_path / "data").mkdir()
    write_npz(tmp_path / "data" / "mine.npz")
    np.save(tmp_path / "data" / "scratches.npy", np.zeros((5, 8, 8), dtype=np.uint8))
    settings = settings_for(
        tmp_path,
        '[dataset]\npath = "data/mine.npz"\n[dataset.ood_sets]\nscratches = "data/scratches.npy"\n',
    )
    assert settings.ood.sets == ("uniform", "gaussian", "scratches")
    assert settings.ood.user_sets == (("scratches", str(tmp_path / "data" / "scratches.npy")),)


def test_mean_std_is_recorded_for_display_only(tmp_path):
    settings = settings_for(
        tmp_path,
        '[dataset]\nname = "cifar10"\nmean_std = [[0.49, 0.48, 0.45], [0.25, 0.24, 0.26]]\n',
    )
    assert settings.dataset.mean_std == ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    assert settings.dataset == PROFILES["cifar10"]  # the same dataset: display only
    with pytest.raises(ConfigError, match="mean_std must be"):
        settings_for(tmp_path, '[dataset]\nname = "mnist"\nmean_std = [0.1, 0.0]\n')
