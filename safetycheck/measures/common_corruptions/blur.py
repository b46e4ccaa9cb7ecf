"""The blur corruptions of Hendrycks & Dietterich (ICLR 2019): defocus, glass, motion and zoom
blur (benchmark) and Gaussian blur (held out), batched in torch.

Two parameter sets: ``"imagenet"`` follows the ``imagecorruptions`` package (1.1.2, Michaelis et
al. 2019: ``disk``, ``clipped_zoom``, ``_motion_blur`` and the five corruption functions of its
``corruptions.py``); ``"cifar"`` follows Hendrycks' ``make_cifar_c.py`` (repository
hendrycks/robustness, ``ImageNet-C/create_c``), whose motion blur calls ImageMagick's
``MotionBlurImage`` through Wand: the shift-and-add that ``imagecorruptions`` re-implements is
used for both, and its glass-blur loop, written for 32x32 images, is generalised to H x W.

Each function takes float32 (N, 3, H, W) in [0, 1] and returns (N, 3, H, W) in the same units,
not yet clipped (:func:`~safetycheck.measures.common_corruptions.catalogue.corrupt` clips).

Known deviations from the references (measured in ``tests/unit/test_common_corruptions_blur.py``):

* The filters compute in float32 where the references use float64 (float32 for the zoom blur):
  differences below 1e-6, a flip of one 8-bit level at rounding boundaries.
* Glass blur truncates its first blur to 8 bits as the reference does (``np.uint8``), but a value
  within 1e-4 of an 8-bit level (in 8-bit units) counts as that level, so that the float32 copy
  of an 8-bit image truncates as the 8-bit image itself does. The reference's float64 Gaussian
  sometimes lands a hair below the level in flat regions (for some sigmas and levels), and
  truncates to one level less there; this is not reproduced.
* CIFAR motion blur: ImageMagick rounds its result to 8 bits when Wand writes the PNG; this module
  returns the unrounded blur (the 8-bit conversion is the caller's), half an 8-bit level below
  the reference on average after truncation to 8 bits.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from safetycheck.measures.common_corruptions._filters import (
    clipped_zoom,
    filter2d,
    gaussian_filter,
    pad,
    shift_blur,
)
from safetycheck.measures.common_corruptions._random import SampleRandom
from safetycheck.measures.common_corruptions._types import CommonCorruption

# ----------------------------------------------------------------------------- defocus blur


def _cv2_gaussian_weights(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma)`` for sigma > 0: the sampled Gaussian over
    ``ksize`` taps centred on ``(ksize - 1) / 2``, normalised to sum 1."""
    offsets = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * float(sigma) ** 2))
    return weights / weights.sum()


_NEGLIGIBLE = 1e-12  # a disk weight below this is dropped (see disk_kernel)


@functools.lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The references' ``disk``: a normalised aliased disk, anti-aliased with a small Gaussian.

    The disk ``x**2 + y**2 <= radius**2`` on the grid ``-8..8`` (``-radius..radius`` when the
    radius exceeds 8), divided by its sum, then blurred as ``cv2.GaussianBlur(disk, (k, k),
    alias_blur)`` does (k = 3, or 5 above radius 8; separable, OpenCV's default border
    BORDER_REFLECT_101 on the kernel array itself).

    Weights below :data:`_NEGLIGIBLE` are set to zero: with an anti-aliasing sigma of 0.1 the
    Gaussian's outer taps are ``exp(-50)``, and their products (below 1e-38) are float32
    subnormals, which made the convolution ten times slower; all of them together weigh less
    than 1e-10, invisible in float32. Rows and columns then zero all round are cut off: they
    weigh nothing, and the border index of every remaining tap is the same, so filtering with
    the cut kernel gives the same result, faster.

    Returns
    -------
    numpy.ndarray
        (K, K) float32 weights summing to 1, K odd.
    """
    half = 8 if radius <= 8 else radius
    ksize = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    xs, ys = np.meshgrid(grid, grid)
    aliased = ((xs**2 + ys**2) <= radius**2).astype(np.float64)
    aliased /= aliased.sum()
    weights = _cv2_gaussian_weights(ksize, alias_blur)
    reach = ksize // 2
    # numpy's "reflect" is OpenCV's BORDER_REFLECT_101 (the edge sample is not repeated).
    padded = np.pad(aliased, reach, mode="reflect")
    size = aliased.shape[0]
    rows = sum(weights[k] * padded[k : k + size, :] for k in range(ksize))
    kernel = sum(weights[k] * rows[:, k : k + size] for k in range(ksize))
    assert isinstance(kernel, np.ndarray)
    kernel[kernel < _NEGLIGIBLE] = 0.0
    nonzero = np.flatnonzero(np.abs(kernel).max(axis=0) > 0)
    centre = size // 2
    keep = int(max(centre - nonzero.min(), nonzero.max() - centre))
    return kernel[centre - keep : centre + keep + 1, centre - keep : centre + keep + 1].astype(
        np.float32
    )


# OpenCV's filter2D switches to the DFT at 11x11 kernels too; measured here, the FFT is 2.5 to 4
# times faster than the direct convolution from this side up, at 32x32 and 224x224 alike.
_FFT_SIDE = 11


def _filter2d_fft(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """:func:`~safetycheck.measures.common_corruptions._filters.filter2d` (``cv2.filter2D``,
    BORDER_REFLECT_101) by FFT: the image padded by the kernel's reach with the same border,
    convolved circularly with the flipped kernel, the wrap-free centre kept. Agrees with the
    direct correlation to about 1e-6 in float32.

    Parameters
    ----------
    x : torch.Tensor
        (..., H, W) float.
    kernel : numpy.ndarray
        (K, L), both odd.
    """
    kh, kw = kernel.shape
    height, width = x.shape[-2:]
    padded = pad(x, kh // 2, kh // 2, kw // 2, kw // 2, "mirror")
    size = tuple(padded.shape[-2:])
    flipped = torch.zeros(size, dtype=x.dtype, device=x.device)
    flipped[:kh, :kw] = torch.as_tensor(kernel[::-1, ::-1].copy(), dtype=x.dtype, device=x.device)
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(flipped)
    full = torch.fft.irfft2(spectrum, s=size)
    # output (i, j) of the circular convolution sums padded[i - kh + 1 .. i, ...]: the centred
    # correlation of pixel (i - kh + 1, j - kw + 1) of the image.
    return full[..., kh - 1 : kh - 1 + height, kw - 1 : kw - 1 + width].contiguous()


def defocus_blur(
    x: torch.Tensor, level: tuple[float, float], random: SampleRandom, variant: str
) -> torch.Tensor:
    """Defocus: each channel filtered with :func:`disk_kernel` (``cv2.filter2D``, border
    BORDER_REFLECT_101).

    Parameters
    ----------
    x : torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    level : (radius, alias_blur)
    random, variant
        Unused: the blur is deterministic and the two parameter sets share the formula.

    Returns
    -------
    torch.Tensor
        (N, 3, H, W), within [0, 1] up to rounding.
    """
    kernel = disk_kernel(float(level[0]), float(level[1]))
    if kernel.shape[0] < _FFT_SIDE:
        return filter2d(x, kernel)
    return _filter2d_fft(x, kernel)


# ------------------------------------------------------------------------------ glass blur

_LEVEL_EPSILON = 1e-4  # 8-bit units: float32 blurs of 8-bit values stay within ~3e-5 of them


def glass_positions(height: int, width: int, delta: int) -> tuple[int, int]:
    """(rows, columns) of the pixels the glass-blur loop visits: ``h`` from ``height - delta``
    down to ``delta + 1``, ``w`` likewise (0 when the image is too small)."""
    return max(height - 2 * delta, 0), max(width - 2 * delta, 0)


def glass_offsets(
    random: SampleRandom, delta: int, shape: tuple[int, int], stream: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass's (dx, dy): (N, rows, cols) int64 each, independent and uniform on
    ``[-delta, delta)`` (the references' ``np.random.randint(-delta, delta, size=(2,))``).

    Both come from one 64-bit draw per pixel, dx from its upper 32 bits and dy from its lower 32,
    each mapped to ``[0, 2 delta)`` by multiply-shift (``floor(bits32 * 2 delta / 2**32)``): a
    fifth of the cost of two :meth:`SampleRandom.integers` draws, which matters here (hundreds
    of thousands of draws per 224x224 image). Exact for ``delta`` of 1, 2 or 4 (a power-of-two
    span); for 3, each value's probability is 1/6 within 2**-32.
    """
    bits = random.bits(shape, stream)
    span = 2 * int(delta)
    upper = (bits >> 32) & 0xFFFFFFFF
    lower = bits & 0xFFFFFFFF
    return ((upper * span) >> 32) - delta, ((lower * span) >> 32) - delta


def glass_shuffle(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, delta: int) -> torch.Tensor:
    """One pass of the references' local pixel shuffle, vectorised across images and pixels.

    The references loop over ``h = H - delta .. delta + 1`` (descending), and within each row over
    ``w = W - delta .. delta + 1`` (descending), drawing ``dx, dy`` in ``[-delta, delta)`` and
    executing ``x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]``. On an (H, W, 3) array
    both right-hand items are views, so the statement is not a swap: pixel (h, w) takes the value
    of pixel (h + dy, w + dx), which keeps its own. Every pixel is therefore written once, at its
    own step, and ends with the value its source held at that step: the source's final value if
    the source was visited before (later row or same row, later column: a larger flat index
    ``h * W + w``), else its value before the pass. Following each pixel's chain of
    earlier-visited sources to its end (pointer doubling: a number of gathers logarithmic in the
    longest chain) gives exactly the sequential loop's result.

    Parameters
    ----------
    x : torch.Tensor
        (N, C, H, W), any dtype.
    dy, dx : torch.Tensor
        (N, rows, cols) int64 in ``[-delta, delta)``, rows and cols from :func:`glass_positions`;
        entry ``[n, i, j]`` is the draw of image ``n`` at ``h = H - delta - i``,
        ``w = W - delta - j`` (the loop's order).
    delta : int
        The maximal displacement, >= 1.

    Returns
    -------
    torch.Tensor
        (N, C, H, W), the pixels of ``x`` rearranged.
    """
    count, channels, height, width = x.shape
    rows, cols = glass_positions(height, width, delta)
    if rows == 0 or cols == 0:
        return x.clone()
    device = x.device
    h = (height - delta - torch.arange(rows, device=device))[:, None]
    w = (width - delta - torch.arange(cols, device=device))[None, :]
    visited = (h * width + w).reshape(-1)  # flat indices of the visited pixels
    source = (visited[None, :] + (dy * width + dx).reshape(count, -1)).to(torch.int64)
    is_visited = torch.zeros(height * width, dtype=torch.bool, device=device)
    is_visited[visited] = True
    earlier = is_visited[source] & (source > visited[None, :])
    identity = torch.arange(height * width, device=device).expand(count, -1)
    # link: where a pixel's value comes from within this pass; fetch: whose old value it takes.
    link = identity.clone()
    fetch = identity.clone()
    targets = visited[None, :].expand(count, -1)
    link.scatter_(1, targets, torch.where(earlier, source, targets))
    fetch.scatter_(1, targets, source)
    while True:
        jumped = link.gather(1, link)
        if torch.equal(jumped, link):
            break
        link = jumped
    origin = fetch.gather(1, link)
    flat = x.reshape(count, channels, height * width)
    return flat.gather(2, origin[:, None, :].expand(-1, channels, -1)).reshape(x.shape)


def glass_blur(
    x: torch.Tensor, level: tuple[float, int, int], random: SampleRandom, variant: str
) -> torch.Tensor:
    """Glass: Gaussian blur, truncation to 8 bits, ``iterations`` passes of the local pixel
    shuffle (:func:`glass_shuffle`), Gaussian blur again (``skimage.filters.gaussian``, border
    ``"nearest"``).

    Parameters
    ----------
    x : torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    level : (sigma, max_delta, iterations)
    random : SampleRandom
        Pass ``i`` draws its offsets from stream ``i`` (:func:`glass_offsets`).
    variant : str
        Unused: the parameter sets share the formula (``make_cifar_c.py``'s 32 generalised to H
        and W).

    Returns
    -------
    torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    """
    sigma, delta, iterations = float(level[0]), int(level[1]), int(level[2])
    # np.uint8 truncation; float32 rounding (below 3e-5 levels) is absorbed by the epsilon.
    quantised = torch.floor(gaussian_filter(x, sigma) * 255.0 + _LEVEL_EPSILON).clamp_(0.0, 255.0)
    shape = glass_positions(x.shape[2], x.shape[3], delta)
    for step in range(iterations):
        dx, dy = glass_offsets(random, delta, shape, stream=step)
        quantised = glass_shuffle(quantised, dy, dx, delta)
    return gaussian_filter(quantised / 255.0, sigma)


# ----------------------------------------------------------------------------- motion blur


def motion_blur(
    x: torch.Tensor, level: tuple[int, float], random: SampleRandom, variant: str
) -> torch.Tensor:
    """Motion: the shift-and-add of ImageMagick's ``MotionBlurImage`` (imagecorruptions'
    ``_motion_blur``; Wand's call in ``make_cifar_c.py``) along an angle uniform on (-45, 45)
    degrees per image (stream 0).

    Parameters
    ----------
    x : torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    level : (radius, sigma)
        ``2 * radius + 1`` taps weighted by a half Gaussian of ``sigma`` pixels.
    random : SampleRandom
    variant : str
        Unused: the parameter sets share the formula.

    Returns
    -------
    torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    """
    angles = random.uniform((1,), stream=0, low=-45.0, high=45.0)[:, 0]
    return shift_blur(x, int(level[0]), float(level[1]), angles)


# ------------------------------------------------------------------------------- zoom blur


def zoom_blur(
    x: torch.Tensor, level: tuple[float, ...], random: SampleRandom, variant: str
) -> torch.Tensor:
    """Zoom: the mean of the image and its centre zoomed by each factor of ``level``
    (``clipped_zoom``, SciPy's linear zoom; imagecorruptions keeps the zoomed image's first rows
    and columns, ``make_cifar_c.py`` its centred ones).

    Parameters
    ----------
    x : torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    level : tuple of float
        The zoom factors, the references' ``np.arange`` values (1 first).
    random : SampleRandom
        Unused: the blur is deterministic.
    variant : {"imagenet", "cifar"}

    Returns
    -------
    torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    """
    out = torch.zeros_like(x)
    for factor in level:
        out += clipped_zoom(x, factor, variant)
    return (x + out) / (len(level) + 1)


# --------------------------------------------------------------------------- gaussian blur


def gaussian_blur(
    x: torch.Tensor, level: float, random: SampleRandom, variant: str
) -> torch.Tensor:
    """Gaussian: ``skimage.filters.gaussian(x, sigma)`` per channel (SciPy's filter, border
    ``"nearest"``, truncated at 4 sigma).

    Parameters
    ----------
    x : torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    level : float
        Sigma in pixels.
    random, variant
        Unused: deterministic, one formula.

    Returns
    -------
    torch.Tensor
        Float32 (N, 3, H, W) in [0, 1].
    """
    return gaussian_filter(x, float(level))


# ------------------------------------------------------------------------------ catalogue


def _zooms(stop: float, step: float) -> tuple[float, ...]:
    # The references' np.arange(1, stop, step), float for float: its rounding decides the crop
    # sizes, and its end point (1.11 is in np.arange(1, 1.11, 0.01)) the number of layers.
    return tuple(float(factor) for factor in np.arange(1, stop, step))


CORRUPTIONS: tuple[CommonCorruption, ...] = (
    CommonCorruption(
        name="defocus_blur",
        kind="blur",
        function=defocus_blur,
        levels={
            # (disk radius, anti-aliasing sigma)
            "imagenet": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
            "cifar": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        },
        deterministic=True,
    ),
    CommonCorruption(
        name="glass_blur",
        kind="blur",
        function=glass_blur,
        levels={
            # (sigma, max_delta, iterations)
            "imagenet": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
            "cifar": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        },
    ),
    CommonCorruption(
        name="motion_blur",
        kind="blur",
        function=motion_blur,
        levels={
            # (radius, sigma)
            "imagenet": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
            "cifar": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        },
    ),
    CommonCorruption(
        name="zoom_blur",
        kind="blur",
        function=zoom_blur,
        levels={
            "imagenet": (
                _zooms(1.11, 0.01),
                _zooms(1.16, 0.01),
                _zooms(1.21, 0.02),
                _zooms(1.26, 0.02),
                _zooms(1.31, 0.03),
            ),
            "cifar": (
                _zooms(1.06, 0.01),
                _zooms(1.11, 0.01),
                _zooms(1.16, 0.01),
                _zooms(1.21, 0.01),
                _zooms(1.26, 0.01),
            ),
        },
        deterministic=True,
    ),
    CommonCorruption(
        name="gaussian_blur",
        kind="blur",
        function=gaussian_blur,
        levels={
            # sigma
            "imagenet": (1, 2, 3, 4, 6),
            "cifar": (0.4, 0.6, 0.7, 0.8, 1),
        },
        deterministic=True,
    ),
)
