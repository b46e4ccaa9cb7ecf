"""The dataset-file loaders (safetycheck/io/formats.py) on small files written in exactly the
official formats: pixel values and channel order, labels, class names, agreement with
torchvision's own dataset classes on the same files, and one clear DataError per bad input."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from official_formats import (
    CIFAR10_CLASSES,
    cifar10_batch,
    py2_pickle,
    random_images,
    write_cifar10,
    write_svhn,
)
from PIL import Image

from safetycheck.core.errors import ConfigError, DataError
from safetycheck.io.data import LabelledImages
from safetycheck.io.formats import (
    LoadedImages,
    cifar10_classes,
    default_workers,
    load_cifar10,
    load_image_folder,
    load_npz,
    load_svhn,
    require_classes_present,
    validate_labelled,
)


def assert_contract(loaded, count, shape):
    assert isinstance(loaded, LabelledImages) and isinstance(loaded, LoadedImages)
    assert loaded.images.dtype == torch.float32 and loaded.labels.dtype == torch.int64
    assert tuple(loaded.images.shape) == (count, *shape) and tuple(loaded.labels.shape) == (count,)
    assert loaded.images.is_contiguous() and loaded.images.device.type == "cpu"
    assert float(loaded.images.min()) >= 0.0 and float(loaded.images.max()) <= 1.0
    validate_labelled(loaded.images, loaded.labels, loaded.source)


def without_integrity_checks(monkeypatch):
    """torchvision compares each file's MD5 with the official file's; ours are small copies in
    the same format, so that comparison (and only it) is switched off."""
    import torchvision.datasets as tv

    monkeypatch.setattr(tv.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv.SVHN, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    return tv


def torchvision_tensors(dataset):
    from torchvision.transforms import ToTensor

    to_tensor = ToTensor()
    images = torch.stack([to_tensor(dataset[k][0]) for k in range(len(dataset))])
    labels = torch.tensor([int(dataset[k][1]) for k in range(len(dataset))])
    return images, labels


# ---------------------------------------------------------------------------------------------
# CIFAR-10


@pytest.fixture
def cifar_test(tmp_path):
    images = random_images(12, seed=1)
    labels = np.arange(12) % 10
    write_cifar10(tmp_path, images, labels, split="test")
    return tmp_path, images, labels


def test_cifar10_pixels_follow_the_r_g_b_planes_of_each_row(cifar_test):
    root, images, labels = cifar_test
    data = images.reshape(12, 3072)
    loaded = load_cifar10(root)
    assert_contract(loaded, 12, (3, 32, 32))
    for k, c, i, j in [(0, 0, 0, 0), (3, 1, 5, 7), (11, 2, 31, 31), (7, 2, 0, 31)]:
        expected = np.float32(data[k, c * 1024 + i * 32 + j]) / np.float32(255)
        assert loaded.images[k, c, i, j].item() == expected
    assert torch.equal(loaded.images, torch.from_numpy(images).float() / 255)
    assert loaded.labels.tolist() == labels.tolist()
    assert loaded.classes == CIFAR10_CLASSES == cifar10_classes(root)
    assert loaded.name == "cifar10-test" and loaded.scaled_from_uint8 and loaded.format == "cifar10"
    assert loaded.metadata()["note"] == "uint8 pixels divided by 255"
    assert loaded.source.endswith(os.path.join("cifar-10-batches-py", "test_batch"))


def test_cifar10_equals_torchvision_on_the_same_files(cifar_test, monkeypatch):
    root, _, _ = cifar_test
    tv = without_integrity_checks(monkeypatch)
    theirs = tv.CIFAR10(str(root), train=False, download=False)
    images, labels = torchvision_tensors(theirs)
    ours = load_cifar10(root, "test")
    assert torch.equal(ours.images, images)  # bit for bit, after ToTensor
    assert torch.equal(ours.labels, labels)
    assert list(ours.classes) == theirs.classes


def test_cifar10_train_reads_the_five_batches_in_order(tmp_path, monkeypatch):
    images = random_images(23, seed=2)
    labels = (np.arange(23) * 7) % 10
    write_cifar10(tmp_path, images, labels, split="train")
    loaded = load_cifar10(tmp_path, split="train")
    assert_contract(loaded, 23, (3, 32, 32))
    assert torch.equal(loaded.images, torch.from_numpy(images).float() / 255)
    assert loaded.labels.tolist() == labels.tolist()
    theirs = without_integrity_checks(monkeypatch).CIFAR10(str(tmp_path), train=True)
    assert torch.equal(loaded.images, torchvision_tensors(theirs)[0])


def test_cifar10_root_may_be_the_batch_folder(cifar_test):
    root, images, _ = cifar_test
    loaded = load_cifar10(root / "cifar-10-batches-py")
    assert torch.equal(loaded.images, load_cifar10(root).images)


def test_cifar10_batches_pickled_by_python_3_load_too(tmp_path):
    images = random_images(4, seed=3)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = cifar10_batch(images, [1, 2, 3, 4], b"re-saved")
    # Python 3's protocol 2 writes bytes as _codecs.encode(..., "latin1") calls.
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    loaded = load_cifar10(tmp_path)
    assert torch.equal(loaded.images, torch.from_numpy(images).float() / 255)
    assert loaded.classes == ()  # no batches.meta: no names
    str_keys = {key.decode(): value for key, value in batch.items()}
    (folder / "test_batch").write_bytes(pickle.dumps(str_keys, protocol=4))
    assert load_cifar10(tmp_path).labels.tolist() == [1, 2, 3, 4]


class _Shell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    evil = {b"data": _Shell(f"touch {marker}"), b"labels": [0]}
    (folder / "test_batch").write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(
        DataError, match=r"not a CIFAR-10 batch: it asks to load (posix|os)\.system"
    ):
        load_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name", [("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load")]
)
def test_any_global_outside_the_allow_list_is_refused(tmp_path, module, name):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"U\x011\x85R."
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match=rf"it asks to load {module}\.{name}"):
        load_cifar10(tmp_path)


def test_codecs_encode_is_allowed_only_for_latin1(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR-10 batch"):
        load_cifar10(tmp_path)


def test_cifar10_missing_files_name_the_expected_path(tmp_path):
    with pytest.raises(DataError, match=r"expected .*cifar-10-batches-py.test_batch.*python"):
        load_cifar10(tmp_path)
    with pytest.raises(DataError, match=r"expected .*batches\.meta"):
        cifar10_classes(tmp_path)


def test_cifar10_unknown_split_is_a_config_error(cifar_test):
    with pytest.raises(ConfigError, match="unknown split 'validation' for CIFAR-10"):
        load_cifar10(cifar_test[0], split="validation")


def test_a_truncated_batch_is_named(cifar_test):
    path = cifar_test[0] / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"test_batch is not a readable .* truncated or corrupt"):
        load_cifar10(cifar_test[0])


@pytest.mark.parametrize(
    "entry, message",
    [
        ([1, 2], "holds a list, not a dict"),
        ({b"labels": [1]}, r"has no data entry \(found: labels\)"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "has no labels entry"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "rows hold 3072 bytes"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"outside 0\.\.9"),
    ],
)
def test_a_batch_with_the_wrong_content_is_refused(tmp_path, entry, message):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(py2_pickle(entry))
    with pytest.raises(DataError, match=message):
        load_cifar10(tmp_path)


# ---------------------------------------------------------------------------------------------
# SVHN


@pytest.fixture
def svhn_test(tmp_path):
    images = random_images(10, seed=4, shape=(32, 32, 3))  # NHWC, as photographs are stored
    digits = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 0])
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", images, digits)
    return tmp_path, images, digits


def test_svhn_pixels_labels_and_classes(svhn_test):
    root, images, digits = svhn_test
    loaded = load_svhn(root)
    assert_contract(loaded, 10, (3, 32, 32))
    # X[i, j, c, k] is pixel (i, j), channel c, of image k
    x = np.transpose(images, (1, 2, 3, 0))
    for k, c, i, j in [(0, 0, 0, 0), (9, 2, 31, 30), (4, 1, 17, 3)]:
        assert loaded.images[k, c, i, j].item() == np.float32(x[i, j, c, k]) / np.float32(255)
    assert loaded.labels.tolist() == digits.tolist()  # 10 in the file is the digit 0
    assert loaded.classes == tuple("0123456789") and loaded.name == "svhn-test"
    assert "label 10 read as digit 0" in loaded.note


def test_svhn_equals_torchvision_on_the_same_file(svhn_test, monkeypatch):
    root, _, _ = svhn_test
    tv = without_integrity_checks(monkeypatch)
    images, labels = torchvision_tensors(tv.SVHN(str(root / "svhn"), split="test"))
    ours = load_svhn(root, "test")
    assert torch.equal(ours.images, images) and torch.equal(ours.labels, labels)


def test_svhn_file_may_sit_in_the_root_itself(tmp_path):
    images = random_images(3, seed=5, shape=(32, 32, 3))
    write_svhn(tmp_path / "train_32x32.mat", images, [3, 0, 9])
    loaded = load_svhn(tmp_path, split="train")
    assert loaded.labels.tolist() == [3, 0, 9] and loaded.source.endswith("train_32x32.mat")


def test_svhn_missing_file_names_both_places(tmp_path):
    with pytest.raises(DataError, match=r"expected .*svhn.test_32x32\.mat or .*test_32x32\.mat"):
        load_svhn(tmp_path)
    with pytest.raises(ConfigError, match="unknown split 'extra'"):
        load_svhn(tmp_path, split="extra")


def test_svhn_corrupt_or_wrong_files_are_refused(tmp_path):
    from scipy.io import savemat

    path = tmp_path / "test_32x32.mat"
    path.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match=r"test_32x32\.mat is not a readable MATLAB file"):
        load_svhn(tmp_path)
    savemat(str(path), {"images": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataError, match=r"has no variable X or y \(found: images\)"):
        load_svhn(tmp_path)
    savemat(str(path), {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(DataError, match=r"holds labels 0\.\.3; SVHN's y holds 1\.\.10"):
        load_svhn(tmp_path)
    savemat(str(path), {"X": np.zeros((32, 32, 2), np.float64), "y": np.array([[1]])})
    with pytest.raises(DataError, match=r"SVHN's X is uint8 \(32, 32, 3, N\)"):
        load_svhn(tmp_path)


# ---------------------------------------------------------------------------------------------
# npz


def save_npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "layout, shape",
    [("nchw", (6, 3, 8, 9)), ("nhwc", (6, 8, 9, 3)), ("nhw", (6, 8, 9)), ("nchw", (6, 1, 28, 28))],
)
def test_npz_uint8_layouts_keep_pixels_and_channel_order(tmp_path, layout, shape):
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    y = np.arange(6) % 3
    loaded = load_npz(save_npz(tmp_path, x=x, y=y))
    nchw = {"nchw": x, "nhwc": x.transpose(0, 3, 1, 2) if x.ndim == 4 else x, "nhw": x[:, None]}
    expected = torch.from_numpy(np.ascontiguousarray(nchw[layout])).float() / 255
    assert_contract(loaded, 6, tuple(expected.shape[1:]))
    assert torch.equal(loaded.images, expected)
    assert loaded.labels.tolist() == y.tolist()
    assert loaded.scaled_from_uint8 and loaded.note == "uint8 pixels divided by 255"
    assert loaded.classes == () and loaded.name == "data" and loaded.format == "npz"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_npz_float_pixels_are_kept_as_they_are(tmp_path, dtype):
    x = np.random.default_rng(1).random((4, 2, 5, 6)).astype(dtype)
    x[0, 0, 0, :2] = [0.0, 1.0]
    loaded = load_npz(save_npz(tmp_path, x=x, y=np.array([0, 1, 0, 1], np.int32)))
    assert_contract(loaded, 4, (2, 5, 6))
    assert torch.equal(loaded.images, torch.from_numpy(x.astype(np.float32)))
    assert not loaded.scaled_from_uint8


def test_npz_classes_are_returned(tmp_path):
    x = np.zeros((3, 4, 4), np.uint8)
    path = save_npz(tmp_path, x=x, y=np.array([0, 2, 1]), classes=np.array(["cat", "dog", "owl"]))
    assert load_npz(path).classes == ("cat", "dog", "owl")


GOOD_X = np.zeros((3, 3, 8, 8), np.uint8)
GOOD_Y = np.array([0, 1, 2])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": GOOD_X, "y": GOOD_Y}, r"has no array 'x' \(found: images, y\)"),
        ({"x": GOOD_X, "targets": GOOD_Y}, r"has no array 'y' \(found: x, targets\)"),
        ({"x": GOOD_X, "y": GOOD_Y[:2]}, "x holds 3 images but y holds 2 labels"),
        ({"x": GOOD_X, "y": GOOD_Y.astype(float)}, r"y has dtype float64; labels must be integ"),
        ({"x": GOOD_X, "y": np.array([0, -1, 2])}, "y holds negative labels"),
        ({"x": GOOD_X, "y": GOOD_Y[:, None]}, r"y has shape \(3, 1\); expected one label"),
        (
            {"x": np.full((3, 3, 8, 8), 255.0, np.float32), "y": GOOD_Y},
            r"outside \[0, 1\]; rescale to \[0, 1\] yourself; safetycheck does not rescale",
        ),
        (
            {"x": np.full((3, 3, 8, 8), -0.5, np.float32), "y": GOOD_Y},
            r"float pixels range over \[-0.5, -0.5\], outside \[0, 1\]",
        ),
        (
            {"x": np.where(GOOD_X == 0, np.nan, 0.5).astype(np.float32), "y": GOOD_Y},
            "x contains NaN pixels",
        ),
        ({"x": np.zeros((3, 3, 4, 3), np.uint8), "y": GOOD_Y}, "channels-first and as channels-"),
        ({"x": np.zeros((3, 5, 6, 7), np.uint8), "y": GOOD_Y}, "neither axis 1 nor the last"),
        ({"x": np.zeros((3, 1, 3, 8, 8), np.uint8), "y": GOOD_Y}, r"x has shape \(3, 1, 3, 8, 8"),
        ({"x": np.zeros((0, 3, 8, 8), np.uint8), "y": GOOD_Y[:0]}, "x is empty"),
        ({"x": np.zeros((3, 3, 0, 8), np.uint8), "y": GOOD_Y}, "zero height or width"),
        ({"x": GOOD_X.astype(np.int64), "y": GOOD_Y}, "x has dtype int64; pixels must be uint8"),
        ({"x": GOOD_X, "y": GOOD_Y, "classes": np.array(["a", "b"])}, r"only 2 classes"),
        ({"x": GOOD_X, "y": GOOD_Y, "classes": np.arange(3)}, "classes is int64"),
        (
            {"x": GOOD_X, "y": GOOD_Y, "classes": np.array(["a", None, 3], dtype=object)},
            "Object arrays cannot be loaded",
        ),
    ],
)
def test_npz_bad_input_is_one_data_error_naming_the_file(tmp_path, arrays, message):
    path = save_npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_npz(path)
    assert str(path) in str(info.value)
    error = info.value  # one message, no chained traceback from inside numpy
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_npz_files_that_are_not_npz(tmp_path):
    with pytest.raises(DataError, match="npz file not found"):
        load_npz(tmp_path / "absent.npz")
    npy = tmp_path / "one.npy"
    np.save(npy, GOOD_X)
    with pytest.raises(DataError, match=r"holds one array \(a .npy\)"):
        load_npz(npy)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"text\.npz is not a readable \.npz file"):
        load_npz(text)
    broken = save_npz(tmp_path, x=GOOD_X, y=GOOD_Y)
    with zipfile.ZipFile(broken) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("x.npy", members["x.npy"][:100])
        archive.writestr("y.npy", members["y.npy"])
    with pytest.raises(DataError, match=r"data\.npz is truncated or corrupt \(EOF"):
        load_npz(broken)


# ---------------------------------------------------------------------------------------------
# ImageFolder


def picture(seed: int, size=(20, 16), mode="RGB") -> Image.Image:
    """A small generated 'photograph': gradients plus noise, every channel different."""
    rng = np.random.default_rng(seed)
    height, width = size[1], size[0]
    yy, xx = np.mgrid[0:height, 0:width]
    planes = [
        (xx * 11 + yy * 3 + 40 * c + rng.integers(0, 30, (height, width))) % 256 for c in (0, 1, 2)
    ]
    image = Image.fromarray(np.stack(planes, -1).astype(np.uint8), "RGB")
    return image if mode == "RGB" else image.convert(mode)


def write_folder(root, per_class=3, classes=("cat", "dog", "emu"), **kwargs):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            picture(c * 100 + k, **kwargs).save(root / name / f"{k:03d}.png")
    return root


def test_image_folder_equals_torchvision_imagefolder_with_to_tensor(tmp_path):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    folder = write_folder(tmp_path / "pets")
    loaded = load_image_folder(folder)
    assert_contract(loaded, 9, (3, 16, 20))
    theirs = ImageFolder(str(folder), transform=ToTensor())
    images, labels = torchvision_tensors_from_transformed(theirs)
    assert torch.equal(loaded.images, images) and torch.equal(loaded.labels, labels)
    assert loaded.classes == ("cat", "dog", "emu") == tuple(theirs.classes)
    assert loaded.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and loaded.name == "pets"


def torchvision_tensors_from_transformed(dataset):
    return (
        torch.stack([dataset[k][0] for k in range(len(dataset))]),
        torch.tensor([dataset[k][1] for k in range(len(dataset))]),
    )


def test_image_folder_in_parallel_workers_gives_the_same_tensors(tmp_path):
    folder = write_folder(tmp_path / "f", per_class=130, classes=("a", "b"), size=(8, 8))
    serial = load_image_folder(folder, workers=0)
    parallel = load_image_folder(folder, workers=2)
    assert torch.equal(serial.images, parallel.images)
    assert torch.equal(serial.labels, parallel.labels) and len(parallel) == 260


def test_default_workers_is_zero_for_small_folders():
    assert default_workers(10) == 0
    assert 0 <= default_workers(100_000) <= 8


def test_images_of_different_sizes_are_refused_naming_two_files(tmp_path):
    folder = write_folder(tmp_path / "f", per_class=2, classes=("a", "b"))
    picture(7, size=(21, 16)).save(folder / "b" / "001.png")
    with pytest.raises(DataError, match="different sizes") as info:
        load_image_folder(folder)
    message = str(info.value)
    assert os.path.join("a", "000.png") in message and "20x16" in message
    assert os.path.join("b", "001.png") in message and "21x16" in message


def test_mixed_modes_are_all_read_as_rgb(tmp_path):
    folder = write_folder(tmp_path / "f", per_class=2, classes=("a", "b"))
    gray = picture(9, mode="L")
    gray.save(folder / "a" / "001.png")
    picture(10, mode="RGBA").save(folder / "b" / "000.png")
    picture(11, mode="P").save(folder / "b" / "001.png")
    loaded = load_image_folder(folder)
    assert_contract(loaded, 4, (3, 16, 20))
    as_rgb = np.asarray(gray.convert("RGB")).transpose(2, 0, 1)
    assert torch.equal(loaded.images[1], torch.from_numpy(as_rgb.copy()).float() / 255)
    rgba = np.asarray(picture(10, mode="RGBA").convert("RGB")).transpose(2, 0, 1)
    assert torch.equal(loaded.images[2], torch.from_numpy(rgba.copy()).float() / 255)
    assert "grayscale images repeated to RGB" in loaded.note


def test_an_all_grayscale_folder_has_one_channel(tmp_path):
    folder = write_folder(tmp_path / "f", per_class=2, classes=("a", "b"), mode="L")
    loaded = load_image_folder(folder)
    assert_contract(loaded, 4, (1, 16, 20))
    expected = np.asarray(picture(100, mode="L"))
    assert torch.equal(loaded.images[2, 0], torch.from_numpy(expected.copy()).float() / 255)


def test_unreadable_and_16_bit_images_are_named(tmp_path):
    folder = write_folder(tmp_path / "f", per_class=1, classes=("a", "b"))
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png: it cannot be read as an image"):
        load_image_folder(folder)
    (folder / "b" / "broken.png").unlink()
    Image.fromarray(np.zeros((16, 20), np.uint16) + 300).save(folder / "b" / "deep.png")
    with pytest.raises(DataError, match=r"deep\.png: it is a I;16 .*save it as 8-bit"):
        load_image_folder(folder)


def test_a_folder_without_class_folders_is_refused(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        load_image_folder(tmp_path / "absent")
    (tmp_path / "flat").mkdir()
    picture(0).save(tmp_path / "flat" / "one.png")
    with pytest.raises(DataError, match="not in ImageFolder layout"):
        load_image_folder(tmp_path / "flat")
    (tmp_path / "flat" / "a").mkdir()
    with pytest.raises(DataError, match="not in ImageFolder layout"):
        load_image_folder(tmp_path / "flat")
    with pytest.raises(ConfigError, match="workers must be 0 or more"):
        load_image_folder(write_folder(tmp_path / "ok", per_class=1), workers=-1)


# ---------------------------------------------------------------------------------------------
# Shared validation


def test_validate_labelled_accepts_the_contract_and_names_each_breach():
    images, labels = torch.rand(4, 3, 5, 5), torch.tensor([0, 1, 2, 1])
    validate_labelled(images, labels, "mine", num_classes=3)
    breaches = [
        ((images.double(), labels), "float32"),
        ((images[:, :, 0], labels), "float32"),
        ((torch.rand(4, 5, 5, 5), labels), "5 channels"),
        ((images * 2, labels), r"outside \[0, 1\]; rescale"),
        ((images.masked_fill(images > 0.5, float("nan")), labels), "NaN"),
        ((images, labels.int()), "int64"),
        ((images, labels[:3]), "4 images but 3 labels"),
        ((images, torch.tensor([0, -1, 2, 1])), "0 or more"),
        ((images, torch.tensor([0, 1, 3, 1])), r"label 3 is out of range for 3 classes"),
        ((torch.rand(0, 3, 5, 5), labels[:0]), "holds no images"),
    ]
    for (bad_images, bad_labels), message in breaches:
        with pytest.raises(DataError, match=message) as info:
            validate_labelled(bad_images, bad_labels, "mine", num_classes=3)
        assert str(info.value).startswith("mine: ")


def test_require_classes_present_is_a_separate_rule():
    require_classes_present(torch.tensor([0, 1, 1]), "mine")
    with pytest.raises(DataError, match="only 1 class"):
        require_classes_present(torch.tensor([4, 4, 4]), "mine")
