"""MNIST-C corruptions: contract, determinism, bad input, faithfulness to the reference recipe,
the on-disk cache, the official-set loader, the gallery and the check families."""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
import torch
from mnist_c_reference import reference_corrupt  # tests/ is on sys.path (rootdir-relative import)

from safetycheck.core.errors import ConfigError, DataError
from safetycheck.measures.corruptions import (
    ALL_NAMES,
    CORRUPTIONS,
    IMPLEMENTATION_VERSION,
    cache_path,
    corrupt,
    gallery,
    generate_corrupted,
    load_corrupted,
    load_official,
)

FAITHFUL_SAMPLES = 200
SLOW_REFERENCE = {
    "fog": 40,
    "motion_blur": 120,
    "canny_edges": 120,
}  # pure-Python loops: fewer images
DETERMINISTIC = ("scale", "brightness", "stripe", "canny_edges")


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test.images[:FAITHFUL_SAMPLES], mnist_test.labels[:FAITHFUL_SAMPLES]


@pytest.fixture
def local_root(tmp_path, data_root):
    """A fresh data root holding (a link to) the real MNIST files and no cache."""
    os.symlink(data_root.path / "MNIST", tmp_path / "MNIST")
    return tmp_path


# ---- contract -------------------------------------------------------------------------------


def test_the_fifteen_corruptions_exclude_identity():
    assert len(CORRUPTIONS) == 15 and len(set(CORRUPTIONS)) == 15
    assert "identity" not in CORRUPTIONS and ALL_NAMES[0] == "identity"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_output_contract_and_determinism(name):
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    images[:, :, 5:20, 10:14] = 1.0  # a bar, so edges, blurs and shifts have something to act on
    before = images.clone()
    out = corrupt(images, name, seed=3)
    assert out.shape == (6, 1, 28, 28) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(torch.round(out * 255) / 255, out), "values are not on the 8-bit grid"
    assert torch.equal(images, before), "the input was modified"
    assert torch.equal(out, corrupt(images, name, seed=3))


@pytest.mark.parametrize(
    "name",
    [
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "fog",
        "spatter",
        "dotted_line",
        "zigzag",
    ],
)
def test_seed_changes_random_corruptions(name):
    images = torch.zeros(8, 1, 28, 28)
    images[:, :, 8:20, 8:20] = 0.8
    assert not torch.equal(corrupt(images, name, seed=0), corrupt(images, name, seed=1))


def test_identity_is_the_quantised_input():
    images = torch.tensor([0.0, 0.5, 1 / 255 * 0.4, 1.0]).repeat(196).view(1, 1, 28, 28)
    assert torch.equal(corrupt(images, "identity"), torch.round(images * 255) / 255)


def test_severity_levels_order_the_damage():
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 6:22, 12:16] = 1.0
    changes = [
        float((corrupt(images, "impulse_noise", severity=s) - images).abs().mean())
        for s in range(1, 6)
    ]
    assert changes == sorted(changes) and changes[0] < changes[-1] / 3


# ---- bad input --------------------------------------------------------------------------------


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(
        ConfigError, match="did you mean 'zigzag'.*valid names: identity, shot_noise"
    ):
        corrupt(torch.zeros(1, 1, 28, 28), "zigzg")


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(2, 28, 28), r"shape \(N, 1, 28, 28\)"),
        (torch.zeros(2, 3, 28, 28), r"shape \(N, 1, 28, 28\)"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "float tensor"),
        (torch.full((2, 1, 28, 28), 255.0), r"\[0, 1\]"),
        (torch.full((2, 1, 28, 28), -0.5), r"\[0, 1\]"),
        (torch.full((2, 1, 28, 28), float("nan")), r"\[0, 1\]"),
        (np.zeros((2, 1, 28, 28), np.float32), "torch tensor"),
    ],
)
def test_bad_images_are_config_errors(images, message):
    with pytest.raises(ConfigError, match=message):
        corrupt(images, "fog")


@pytest.mark.parametrize(
    "name, severity", [("fog", 0), ("fog", 6), ("fog", 2.0), ("stripe", 2), ("shear", True)]
)
def test_bad_severity_is_a_config_error(name, severity):
    with pytest.raises(ConfigError, match=f"severity .* out of range for {name}"):
        corrupt(torch.zeros(1, 1, 28, 28), name, severity=severity)


def test_bad_seed_is_a_config_error():
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        corrupt(torch.zeros(1, 1, 28, 28), "fog", seed=-1)


# ---- faithfulness to the reference recipe ---------------------------------------------------


def _statistics(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float64) / 255
    return np.array([x.mean(), x.std(), (x > 0).mean()])


def _accuracy(model, images_uint8: np.ndarray, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        logits = model(torch.from_numpy(images_uint8.astype(np.float32) / 255).unsqueeze(1))
    return float((logits.argmax(dim=1) == labels).float().mean())


@pytest.mark.real_data
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_agrees_with_the_reference_recipe(name, digits, lenet):
    images, labels = digits
    count = SLOW_REFERENCE.get(name, FAITHFUL_SAMPLES)
    images, labels = images[:count], labels[:count]
    ours = torch.round(corrupt(images, name, seed=0)[:, 0] * 255).to(torch.uint8).numpy()
    theirs = reference_corrupt(torch.round(images[:, 0] * 255).to(torch.uint8).numpy(), name)
    difference = np.abs(_statistics(ours) - _statistics(theirs))
    # mean, std and the fraction of lit pixels agree to 0.02, 0.02 and 0.03
    assert (difference <= [0.02, 0.02, 0.03]).all(), f"{name}: statistics differ by {difference}"
    gap = abs(_accuracy(lenet, ours, labels) - _accuracy(lenet, theirs, labels))
    assert gap <= 0.07, (
        f"{name}: LeNet accuracy differs by {gap:.3f} between ours and the reference"
    )
    if name in DETERMINISTIC:
        same = (np.abs(ours.astype(int) - theirs.astype(int)) <= 1).mean()
        assert same >= 0.999, (
            f"{name} is deterministic, yet only {same:.4f} of pixels match the reference"
        )


# ---- the cached dataset ---------------------------------------------------------------------


@pytest.mark.real_data
def test_generated_set_is_cached_and_reused(local_root, monkeypatch):
    path = cache_path("stripe", seed=4, root=local_root)
    assert (
        path
        == local_root
        / "safetycheck-cache"
        / "mnist_c"
        / f"v{IMPLEMENTATION_VERSION}"
        / "stripe-seed4.npy"
    )
    first = generate_corrupted("stripe", seed=4, root=local_root)
    assert path.is_file() and first.shape == (10000, 28, 28) and first.dtype == np.uint8
    import safetycheck.measures.corruptions as engine

    monkeypatch.setattr(engine, "corrupt", lambda *a, **k: pytest.fail("regenerated a cached set"))
    assert np.array_equal(generate_corrupted("stripe", seed=4, root=local_root), first)
    assert not list(path.parent.glob("*.tmp")), "a temporary file was left behind"


@pytest.mark.real_data
def test_damaged_or_foreign_cache_is_regenerated(local_root):
    path = cache_path("brightness", seed=0, root=local_root)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x93NUMPY truncated")
    array = generate_corrupted("brightness", seed=0, root=local_root)
    assert np.array_equal(np.load(path), array) and array.min() >= 127
    np.save(path, np.zeros((10, 28, 28), np.uint8))  # right format, wrong shape
    assert generate_corrupted("brightness", seed=0, root=local_root).shape == (10000, 28, 28)
    other_version = path.parent.parent / "v0" / path.name
    other_version.parent.mkdir()
    np.save(other_version, np.zeros((10000, 28, 28), np.uint8))
    assert path.parent.name != "v0" and generate_corrupted("brightness", 0, local_root).min() >= 127


@pytest.mark.real_data
def test_concurrent_generation_is_safe(local_root):
    results, errors = [], []

    def work():
        try:
            results.append(generate_corrupted("dotted_line", seed=2, root=local_root))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 3
    assert all(np.array_equal(results[0], r) for r in results)
    assert np.array_equal(np.load(cache_path("dotted_line", 2, local_root)), results[0])


@pytest.mark.real_data
def test_load_corrupted_generated(local_root, mnist_test):
    data = load_corrupted("stripe", root=local_root, seed=0)
    assert data.images.shape == (10000, 1, 28, 28) and data.images.dtype == torch.float32
    assert torch.equal(data.labels, mnist_test.labels)
    assert torch.equal(data.images[:5], corrupt(mnist_test.images[:5], "stripe"))


def _official(root, name="fog", images=None, labels=None):
    folder = root / "mnist_c" / name
    folder.mkdir(parents=True, exist_ok=True)
    np.save(
        folder / "test_images.npy",
        np.zeros((10000, 28, 28, 1), np.uint8) if images is None else images,
    )
    np.save(folder / "test_labels.npy", np.arange(10000) % 10 if labels is None else labels)
    return folder


def test_official_loader_reads_the_static_layout(tmp_path):
    images = np.full((10000, 28, 28, 1), 51, np.uint8)
    _official(tmp_path, images=images)
    data = load_corrupted("fog", source="official", root=tmp_path)
    assert data.images.shape == (10000, 1, 28, 28) and torch.allclose(
        data.images, torch.full((1,), 0.2)
    )
    assert data.labels.dtype == torch.int64 and data.labels[:3].tolist() == [0, 1, 2]


def test_official_loader_names_the_missing_file(tmp_path):
    with pytest.raises(
        DataError, match=r"mnist_c/shear/test_images\.npy not found.*source='generated'"
    ):
        load_official("shear", root=tmp_path)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (
            np.zeros((100, 28, 28, 1), np.uint8),
            None,
            r"test_images\.npy holds uint8 of shape \(100, 28, 28, 1\)",
        ),
        (np.zeros((10000, 28, 28, 1), np.float32), None, r"test_images\.npy holds float32"),
        (None, np.full(10000, 12), r"test_labels\.npy holds labels outside 0\.\.9"),
        (None, np.zeros(5, np.int64), r"test_labels\.npy holds int64 of shape \(5,\)"),
    ],
)
def test_official_loader_rejects_malformed_files(tmp_path, images, labels, message):
    _official(tmp_path, "rotate", images, labels)
    with pytest.raises(DataError, match=message):
        load_official("rotate", root=tmp_path)


def test_official_loader_rejects_a_corrupt_file(tmp_path):
    folder = _official(tmp_path, "zigzag")
    (folder / "test_images.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"test_images\.npy is not a readable \.npy file"):
        load_official("zigzag", root=tmp_path)


def test_unknown_source_is_a_config_error(tmp_path):
    with pytest.raises(
        ConfigError, match="unknown MNIST-C source 'oficial'; did you mean 'official'"
    ):
        load_corrupted("fog", source="oficial", root=tmp_path)


# ---- gallery ----------------------------------------------------------------------------------


def test_gallery_has_one_png_per_corruption():
    from PIL import Image

    images = torch.zeros(4, 1, 28, 28)
    images[:, :, 6:22, 12:16] = 1.0
    pictures = gallery(images, seed=0)
    assert list(pictures) == list(ALL_NAMES)
    decoded = {name: np.array(Image.open(io.BytesIO(png))) for name, png in pictures.items()}
    assert all(
        picture.shape == (112, 112) and picture.dtype == np.uint8 for picture in decoded.values()
    )
    assert not np.array_equal(decoded["stripe"], decoded["identity"])
    assert decoded["brightness"].min() >= 127  # +0.5 brightness: no pixel stays dark


# ---- check families ---------------------------------------------------------------------------


def test_families_are_registered():
    import safetycheck.checks.corruptions  # noqa: F401
    from safetycheck.checks import check_id, families
    from safetycheck.checks.evaluation import RunSettings

    variants = families()["mnist_c"].variants(RunSettings())
    assert [v["corruption"] for v in variants] == list(CORRUPTIONS)
    assert check_id("mnist_c", variants[0]) == "mnist_c[shot_noise]"
    assert families()["mnist_c_mean"].bound == "min" and families()["mnist_c_drop"].bound == "max"


@pytest.mark.real_data
def test_families_measure_a_model(local_root, tiny_model, monkeypatch):
    from safetycheck.checks import corruptions as family
    from safetycheck.checks import families
    from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
    from safetycheck.io.data import resolve_data_root
    from safetycheck.io.models import ModelUnderTest

    evaluation = ModelEvaluation(
        ModelUnderTest("tiny", tiny_model, "test"),
        RunSettings(data_root=resolve_data_root(local_root)),
    )
    one = families()["mnist_c"].measure(evaluation, {"corruption": "stripe"})
    data = load_corrupted("stripe", root=local_root)
    with torch.inference_mode():
        expected = float((tiny_model(data.images).argmax(1) == data.labels).float().mean())
    assert one.value == pytest.approx(expected) and one.n == 10000 and "stripe" in one.details
    # the mean and the drop read one cached result per corruption: fake the other 14
    fake = {name: torch.arange(10000) < 1000 * (i % 10) for i, name in enumerate(CORRUPTIONS)}
    monkeypatch.setattr(family, "corrupted_correct", lambda ev, name: fake[name])
    mean = families()["mnist_c_mean"].measure(evaluation, {})
    assert mean.value == pytest.approx(np.mean([float(v.float().mean()) for v in fake.values()]))
    assert mean.n == 150000
    drop = families()["mnist_c_drop"].measure(evaluation, {})
    assert drop.value == pytest.approx(float(evaluation.clean_correct.float().mean()) - mean.value)
