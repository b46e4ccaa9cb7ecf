"""The noise corruptions (Gaussian, shot, impulse, speckle) and the elastic transform against their
references.

``params="imagenet"`` is compared with imagecorruptions 1.1.2 itself (``reference_corrupt``);
``params="cifar"`` with a numpy transcription of the formulas of Hendrycks' ``make_cifar_c.py``
written below (:func:`cifar_oracle`; the original script needs CIFAR-10 and ImageMagick). The
corruptions are random, so the comparison is of distributions: on real photographs, each image's
mean absolute change (8-bit units), then the mean and the standard deviation of that over the
images must be within 10 % of the reference's (``abs_change_stats``). The elastic transform is also
checked exactly, on the same random draws, against the reference's SciPy / OpenCV pipeline, and
the Poisson sampler against SampleRandom's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_corruptions import (
    abs_change_stats,
    photos,
    reference_corrupt,
    to_tensor,
    to_uint8,
)
from scipy import stats

from safetycheck.measures.common_corruptions import corrupt
from safetycheck.measures.common_corruptions._random import SampleRandom, sample_keys
from safetycheck.measures.common_corruptions.noise import _poisson_by_table, poisson
from safetycheck.measures.common_corruptions.warp import bilinear, elastic_transform

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
NAMES = (*NOISE, "elastic_transform")
SEVERITIES = (1, 2, 3, 4, 5)
TOLERANCE = 0.10  # relative, on the mean and on the standard deviation over images


def compare(ours_fn, reference_fn, clean: np.ndarray, name: str) -> list[str]:
    """Each severity's (mean, std) of the per-image mean |change|, ours vs the reference's;
    the lines that differ by more than TOLERANCE (empty when all agree).

    Impulse noise changes every image by about amount * 127.5 whatever its content (a salted or
    peppered element moves by 1 - x or x), so its spread over images is the binomial noise of the
    flip count alone: two samples' standard deviations then differ by ~1 / sqrt(n - 1) relative
    (7 % for 200 images; the reference's impulses are not even seeded: scikit-image makes its own
    generator). Its standard deviation gets 4 of those as tolerance instead of 10 %."""
    failures = []
    for severity in SEVERITIES:
        ours = abs_change_stats(ours_fn(severity), clean)
        reference = abs_change_stats(reference_fn(severity), clean)
        for what, got, want in zip(("mean", "std"), ours, reference, strict=True):
            tolerance = TOLERANCE
            if what == "std" and name == "impulse_noise":
                tolerance = max(TOLERANCE, 4 / (len(clean) - 1) ** 0.5)
            if abs(got - want) > tolerance * want:
                failures.append(f"severity {severity} {what}: ours {got:.3f} reference {want:.3f}")
    return failures


@pytest.fixture(scope="module")
def photos64() -> np.ndarray:
    return photos(64, 200)


@pytest.fixture(scope="module")
def photos224() -> np.ndarray:
    return photos(224, 20)


@pytest.fixture(scope="module")
def photos32() -> np.ndarray:
    return photos(32, 1000)  # the first 200 are photos(32, 200)


# ---------------------------------------------------------------- imagenet: imagecorruptions


@pytest.mark.parametrize("name", NAMES)
def test_imagenet_distribution_matches_imagecorruptions(name, photos64):
    images = to_tensor(photos64)
    failures = compare(
        lambda severity: to_uint8(corrupt(images, name, severity, seed=0)),
        lambda severity: reference_corrupt(photos64, name, severity, seed=0),
        photos64,
        name,
    )
    assert not failures, f"{name} at 64x64: " + "; ".join(failures)


@pytest.mark.parametrize("name", ("gaussian_noise", "elastic_transform"))
def test_imagenet_distribution_at_224(name, photos224):
    # The elastic field's smoothing and reach scale with the image (1 % and 0.5 % of the side):
    # check at ImageNet's size too, not only at 64x64 where the kernel has radius 2.
    images = to_tensor(photos224)
    failures = compare(
        lambda severity: to_uint8(corrupt(images, name, severity, seed=0)),
        lambda severity: reference_corrupt(photos224, name, severity, seed=0),
        photos224,
        name,
    )
    assert not failures, f"{name} at 224x224: " + "; ".join(failures)


# ---------------------------------------------------------------- cifar: make_cifar_c.py

# make_cifar_c.py's levels, written out again here so that a wrong level in the module fails.
IMSIZE = 32
CIFAR_LEVELS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "elastic_transform": (
        (IMSIZE * 0, IMSIZE * 0, IMSIZE * 0.08),
        (IMSIZE * 0.05, IMSIZE * 0.2, IMSIZE * 0.07),
        (IMSIZE * 0.08, IMSIZE * 0.06, IMSIZE * 0.06),
        (IMSIZE * 0.1, IMSIZE * 0.04, IMSIZE * 0.05),
        (IMSIZE * 0.1, IMSIZE * 0.03, IMSIZE * 0.03),
    ),
}


def _oracle_elastic(image: np.ndarray, level, rng: np.random.Generator) -> np.ndarray:
    """make_cifar_c.py's elastic transform on one float32 (32, 32, 3) image in [0, 1]: a random
    affine map of three points (OpenCV), then a smoothed uniform displacement (scikit-image's
    Gaussian, SciPy's map_coordinates)."""
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    alpha, sigma, jitter = level
    height, width = image.shape[:2]
    centre = np.float32((height, width)) // 2
    side = min(height, width) // 3
    source = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    target = source + rng.uniform(-jitter, jitter, size=source.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(source, target)
    image = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)
    fields = [
        (
            gaussian(rng.uniform(-1, 1, size=(height, width)), sigma, mode="reflect", truncate=3)
            * alpha
        ).astype(np.float32)
        for _ in range(2)
    ]
    dx, dy = (field[..., None] for field in fields)
    cols, rows, chans = np.meshgrid(np.arange(width), np.arange(height), np.arange(3))
    coordinates = [(rows + dy).reshape(-1), (cols + dx).reshape(-1), chans.reshape(-1)]
    out = map_coordinates(image, coordinates, order=1, mode="reflect")
    return out.reshape(image.shape)


def cifar_oracle(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """make_cifar_c.py's formulas, one image at a time: uint8 (N, 32, 32, 3) in and out."""
    from skimage.util import random_noise

    rng = np.random.default_rng(seed)
    level = CIFAR_LEVELS[name][severity - 1]
    out = []
    for image in images:
        x = image / 255.0
        if name == "gaussian_noise":
            y = x + rng.normal(size=x.shape, scale=level)
        elif name == "shot_noise":
            y = rng.poisson(x * level) / level
        elif name == "impulse_noise":
            y = random_noise(x, mode="s&p", amount=level, rng=rng)
        elif name == "speckle_noise":
            y = x + x * rng.normal(size=x.shape, scale=level)
        else:
            y = _oracle_elastic(x.astype(np.float32), level, rng)
        out.append(np.uint8(np.clip(y, 0, 1) * 255))
    return np.stack(out)


@pytest.mark.parametrize("name", NAMES)
def test_cifar_distribution_matches_make_cifar_c(name, photos32):
    # The cifar elastic transform's change per image hangs mostly on its six affine draws, so its
    # spread over images moves by ~5 % from seed to seed at 200 images: it gets 1000.
    clean = photos32 if name == "elastic_transform" else photos32[:200]
    images = to_tensor(clean)
    failures = compare(
        lambda severity: to_uint8(corrupt(images, name, severity, seed=0, params="cifar")),
        lambda severity: cifar_oracle(clean, name, severity, seed=0),
        clean,
        name,
    )
    assert not failures, f"{name} (cifar) at 32x32: " + "; ".join(failures)


# ---------------------------------------------------------------- exact on the same draws


def _keys(count: int, severity: int) -> SampleRandom:
    return SampleRandom(sample_keys(0, "elastic_transform", severity, torch.arange(count), "cpu"))


@pytest.mark.parametrize(
    "variant, severity, height, width",
    [("imagenet", 3, 64, 64), ("imagenet", 5, 40, 56), ("cifar", 2, 32, 32), ("cifar", 4, 40, 56)],
)
def test_elastic_equals_reference_pipeline_on_the_same_draws(variant, severity, height, width):
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    from safetycheck.measures.common_corruptions.warp import CORRUPTIONS

    clean = photos(max(height, width), 3)[:, :height, :width]
    random = _keys(len(clean), severity)
    level = CORRUPTIONS[0].level(severity, variant)
    ours = elastic_transform(to_tensor(clean), level, random, variant).permute(0, 2, 3, 1).numpy()
    side = min(height, width) // 3
    for n, image in enumerate(clean.astype(np.float32) / 255):
        if variant == "imagenet":
            reach = 0.005 * height
            ux = random.uniform((height, width), 0, -reach, reach)[n].numpy()
            uy = random.uniform((height, width), 1, -reach, reach)[n].numpy()
            sigma, ax, ay = (0.01 * height, 0.01 * width), level, level
        else:
            alpha, fraction, jitter = level
            cx, cy = width // 2, height // 2
            source = np.float32(
                [[cx + side, cy + side], [cx + side, cy - side], [cx - side, cy - side]]
            )
            span = np.array([jitter * width, jitter * height])
            moves = (random.uniform((3, 2), 2, -1, 1)[n].numpy() * span).astype(np.float32)
            matrix = cv2.getAffineTransform(source, source + moves)
            image = cv2.warpAffine(
                image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101
            )
            ux = random.uniform((height, width), 0, -1, 1)[n].numpy()
            uy = random.uniform((height, width), 1, -1, 1)[n].numpy()
            sigma, ax, ay = (fraction * height, fraction * width), alpha * width, alpha * height
        dx = (gaussian(ux, sigma, mode="reflect", truncate=3) * ax).astype(np.float32)[..., None]
        dy = (gaussian(uy, sigma, mode="reflect", truncate=3) * ay).astype(np.float32)[..., None]
        cols, rows, chans = np.meshgrid(np.arange(width), np.arange(height), np.arange(3))
        coordinates = [(rows + dy).reshape(-1), (cols + dx).reshape(-1), chans.reshape(-1)]
        want = map_coordinates(image, coordinates, order=1, mode="reflect").reshape(image.shape)
        # float32 rounding only (OpenCV 5 computes the affine's coordinates in float32)
        np.testing.assert_allclose(ours[n], want, rtol=0, atol=5e-6)


def test_bilinear_borders_match_scipy_and_opencv_far_outside():
    import cv2
    from scipy.ndimage import map_coordinates

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 9, 13, generator=generator, dtype=torch.float64)
    rows = torch.rand(1, 30, 40, generator=generator, dtype=torch.float64) * 60 - 30
    cols = torch.rand(1, 30, 40, generator=generator, dtype=torch.float64) * 80 - 40
    reflect = bilinear(image, rows, cols, "reflect")[0].numpy()
    for c in range(3):
        want = map_coordinates(
            image[0, c].numpy(), [rows[0].numpy(), cols[0].numpy()], order=1, mode="reflect"
        )
        np.testing.assert_allclose(reflect[c], want, rtol=0, atol=1e-12)
    # BORDER_REFLECT_101: cv2.warpAffine, with maps reaching several periods beyond each edge.
    # OpenCV 5 interpolates 1-, 3- and 4-channel float images at the exact coordinates (2-channel
    # images, cv2.remap and OpenCV 4 first round them to 1/32 pixel).
    picture = image[0].permute(1, 2, 0).float().numpy()
    height, width = 30, 40
    grid_rows, grid_cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    for inverse in ([[1.7, 0.3, -12.0], [-0.4, 1.9, -8.0]], [[-2.1, 0.6, 40.0], [0.5, -2.5, 30.0]]):
        matrix = np.array(inverse)
        source_x = matrix[0, 0] * grid_cols + matrix[0, 1] * grid_rows + matrix[0, 2]
        source_y = matrix[1, 0] * grid_cols + matrix[1, 1] * grid_rows + matrix[1, 2]
        ours = bilinear(image.float(), source_y[None], source_x[None], "mirror")[0].numpy()
        want = cv2.warpAffine(
            picture,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        np.testing.assert_allclose(ours.transpose(1, 2, 0), want, rtol=0, atol=1e-5)


def test_poisson_equals_sample_random_poisson():
    random = SampleRandom(sample_keys(3, "shot_noise", 1, torch.arange(6), "cpu"))
    generator = torch.Generator().manual_seed(1)
    lam = torch.rand(6, 3, 16, 16, generator=generator, dtype=torch.float64) * 80
    lam[:, 0, :3] = 0.0  # zero means, and both methods in one batch
    lam[:, 1, :3] = 10.0  # the threshold between them
    assert torch.equal(poisson(random, lam, 100), random.poisson(lam, 100))


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
    assert not torch.equal(corrupt(small, name, 3, seed=8, params=params), full)


@pytest.mark.parametrize("params", ("imagenet", "cifar"))
def test_chunks_do_not_change_the_output(params, small, monkeypatch):
    from safetycheck.measures.common_corruptions import noise

    whole = {name: corrupt(small, name, 4, seed=3, params=params) for name in NAMES}
    monkeypatch.setattr(noise, "CHUNK_ELEMENTS", small[0].numel() * 3 // 2)  # 1 image a chunk
    for name in NAMES:
        assert torch.equal(corrupt(small, name, 4, seed=3, params=params), whole[name]), name


@pytest.mark.parametrize(
    "params, severity, rate, values",
    [
        ("imagenet", 1, 60, (0.05, 0.3, 0.6)),  # means 3 (inversion) to 36 (rejection)
        ("imagenet", 3, 12, (0.05, 0.3)),  # means below 10; larger v would clip at 1
        ("cifar", 1, 500, (0.05, 0.3, 0.6)),
        ("cifar", 5, 50, (0.05, 0.3, 0.6)),
    ],
)
def test_shot_noise_mean_and_variance(params, severity, rate, values):
    # Poisson(v c) / c has mean v and variance v / c; the values keep P(count > c) (clipped)
    # negligible.
    side = 128
    flat = torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, 3, side, side)
    out = corrupt(flat.contiguous(), "shot_noise", severity, seed=0, params=params)
    n = 3 * side * side
    for k, value in enumerate(flat[:, 0, 0, 0].double().tolist()):
        sample = out[k].double().flatten()
        lam = value * rate
        mean_se = (value / rate / n) ** 0.5
        var_se = ((lam + 2 * lam**2) / n) ** 0.5 / rate**2
        assert abs(sample.mean().item() - value) < 5 * mean_se, (value, sample.mean().item())
        assert abs(sample.var().item() - value / rate) < 5 * var_se, (value, sample.var().item())


@pytest.mark.parametrize("rate", [60.0, 3.0, 500.0])
def test_shot_noise_table_draws_the_exact_poisson_law(rate):
    # 8-bit images take the guide-table inversion: its counts follow Poisson(k / 255 * rate)
    # exactly, checked against scipy's pmf by a chi-square test per mean (cells of expected count
    # >= 5 pooled); a wrong table row, an off-by-one in the search or a bad guide cell fails.
    codes = torch.tensor([0, 1, 37, 128, 200, 255], dtype=torch.float64)
    random = SampleRandom(sample_keys(0, "shot_noise", 1, torch.arange(len(codes)), "cpu"))
    grid = codes.reshape(-1, 1).expand(-1, 40_000).contiguous()
    counts = _poisson_by_table(random, grid, rate, 100)
    assert counts.dtype == grid.dtype and torch.equal(counts, counts.round())
    for row, code in enumerate(codes.tolist()):
        lam = code / 255 * rate
        sample = counts[row].to(torch.int64).numpy()
        if lam == 0:
            assert (sample == 0).all()
            continue
        top = int(sample.max()) + 1
        expected = stats.poisson.pmf(np.arange(top), lam) * sample.size
        expected[-1] += stats.poisson.sf(top - 1, lam) * sample.size
        observed = np.bincount(sample, minlength=top).astype(float)
        keep = expected >= 5
        pooled_obs = np.append(observed[keep], observed[~keep].sum())
        pooled_exp = np.append(expected[keep], expected[~keep].sum())
        if pooled_exp[-1] < 5:  # fold a small remainder into the last kept cell
            pooled_obs[-2] += pooled_obs[-1]
            pooled_exp[-2] += pooled_exp[-1]
            pooled_obs, pooled_exp = pooled_obs[:-1], pooled_exp[:-1]
        pooled_exp *= pooled_obs.sum() / pooled_exp.sum()
        assert stats.chisquare(pooled_obs, pooled_exp).pvalue > 1e-4, (rate, code)


def test_shot_noise_8bit_and_other_images_in_one_batch():
    # an 8-bit image takes the table, any other the rejection sampler: per image, so an image's
    # noise never depends on the batch it came in
    generator = torch.Generator().manual_seed(4)
    eight_bit = torch.randint(0, 256, (2, 3, 20, 20), generator=generator).float() / 255
    other = torch.rand(2, 3, 20, 20, generator=generator)
    batch = torch.cat([eight_bit[:1], other[:1], eight_bit[1:], other[1:]])
    together = corrupt(batch, "shot_noise", 2, seed=5)
    for k in range(len(batch)):
        alone = corrupt(batch[k : k + 1], "shot_noise", 2, seed=5, indices=torch.tensor([k]))
        assert torch.equal(alone[0], together[k])
    # both paths keep the mean and the Poisson variance of each pixel value
    for image in (eight_bit, other):
        flat = image[:1].mean().expand(1, 3, 200, 200).contiguous()
        flat = (flat * 255).round() / 255 if image is eight_bit else flat
        out = corrupt(flat, "shot_noise", 1, seed=0).double()
        value, n = float(flat.flatten()[0]), out.numel()
        assert abs(out.mean().item() - value) < 5 * (value / 60 / n) ** 0.5
        assert abs(out.var().item() / (value / 60) - 1) < 0.05


@pytest.mark.parametrize("params, amount", [("imagenet", 0.27), ("cifar", 0.07)])
def test_impulse_noise_salt_and_pepper_per_element(params, amount):
    flat = torch.full((2, 3, 128, 128), 0.5)
    out = corrupt(flat, "impulse_noise", 5, seed=0, params=params)
    n = out.numel()
    salt, pepper = (out == 1).double().mean().item(), (out == 0).double().mean().item()
    se = (amount / 2 / n) ** 0.5
    assert abs(salt - amount / 2) < 5 * se and abs(pepper - amount / 2) < 5 * se
    # channels flip independently (skimage draws over (H, W, 3)): a pixel rarely has all three
    all_three = (out != 0.5).all(dim=1).double().mean().item()
    assert abs(all_three - amount**3) < 5 * (amount**3 / (n / 3)) ** 0.5
