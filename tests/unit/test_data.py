"""The data layer on small synthetic IDX files written here, and on the real data."""

import gzip
import struct

import numpy as np
import pytest
import torch

from safetycheck.core.errors import DataError
from safetycheck.io.data import (
    DATA_ENV_VAR,
    DataRoot,
    check_files,
    default_cache_root,
    expected_files,
    load_split,
    resolve_data_root,
)

SIZES = {"train": 60_000, "test": 10_000}


def write_idx(path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(f">i{array.ndim}i", magic, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """A data root whose MNIST files hold seeded random pixels and labels (official sizes)."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in SIZES.items():
        prefix = "train" if split == "train" else "t10k"
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return root, arrays


def copy_root(synthetic_root, tmp_path):
    root, _ = synthetic_root
    target = tmp_path / "copy" / "MNIST" / "raw"
    target.mkdir(parents=True)
    for name in expected_files("mnist"):
        (target / name).write_bytes((root / "MNIST" / "raw" / name).read_bytes())
    return tmp_path / "copy"


def test_synthetic_files_load_exactly(synthetic_root):
    root, arrays = synthetic_root
    for split in ("train", "test"):
        data = load_split("mnist", split, root=root)
        images, labels = arrays[split]
        assert data.images.dtype == torch.float32 and data.images.shape == (SIZES[split], 1, 28, 28)
        assert data.labels.dtype == torch.int64 and len(data) == SIZES[split]
        assert torch.equal(data.images[:, 0], torch.from_numpy(images).float() / 255)
        assert torch.equal(data.labels, torch.from_numpy(labels).long())


def test_loaded_once_per_process(synthetic_root):
    root, _ = synthetic_root
    assert load_split("mnist", "test", root=root) is load_split("mnist", "test", root=root)


def test_missing_files_name_dataset_files_folder_and_flag(tmp_path):
    with pytest.raises(DataError) as info:
        load_split("fashion_mnist", "test", root=tmp_path)
    message = str(info.value)
    for part in (
        "Fashion-MNIST data not found",
        "t10k-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        str(tmp_path / "FashionMNIST" / "raw"),
        "--safety-download",
        DATA_ENV_VAR,
    ):
        assert part in message


@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            lambda b: b[: len(b) // 2],
            "is truncated: 3920008 bytes where its header promises 7840016",
        ),
        (lambda b: b[:3], "is truncated (3 bytes)"),
        (lambda b: b[:10], "truncated inside its header"),
        (lambda b: gzip.compress(b, compresslevel=1), "not an uncompressed IDX file"),
        (lambda b: b + b"\0", "longer than its header says"),
        (
            lambda b: b[:4] + struct.pack(">i", 9999) + b[8:],
            "holds 9999 items where 10000 are expected",
        ),
    ],
)
def test_damaged_files_give_a_clear_error(synthetic_root, tmp_path, damage, expected):
    root = copy_root(synthetic_root, tmp_path)
    path = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as info:
        check_files("mnist", root)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'; choose one of"):
        load_split("cifar10", "test")
    with pytest.raises(DataError, match="unknown split 'validation'"):
        load_split("mnist", "validation")


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "cli") == DataRoot(
        (tmp_path / "cli").resolve(), "--safety-data"
    )
    assert resolve_data_root() == DataRoot((tmp_path / "env").resolve(), f"${DATA_ENV_VAR}")
    monkeypatch.delenv(DATA_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root() == DataRoot(
        tmp_path / "cache" / "safetycheck" / "data", "user cache folder"
    )
    assert default_cache_root() == tmp_path / "cache" / "safetycheck" / "data"


def test_no_download_without_permission(tmp_path, monkeypatch):
    import torchvision.datasets

    def forbidden(*args, **kwargs):
        raise AssertionError("downloaded without --safety-download")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", forbidden)
    with pytest.raises(DataError, match="MNIST data not found"):
        load_split("mnist", "test", root=tmp_path / "empty")


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.KMNIST, "download", offline)
    with pytest.raises(
        DataError, match="could not download Kuzushiji-MNIST .* network is unreachable"
    ):
        load_split("kmnist", "test", root=tmp_path, download=True)


@pytest.mark.parametrize(
    "dataset, first_labels, histogram",
    [
        (
            "mnist",
            [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
        ),
        ("fashion_mnist", [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], [1000] * 10),
        ("kmnist", None, [1000] * 10),
    ],
)
def test_real_test_sets(data_root, dataset, first_labels, histogram):
    data = load_split(dataset, "test", root=data_root)
    assert data.images.shape == (10_000, 1, 28, 28) and data.images.dtype == torch.float32
    assert 0.0 == data.images.min() and data.images.max() == 1.0
    assert torch.bincount(data.labels, minlength=10).tolist() == histogram
    if first_labels:
        assert data.labels[:10].tolist() == first_labels


def test_real_mnist_train(data_root):
    data = load_split("mnist", "train", root=data_root)
    assert data.images.shape == (60_000, 1, 28, 28)
    assert data.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


@pytest.mark.parametrize(
    "dataset, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")]
)
@pytest.mark.parametrize("split", ["train", "test"])
def test_reader_agrees_with_torchvision_byte_for_byte(data_root, dataset, folder, split):
    """The IDX reader returns exactly what torchvision's dataset class reads from the same files."""
    import torchvision.datasets

    reference = getattr(torchvision.datasets, folder)(
        root=str(data_root.path), train=split == "train"
    )
    loaded = load_split(dataset, split, root=data_root)
    assert torch.equal(loaded.images, reference.data.to(torch.float32).div(255).unsqueeze(1))
    assert torch.equal(loaded.labels, reference.targets)


def test_loading_does_not_import_torchvision(data_root):
    """Importing torchvision costs about two seconds per process (and per xdist worker); reading
    the files does not need it."""
    import subprocess
    import sys

    code = (
        "import sys; from safetycheck.io.data import load_split; "
        "load_split('mnist', 'test', root=sys.argv[1]); assert 'torchvision' not in sys.modules, "
        "'torchvision was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(data_root.path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
