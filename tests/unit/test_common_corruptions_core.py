"""What every common corruption stands on: the per-sample random numbers, the reference's filters
re-derived in torch, the input checks of ``corrupt``, the catalogue, and the corrupted-set cache and
published-set loaders."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safetycheck import corrupt
from safetycheck.core.errors import ConfigError, DataError
from safetycheck.io.data import DataRoot, cache_dir
from safetycheck.measures.common_corruptions import (
    BENCHMARK,
    HELD_OUT,
    NAMES,
    PARAMS,
    SEVERITIES,
    registry,
)
from safetycheck.measures.common_corruptions import _filters as filters
from safetycheck.measures.common_corruptions._random import (
    MASK64,
    SampleRandom,
    mix64,
    mix64_python,
    sample_keys,
)
from safetycheck.measures.common_corruptions.dataset import (
    IMPLEMENTATION_VERSION,
    cache_path,
    content_digest,
    generate,
    has_published,
    load_cifar_c,
    load_generated,
    load_imagenet_c,
    load_published,
    published_layout,
)

scipy_ndimage = pytest.importorskip("scipy.ndimage")


# Random numbers -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MASK64))
def test_the_torch_hash_is_splitmix64s_finaliser(value):
    signed = value - (1 << 64) if value >= 1 << 63 else value
    hashed = int(mix64(torch.tensor([signed], dtype=torch.int64))[0]) & MASK64
    assert hashed == mix64_python(value)


def test_an_images_draws_do_not_depend_on_the_other_images_of_the_batch():
    keys = sample_keys(3, "shot_noise", 2, torch.arange(100, 140), "cpu")
    whole = SampleRandom(keys)
    part = SampleRandom(keys[7:19])
    for draw in (
        lambda r: r.uniform((5, 4), 0),
        lambda r: r.normal((9,), 2),
        lambda r: r.integers(-3, 3, (6,), 4),
        lambda r: r.poisson(torch.full((len(r), 30), 12.5), 10),
    ):
        assert torch.equal(draw(whole)[7:19], draw(part))


def test_keys_separate_seeds_corruptions_severities_and_images():
    indices = torch.arange(50)
    base = sample_keys(0, "fog", 1, indices, "cpu")
    for other in (
        sample_keys(1, "fog", 1, indices, "cpu"),
        sample_keys(0, "snow", 1, indices, "cpu"),
        sample_keys(0, "fog", 2, indices, "cpu"),
    ):
        assert not torch.equal(base, other)
    assert len(set(base.tolist())) == 50
    random = SampleRandom(base)
    assert not torch.equal(random.uniform((8,), 0), random.uniform((8,), 1))


def test_uniform_lies_in_the_open_interval_and_integers_in_range():
    random = SampleRandom(sample_keys(0, "x", 1, torch.arange(20), "cpu"))
    u = random.uniform((5000,), 0)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01
    values = random.integers(-2, 2, (5000,), 1)
    assert set(values.unique().tolist()) == {-2, -1, 0, 1}


@pytest.mark.parametrize("lam", [0.3, 2.0, 9.5, 10.0, 25.0, 60.0, 500.0])
def test_poisson_has_the_mean_and_variance_of_its_rate(lam):
    random = SampleRandom(sample_keys(0, "shot_noise", 1, torch.arange(400), "cpu"))
    counts = random.poisson(torch.full((400, 100), lam), 5)
    assert torch.equal(counts, counts.round()) and float(counts.min()) >= 0
    n = counts.numel()
    # 6 standard errors of the mean and of the variance (a Poisson's fourth cumulant is lam)
    assert abs(float(counts.mean()) - lam) < 6 * math.sqrt(lam / n)
    assert abs(float(counts.var()) - lam) < 6 * math.sqrt((2 * lam**2 + lam) / n)


def test_normal_has_unit_moments():
    random = SampleRandom(sample_keys(0, "gaussian_noise", 1, torch.arange(200), "cpu"))
    z = random.normal((500,), 0)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01


def test_normal_draws_are_standard_normal_and_the_two_halves_independent():
    """Box-Muller gives a cosine and a sine normal per pair of uniforms: each half of the draws is
    N(0, 1) (Kolmogorov-Smirnov), and draw k of the first half is uncorrelated with draw k of the
    second, also in the squares (the pair shares its radius)."""
    from scipy import stats

    random = SampleRandom(sample_keys(3, "snow", 2, torch.arange(100), "cpu"))
    z = random.normal((2, 1001), 4).reshape(100, -1).to(torch.float64)
    first, second = z[:, :1001].flatten().numpy(), z[:, 1001:].flatten().numpy()
    for half in (first, second, z.flatten().numpy()):
        assert stats.kstest(half, "norm").pvalue > 1e-3
    n = first.size
    assert abs(np.corrcoef(first, second)[0, 1]) < 5 / math.sqrt(n)
    assert abs(np.corrcoef(first**2, second**2)[0, 1]) < 5 / math.sqrt(n)


# Filters against SciPy and OpenCV --------------------------------------------------------------


@pytest.fixture(scope="module")
def plane():
    return np.random.default_rng(0).random((37, 45))


@pytest.mark.parametrize("mode", filters.MODES)
def test_gaussian_filter_is_scipys(plane, mode):
    for sigma, truncate in (((1.3, 0.7), 3.0), (2.0, 4.0), (0.4, 4.0)):
        expected = scipy_ndimage.gaussian_filter(plane, sigma, mode=mode, truncate=truncate)
        ours = filters.gaussian_filter(torch.from_numpy(plane), sigma, mode, truncate).numpy()
        assert np.abs(ours - expected).max() < 1e-12


def test_filter2d_is_opencvs(plane):
    cv2 = pytest.importorskip("cv2")
    kernel = np.random.default_rng(1).random((7, 5)).astype(np.float32)
    image = plane.astype(np.float32)
    expected = cv2.filter2D(image, -1, kernel)
    assert np.abs(filters.filter2d(torch.from_numpy(image), kernel).numpy() - expected).max() < 1e-5


@pytest.mark.parametrize("zoom", [1.0, 1.03, 1.17, 1.3])
def test_clipped_zoom_is_the_references(plane, zoom):
    height, width = plane.shape
    crop = [math.ceil(size / zoom) for size in (height, width)]
    top = [(size - c) // 2 for size, c in zip((height, width), crop, strict=True)]
    piece = plane[top[0] : top[0] + crop[0], top[1] : top[1] + crop[1]]
    zoomed = scipy_ndimage.zoom(piece, zoom, order=1)
    ours = filters.clipped_zoom(torch.from_numpy(plane), zoom).numpy()
    assert np.abs(ours - zoomed[:height, :width]).max() < 1e-12
    square = plane[:32, :32]
    c = math.ceil(32 / zoom)
    t = (32 - c) // 2
    zoomed = scipy_ndimage.zoom(square[t : t + c, t : t + c], zoom, order=1)
    trim = (zoomed.shape[0] - 32) // 2
    ours = filters.clipped_zoom(torch.from_numpy(square.copy()), zoom, "cifar").numpy()
    assert np.abs(ours - zoomed[trim : trim + 32, trim : trim + 32]).max() < 1e-12


def test_shift_blur_is_imagecorruptions_motion_blur():
    from reference_corruptions import load_reference, photos

    load_reference()
    from imagecorruptions import corruptions as reference

    images = photos(48, 3).astype(np.float32)
    angles = torch.tensor([-44.0, 0.0, 37.5])
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).double()
    ours = filters.shift_blur(batch, 10, 3, angles).permute(0, 2, 3, 1).numpy()
    for k, angle in enumerate(angles.tolist()):
        expected = reference._motion_blur(images[k], radius=10, sigma=3, angle=angle)
        assert np.abs(ours[k] - expected).max() < 1e-3  # 8-bit units; float32 in the reference


# The catalogue and corrupt()'s contract -------------------------------------------------------


def test_the_catalogue_holds_the_19_in_the_benchmarks_order_with_5_levels_per_set():
    assert len(BENCHMARK) == 15 and len(HELD_OUT) == 4 and NAMES == BENCHMARK + HELD_OUT
    corruptions = registry()
    assert tuple(corruptions) == NAMES
    for name, corruption in corruptions.items():
        assert corruption.name == name
        assert corruption.kind in {"noise", "blur", "weather", "digital"}
        assert set(corruption.levels) == set(PARAMS)
        assert all(len(levels) == 5 for levels in corruption.levels.values())
    deterministic = {n for n, c in corruptions.items() if c.deterministic}
    assert deterministic >= {"brightness", "contrast", "saturate", "defocus_blur"}


GOOD = torch.rand(2, 3, 20, 24)


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        (GOOD.numpy(), {}, "must be a float torch tensor"),
        ((GOOD * 255).to(torch.uint8), {}, "divide 8-bit images by 255"),
        (GOOD[0], {}, r"rank 4.*images\[None\]"),
        (torch.rand(2, 2, 20, 20), {}, "1 \\(grayscale\\) or 3 \\(RGB\\) channels"),
        (
            torch.rand(2, 3, 15, 40),
            {},
            "at least 16x16 pixels for the common corruptions; got 15x40",
        ),
        (GOOD * 2, {}, r"must lie in \[0, 1\]; these span"),
        (GOOD - 0.5, {}, r"must lie in \[0, 1\]"),
        (torch.full((1, 3, 16, 16), float("nan")), {}, r"must lie in \[0, 1\]"),
        (GOOD, {"name": "gausian_noise"}, "did you mean 'gaussian_noise'"),
        (GOOD, {"severity": 0}, "severity must be an integer from 1 to 5"),
        (GOOD, {"severity": 6}, "severity must be an integer from 1 to 5"),
        (GOOD, {"severity": 2.0}, "severity must be an integer from 1 to 5"),
        (GOOD, {"severity": True}, "severity must be an integer from 1 to 5"),
        (GOOD, {"params": "cifar10"}, "did you mean 'cifar'"),
        (GOOD, {"seed": 1.5}, "seed must be an integer"),
        (GOOD, {"indices": torch.tensor([0, 1, 2])}, "indices must be 2 integers"),
        (GOOD, {"indices": torch.tensor([0.0, 1.0])}, "indices must be 2 integers"),
    ],
)
def test_bad_input_is_one_clear_error(images, kwargs, message):
    arguments = {"name": "contrast", "severity": 3, **kwargs}
    with pytest.raises(ConfigError, match=message):
        corrupt(images, arguments.pop("name"), arguments.pop("severity"), **arguments)


def test_an_empty_batch_comes_back_empty():
    empty = torch.zeros(0, 3, 16, 16)
    assert corrupt(empty, "fog", 1).shape == (0, 3, 16, 16)


@pytest.mark.parametrize("name", NAMES)
def test_every_corruption_keeps_the_contract_and_changes_the_image(name):
    if registry()[name].unavailable():
        pytest.skip(registry()[name].unavailable())
    images = torch.rand(3, 3, 24, 32, dtype=torch.float64) * 0.8 + 0.1
    for severity in (1, 5):
        out = corrupt(images, name, severity, seed=1)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        assert not torch.equal(out, images)
    gray = corrupt(images[:, :1], name, 3, seed=1, params="cifar")
    assert gray.shape == (3, 1, 24, 32)
    assert torch.equal(corrupt(images, name, 2, seed=4), corrupt(images, name, 2, seed=4))


# Corrupted sets: the cache and the published formats ---------------------------------------------


def test_cache_paths_name_everything_that_shapes_the_images(tmp_path):
    root = DataRoot(tmp_path, "test")
    path = cache_path(root, "cifar10", "fog", 3, 0, "cifar")
    relative = path.relative_to(cache_dir(root)).parts
    version = f"v{IMPLEMENTATION_VERSION}"
    assert relative == ("common_corruptions", "cifar10", version, "cifar", "fog-s3-seed0.npy")
    others = {
        cache_path(root, "svhn", "fog", 3, 0, "cifar"),
        cache_path(root, "cifar10", "fog", 4, 0, "cifar"),
        cache_path(root, "cifar10", "fog", 3, 1, "cifar"),
        cache_path(root, "cifar10", "fog", 3, 0, "imagenet"),
        cache_path(root, "cifar10", "fog", 3, 0, "cifar", torch.tensor([1, 5])),
        cache_path(root, "cifar10", "fog", 3, 0, "cifar", torch.tensor([1, 6])),
    }
    assert path not in others and len(others) == 6
    content = content_digest(torch.zeros(2, 3, 16, 16))
    assert content != content_digest(torch.ones(2, 3, 16, 16))
    assert cache_path(root, "cifar10", "fog", 3, 0, "cifar", None, content) != path


def test_a_subset_is_the_whole_sets_images(tmp_path):
    images = torch.rand(12, 3, 16, 16)
    whole = generate(images, "gaussian_noise", 2, 0, "imagenet")
    subset = torch.tensor([3, 7, 8])
    part = generate(images[subset], "gaussian_noise", 2, 0, "imagenet", indices=subset)
    assert torch.equal(part, whole[subset])


def test_generated_sets_are_cached_and_a_corrupt_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFETYCHECK_CACHE", str(tmp_path / "cache"))
    root = DataRoot(tmp_path, "test")
    images, labels = torch.rand(6, 3, 16, 16), torch.arange(6)
    arguments = dict(
        root=root, dataset="mine", name="impulse_noise", severity=1, seed=0, params="imagenet"
    )
    first = load_generated(images, labels, **arguments)
    path = cache_path(root, "mine", "impulse_noise", 1, 0, "imagenet", None, content_digest(images))
    assert path.is_file() and first.source == "generated (seed 0, imagenet parameters)"
    assert torch.equal(load_generated(images, labels, **arguments).images, first.images)
    path.write_bytes(b"not an npy file")
    with pytest.warns(UserWarning, match="unreadable.*regenerating"):
        again = load_generated(images, labels, **arguments)
    assert torch.equal(again.images, first.images)
    np.save(path, np.zeros((2, 3, 16, 16), np.uint8))
    with pytest.warns(UserWarning, match="regenerating"):
        load_generated(images, labels, **arguments)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_generated(images, labels, **arguments)  # the rewritten file is read back silently


def write_cifar_c(folder, names, count=4, size=32):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(count) % 10, 5).astype(np.uint8)
    np.save(folder / "labels.npy", labels)
    for name in names:
        np.save(folder / f"{name}.npy", rng.integers(0, 256, (5 * count, size, size, 3), np.uint8))
    return labels


def test_cifar_c_files_are_read_one_severity_at_a_time(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    write_cifar_c(folder, ["fog", "snow"], count=4)
    assert published_layout(folder) == "cifar_c"
    assert has_published(folder, "fog") and not has_published(folder, "frost")
    raw = np.load(folder / "fog.npy")
    third = load_cifar_c(folder, "fog", 3)
    assert third.images.shape == (4, 3, 32, 32) and third.images.dtype == torch.uint8
    expected = torch.from_numpy(raw[8:12]).permute(0, 3, 1, 2)
    assert torch.equal(third.images, expected)
    assert third.labels.tolist() == [0, 1, 2, 3] and third.source.startswith("published: ")
    assert torch.equal(load_published(folder, "fog", 3).images, third.images)


def test_bad_cifar_c_files_say_what_is_expected(tmp_path):
    folder = tmp_path / "c"
    write_cifar_c(folder, ["fog"], count=4)
    with pytest.raises(DataError, match="snow.npy not found"):
        load_cifar_c(folder, "snow", 1)
    np.save(folder / "fog.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 \(5 x N, H, W, 3\)"):
        load_cifar_c(folder, "fog", 1)
    np.save(folder / "fog.npy", np.zeros((20, 32, 32, 3), np.uint8))
    np.save(folder / "labels.npy", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="expected 20 integer labels"):
        load_cifar_c(folder, "fog", 1)
    with pytest.raises(DataError, match="neither a CIFAR-10-C style folder"):
        load_published(tmp_path / "missing", "fog", 1)


def test_imagenet_c_folders_are_read_as_image_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for severity in SEVERITIES:
        for label in ("cat", "dog"):
            where = tmp_path / "ImageNet-C" / "fog" / str(severity) / label
            where.mkdir(parents=True)
            for k in range(2):
                pixels = rng.integers(0, 256, (20, 24, 3), np.uint8)
                Image.fromarray(pixels).save(where / f"{k}.png")
    folder = tmp_path / "ImageNet-C"
    assert published_layout(folder) == "imagenet_c" and has_published(folder, "fog")
    loaded = load_imagenet_c(folder, "fog", 4)
    assert loaded.images.shape == (4, 3, 20, 24) and loaded.images.dtype == torch.uint8
    assert sorted(loaded.labels.tolist()) == [0, 0, 1, 1]
    with pytest.raises(DataError, match="snow/2 not found"):
        load_imagenet_c(folder, "snow", 2)
