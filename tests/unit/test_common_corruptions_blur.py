"""The blur corruptions (defocus, glass, motion, zoom, Gaussian) against their references.

``params="imagenet"`` is compared with imagecorruptions 1.1.2 itself; ``params="cifar"`` with a
numpy transcription of the formulas of Hendrycks' ``make_cifar_c.py`` written below
(:func:`cifar_oracle`; the original needs CIFAR-10 and ImageMagick, whose motion blur is replaced
by the shift-and-add that imagecorruptions' ``_motion_blur`` re-implements it with).

* Deterministic blurs (defocus, zoom, Gaussian): PSNR of the 8-bit results >= 35 dB.
* Random blurs (glass, motion): on real photographs, each image's mean |change| (8-bit units),
  then the mean and standard deviation of that over the images, within 10 % of the reference's
  (``abs_change_stats``); and, feeding the reference our own random draws, the same images
  (PSNR >= 35 dB): the reference's code run with numpy's draw functions replaced by ours.
* The vectorised glass-blur shuffle equals the references' sequential loop exactly.

The reference's glass blur is a Python loop over pixels (about 55 ms per 64x64 image and severity
here): its distribution is compared on 40 images instead of 200; the replay on the same draws and
the exact test of the shuffle are the finer checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference_corruptions import (
    abs_change_stats,
    load_reference,
    photos,
    psnr,
    reference_corrupt,
    to_tensor,
    to_uint8,
)

from safetycheck.measures.common_corruptions import corrupt
from safetycheck.measures.common_corruptions._random import SampleRandom, sample_keys
from safetycheck.measures.common_corruptions.blur import (
    CORRUPTIONS,
    disk_kernel,
    glass_offsets,
    glass_positions,
    glass_shuffle,
)

DETERMINISTIC = ("defocus_blur", "zoom_blur", "gaussian_blur")
RANDOM = ("glass_blur", "motion_blur")
NAMES = DETERMINISTIC + RANDOM
SEVERITIES = (1, 2, 3, 4, 5)
MIN_PSNR = 35.0  # dB
TOLERANCE = 0.10  # relative, on the mean and on the standard deviation over images
GLASS_REFERENCE_IMAGES = 40  # the reference's pixel loop is slow (see the module docstring)


def psnr_failures(ours_fn, reference_fn, label: str) -> list[str]:
    """The severities whose PSNR (ours vs reference, 8-bit) is below MIN_PSNR."""
    failures = []
    for severity in SEVERITIES:
        value = psnr(ours_fn(severity), reference_fn(severity))
        if value < MIN_PSNR:
            failures.append(f"{label} severity {severity}: PSNR {value:.1f} dB")
    return failures


def stats_failures(ours_fn, reference_fn, clean: np.ndarray, label: str) -> list[str]:
    """The severities whose (mean, std) of the per-image mean |change| differ by more than
    TOLERANCE from the reference's."""
    failures = []
    for severity in SEVERITIES:
        ours = abs_change_stats(ours_fn(severity), clean)
        reference = abs_change_stats(reference_fn(severity), clean)
        for what, got, want in zip(("mean", "std"), ours, reference, strict=True):
            if abs(got - want) > TOLERANCE * want:
                failures.append(
                    f"{label} severity {severity} {what}: ours {got:.3f} reference {want:.3f}"
                )
    return failures


def ours(images: np.ndarray, name: str, severity: int, params: str = "imagenet") -> np.ndarray:
    return to_uint8(corrupt(to_tensor(images), name, severity, seed=0, params=params))


def our_random(name: str, severity: int, count: int) -> SampleRandom:
    """The draws :func:`corrupt` makes for images 0..count-1 with seed 0."""
    return SampleRandom(sample_keys(0, name, severity, torch.arange(count), "cpu"))


def our_glass_draws(severity: int, count: int, height: int, width: int, params: str):
    """blur.glass_blur's draws: each pass's (dx, dy), (N, rows, cols) in the loop's order."""
    _, delta, iterations = CORRUPTIONS[1].level(severity, params)
    random = our_random("glass_blur", severity, count)
    shape = glass_positions(height, width, delta)
    passes = [glass_offsets(random, delta, shape, step) for step in range(iterations)]
    return [(dx.numpy(), dy.numpy()) for dx, dy in passes]


def our_angles(severity: int, count: int) -> np.ndarray:
    """blur.motion_blur's angles (stream 0), degrees."""
    return our_random("motion_blur", severity, count).uniform((1,), 0, -45.0, 45.0)[:, 0].numpy()


# ---------------------------------------------------------------- fixtures (cached outputs)


@pytest.fixture(scope="module")
def photos64() -> np.ndarray:
    return photos(64, 200)


@pytest.fixture(scope="module")
def photos32() -> np.ndarray:
    return photos(32, 200)


@pytest.fixture(scope="module")
def photos224() -> np.ndarray:
    return photos(224, 4)


# ---------------------------------------------------------------- imagenet: imagecorruptions


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_imagenet_deterministic_match_imagecorruptions(name, photos64, photos224):
    failures = []
    for label, clean in (
        ("64x64", photos64[:8]),
        ("224x224", photos224),
        ("40x56", photos64[:4, 5:45, 3:59]),
    ):
        failures += psnr_failures(
            lambda severity, clean=clean: ours(clean, name, severity),
            lambda severity, clean=clean: reference_corrupt(clean, name, severity),
            f"{name} {label}",
        )
    assert not failures, "; ".join(failures)


@pytest.mark.parametrize("name", RANDOM)
def test_imagenet_distribution_matches_imagecorruptions(name, photos64):
    clean = photos64[:GLASS_REFERENCE_IMAGES] if name == "glass_blur" else photos64
    failures = stats_failures(
        lambda severity: ours(clean, name, severity),
        lambda severity: reference_corrupt(clean, name, severity, seed=0),
        clean,
        f"{name} 64x64",
    )
    assert not failures, "; ".join(failures)


def replay_reference(
    images: np.ndarray, name: str, severity: int, monkeypatch: pytest.MonkeyPatch
) -> np.ndarray:
    """imagecorruptions' own corruption, one image at a time, with numpy's draw functions
    replaced by a feed of our draws in the reference's order (glass: per pass, per row from the
    bottom, per column from the right, ``dx, dy = randint(...)``; motion: one uniform angle)."""
    reference = load_reference()
    count, height, width = images.shape[:3]
    if name == "glass_blur":
        passes = our_glass_draws(severity, count, height, width, "imagenet")
        feeds = [
            iter(
                [
                    np.array([dx[n, i, j], dy[n, i, j]])
                    for dx, dy in passes
                    for i, j in np.ndindex(dx.shape[1:])
                ]
            )
            for n in range(count)
        ]
        function = "randint"
    else:
        feeds = [iter([angle]) for angle in our_angles(severity, count)]
        function = "uniform"
    out = []
    for n, image in enumerate(images):
        monkeypatch.setattr(np.random, function, lambda *args, feed=feeds[n], **kwargs: next(feed))
        out.append(reference.corrupt(image, severity=severity, corruption_name=name))
        assert next(feeds[n], None) is None, "the reference drew fewer numbers than we did"
    monkeypatch.undo()
    return np.stack(out)


@pytest.mark.parametrize("name", RANDOM)
def test_imagenet_random_equal_imagecorruptions_on_our_draws(name, photos64, monkeypatch):
    failures = []
    for label, clean in (("64x64", photos64[:3]), ("40x56", photos64[3:5, 5:45, 3:59])):
        failures += psnr_failures(
            lambda severity, clean=clean: ours(clean, name, severity),
            lambda severity, clean=clean: replay_reference(clean, name, severity, monkeypatch),
            f"{name} {label}",
        )
    assert not failures, "; ".join(failures)


def test_disk_kernel_equals_imagecorruptions_disk():
    disk = load_reference().corruptions.disk
    levels = CORRUPTIONS[0].levels["imagenet"] + CORRUPTIONS[0].levels["cifar"]
    for radius, alias_blur in levels:
        want = disk(radius=radius, alias_blur=alias_blur)
        got = disk_kernel(float(radius), float(alias_blur))
        margin = (want.shape[0] - got.shape[0]) // 2
        np.testing.assert_allclose(np.pad(got, margin), want, rtol=0, atol=1e-7)


# ---------------------------------------------------------------- cifar: make_cifar_c.py

# make_cifar_c.py's levels, written out again so that a wrong level in the module fails.
CIFAR_LEVELS = {
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": (
        np.arange(1, 1.06, 0.01),
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.01),
        np.arange(1, 1.26, 0.01),
    ),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
}


def _oracle_disk(radius: float, alias_blur: float) -> np.ndarray:
    import cv2

    grid = np.arange(-8, 8 + 1) if radius <= 8 else np.arange(-radius, radius + 1)
    xs, ys = np.meshgrid(grid, grid)
    aliased = ((xs**2 + ys**2) <= radius**2).astype(np.float32)
    aliased /= aliased.sum()
    ksize = 3 if radius <= 8 else 5
    return cv2.GaussianBlur(aliased, ksize=(ksize, ksize), sigmaX=alias_blur)


def _oracle_clipped_zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """make_cifar_c.py's clipped_zoom: the centred crop of 1/factor, SciPy's linear zoom, the
    centred H x H kept."""
    from scipy.ndimage import zoom

    side = image.shape[0]
    crop = int(np.ceil(side / factor))
    top = (side - crop) // 2
    zoomed = zoom(image[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
    trim = (zoomed.shape[0] - side) // 2
    return zoomed[trim : trim + side, trim : trim + side]


def _oracle_motion(image: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage as imagecorruptions' _motion_blur computes it: 2 radius + 1
    taps of a half Gaussian, tap i reading the image ceil(i sin - 0.5) rows and ceil(i cos - 0.5)
    columns along, edges repeated; a tap past the image ends the sum."""
    height, width = image.shape[:2]
    taps = 2 * radius + 1
    weights = np.exp(-(np.arange(taps) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    sin, cos = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    out = np.zeros(image.shape)
    for i in range(taps):
        dy, dx = math.ceil(i * sin - 0.5), math.ceil(i * cos - 0.5)
        if abs(dy) >= height or abs(dx) >= width:
            break
        rows = np.clip(np.arange(height) + dy, 0, height - 1)
        cols = np.clip(np.arange(width) + dx, 0, width - 1)
        out += weights[i] * image[rows][:, cols]
    return out


def _oracle_glass(images: np.ndarray, level, passes) -> np.ndarray:
    """make_cifar_c.py's glass blur on all images at once (its 32 read as H and W): Gaussian
    blur, np.uint8, the pixel loop, Gaussian blur. ``passes`` gives each pass's (dx, dy), (N,
    rows, cols) in the loop's order."""
    from skimage.filters import gaussian

    sigma, delta, _ = level
    x = np.stack(
        [np.uint8(gaussian(im / 255.0, sigma=sigma, channel_axis=-1) * 255) for im in images]
    )
    count, height, width = x.shape[:3]
    n = np.arange(count)
    for dx, dy in passes:
        for i, h in enumerate(range(height - delta, delta, -1)):
            for j, w in enumerate(range(width - delta, delta, -1)):
                # the reference's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on one (H, W, 3)
                # image assigns views: (h, w) takes (h', w')'s pixel, which keeps its own
                # (test_reference_swap_is_a_copy); batched fancy indexing would really swap.
                x[:, h, w] = x[n, h + dy[:, i, j], w + dx[:, i, j]]
    return np.stack(
        [np.clip(gaussian(im / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255 for im in x]
    )


def cifar_oracle(images: np.ndarray, name: str, severity: int, draws=None, seed: int = 0):
    """make_cifar_c.py's formulas: uint8 (N, H, W, 3) in and out. ``draws`` replaces the random
    numbers (glass: the passes' (dx, dy); motion: the angles); by default they come from numpy."""
    import cv2
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    level = CIFAR_LEVELS[name][severity - 1]
    count, height, width = images.shape[:3]
    if name == "glass_blur":
        if draws is None:
            shape = (count, height - 2 * level[1], width - 2 * level[1])
            draws = [
                (rng.integers(-level[1], level[1], shape), rng.integers(-level[1], level[1], shape))
                for _ in range(level[2])
            ]
        return np.uint8(_oracle_glass(images, level, draws))
    if name == "motion_blur" and draws is None:
        draws = rng.uniform(-45, 45, size=count)
    out = []
    for n, image in enumerate(images):
        if name == "motion_blur":
            y = np.clip(_oracle_motion(image, level[0], level[1], draws[n]), 0, 255)
        elif name == "defocus_blur":
            x = image / 255.0
            kernel = _oracle_disk(*level)
            y = np.stack([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)], axis=-1)
            y = np.clip(y, 0, 1) * 255
        elif name == "zoom_blur":
            x = (image / 255.0).astype(np.float32)
            layers = np.zeros_like(x)
            for factor in level:
                layers += _oracle_clipped_zoom(x, factor)
            y = np.clip((x + layers) / (len(level) + 1), 0, 1) * 255
        else:
            y = np.clip(gaussian(image / 255.0, sigma=level, channel_axis=-1), 0, 1) * 255
        out.append(np.uint8(y))
    return np.stack(out)


def test_cifar_levels_are_make_cifar_c():
    for corruption in CORRUPTIONS:
        for got, want in zip(
            corruption.levels["cifar"], CIFAR_LEVELS[corruption.name], strict=True
        ):
            assert np.array_equal(np.asarray(got), np.asarray(want)), corruption.name


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_cifar_deterministic_match_make_cifar_c(name, photos32):
    failures = psnr_failures(
        lambda severity: ours(photos32[:16], name, severity, "cifar"),
        lambda severity: cifar_oracle(photos32[:16], name, severity),
        f"{name} (cifar) 32x32",
    )
    assert not failures, "; ".join(failures)


@pytest.mark.parametrize("name", RANDOM)
def test_cifar_distribution_matches_make_cifar_c(name, photos32):
    failures = stats_failures(
        lambda severity: ours(photos32, name, severity, "cifar"),
        lambda severity: cifar_oracle(photos32, name, severity),
        photos32,
        f"{name} (cifar) 32x32",
    )
    assert not failures, "; ".join(failures)


@pytest.mark.parametrize("name", RANDOM)
def test_cifar_random_equal_make_cifar_c_on_our_draws(name, photos32):
    clean = photos32[:16]
    count, height, width = clean.shape[:3]

    def draws(severity):
        if name == "glass_blur":
            return our_glass_draws(severity, count, height, width, "cifar")
        return our_angles(severity, count)

    failures = psnr_failures(
        lambda severity: ours(clean, name, severity, "cifar"),
        lambda severity: cifar_oracle(clean, name, severity, draws(severity)),
        f"{name} (cifar) 32x32",
    )
    assert not failures, "; ".join(failures)


# ---------------------------------------------------------------- the glass-blur shuffle


def test_reference_swap_is_a_copy():
    # What the references' glass-blur statement does to an (H, W, 3) uint8 array.
    x = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    before = x.copy()
    h, w, h_prime, w_prime = 2, 2, 1, 3
    x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    assert np.array_equal(x[h, w], before[h_prime, w_prime])
    assert np.array_equal(x[h_prime, w_prime], before[h_prime, w_prime])


@pytest.mark.parametrize(
    "height, width, delta", [(16, 16, 1), (21, 18, 2), (24, 31, 4), (19, 23, 3)]
)
def test_glass_shuffle_equals_the_sequential_loop(height, width, delta):
    rng = np.random.default_rng(height * width + delta)
    images = rng.integers(0, 256, (4, height, width, 3)).astype(np.uint8)
    rows, cols = glass_positions(height, width, delta)
    dy = rng.integers(-delta, delta, (4, rows, cols))
    dx = rng.integers(-delta, delta, (4, rows, cols))
    want = images.copy()
    for n, image in enumerate(want):
        for i, h in enumerate(range(height - delta, delta, -1)):
            for j, w in enumerate(range(width - delta, delta, -1)):
                h_prime, w_prime = h + dy[n, i, j], w + dx[n, i, j]
                image[h, w], image[h_prime, w_prime] = image[h_prime, w_prime], image[h, w]
    got = glass_shuffle(
        torch.from_numpy(images).permute(0, 3, 1, 2),
        torch.from_numpy(dy),
        torch.from_numpy(dx),
        delta,
    )
    assert np.array_equal(got.permute(0, 2, 3, 1).numpy(), want)


@pytest.mark.parametrize("delta", (1, 2, 3, 4))
def test_glass_offsets_uniform_and_independent(delta):
    random = our_random("glass_blur", 1, 50)
    dx, dy = glass_offsets(random, delta, (40, 50), 0)
    span = 2 * delta
    assert int(dx.min()) == -delta and int(dx.max()) == delta - 1
    assert int(dy.min()) == -delta and int(dy.max()) == delta - 1
    # the span**2 (dx, dy) pairs equally likely: a chi-square test at the 1e-4 level
    pairs = ((dx + delta) * span + (dy + delta)).flatten()
    counts = torch.bincount(pairs, minlength=span**2).double()
    expected = pairs.numel() / span**2
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = span**2 - 1
    assert chi2 < dof + 8.0 * math.sqrt(2 * dof), chi2


# ---------------------------------------------------------------- invariants


@pytest.fixture(scope="module")
def small() -> torch.Tensor:
    return to_tensor(photos(32, 4, seed=1))


@pytest.mark.parametrize("params", ("imagenet", "cifar"))
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, params, small):
    out = corrupt(small, name, 5, seed=0, params=params)
    assert out.shape == small.shape and out.dtype == small.dtype
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, small)

    gray = small.mean(dim=1, keepdim=True)
    out = corrupt(gray, name, 3, params=params)
    assert out.shape == gray.shape and 0 <= out.min() and out.max() <= 1

    for height, width in ((40, 56), (16, 16), (56, 17)):
        x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height))
        out = corrupt(x, name, 4, params=params)
        assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1

    # each image's randomness comes from its index only: a sub-batch gives the same images
    full = corrupt(small, name, 3, seed=7, params=params)
    for k in range(len(small)):
        alone = corrupt(small[k : k + 1], name, 3, seed=7, params=params, indices=torch.tensor([k]))
        assert torch.equal(alone[0], full[k]), f"image {k} depends on its batch"
    assert torch.equal(corrupt(small, name, 3, seed=7, params=params), full)
    deterministic = name in DETERMINISTIC
    assert torch.equal(corrupt(small, name, 3, seed=8, params=params), full) == deterministic


def test_catalogue_entries():
    assert [c.name for c in CORRUPTIONS] == [
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "gaussian_blur",
    ]
    for corruption in CORRUPTIONS:
        assert corruption.kind == "blur"
        assert corruption.deterministic == (corruption.name in DETERMINISTIC)
        assert all(len(corruption.levels[params]) == 5 for params in ("imagenet", "cifar"))
