"""A slow, per-image re-derivation of the MNIST-C recipe (google-research/mnist-c, corruptions.py),
used only by the tests as the yardstick for the fast engine in ``safetycheck.measures.corruptions``.

Each function takes one 8-bit image as a uint8 numpy array (28, 28) and a numpy Generator, and
returns a float array in [0, 255] like the reference's functions, written as plainly as possible:
loops over pixels, with the library semantics the reference relies on spelled out. Where the
reference calls a scikit-image function that is itself a thin wrapper around SciPy
(``skimage.filters.gaussian`` -> ``scipy.ndimage.gaussian_filter``, the Sobel and labelling steps
of ``skimage.feature.canny``), we call SciPy directly; scikit-image, OpenCV and ImageMagick
themselves are not used (nor installed), and no reference code is copied.

Parameters are MNIST-C's (each reference function's default severity).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def _gaussian(image, sigma, mode="nearest"):
    return ndimage.gaussian_filter(
        np.asarray(image, dtype=np.float64), sigma, mode=mode, truncate=4.0
    )


def _bilinear(image, r, c):
    """skimage.transform.warp(order=1, mode='constant', cval=0) at one real position."""

    def pixel(i, j):
        return image[i, j] if 0 <= i < 28 and 0 <= j < 28 else 0.0

    r0, c0 = math.floor(r), math.floor(c)
    dr, dc = r - r0, c - c0
    return (1 - dr) * ((1 - dc) * pixel(r0, c0) + dc * pixel(r0, c0 + 1)) + dr * (
        (1 - dc) * pixel(r0 + 1, c0) + dc * pixel(r0 + 1, c0 + 1)
    )


def _warp(image, a1, a2, b1, b2, a3, b3):
    """Each output pixel (row, col) reads input (b1 col + b2 row + b3, a1 col + a2 row + a3)."""
    x = image / 255.0
    out = np.zeros((28, 28))
    for row in range(28):
        for col in range(28):
            out[row, col] = _bilinear(x, b1 * col + b2 * row + b3, a1 * col + a2 * row + a3)
    return np.clip(out, 0, 1) * 255


def _centred_warp(image, a1, a2, b1, b2):
    return _warp(image, a1, a2, b1, b2, 13.5 * (1 - a1 - a2), 13.5 * (1 - b1 - b2))


def shot_noise(image, rng, photons=3):
    out = np.zeros((28, 28))
    for r in range(28):
        for c in range(28):
            out[r, c] = rng.poisson(image[r, c] / 255 * photons) / photons
    return np.clip(out, 0, 1) * 255


def impulse_noise(image, rng, amount=0.17):
    out = image / 255.0
    for r in range(28):
        for c in range(28):
            flipped = rng.random() < amount
            salted = rng.random() < 0.5
            if flipped:
                out[r, c] = 1.0 if salted else 0.0
    return out * 255


def glass_blur(image, rng, sigma=0.7, max_delta=1, iterations=2):
    # skimage gaussian(multichannel=True) on a 2-D array blurs along axis 0 only
    x = np.floor(ndimage.gaussian_filter(image / 255.0, (sigma, 0), mode="nearest") * 255)
    for _ in range(iterations):
        for h in range(28 - max_delta, max_delta, -1):
            for w in range(28 - max_delta, max_delta, -1):
                if rng.random() < 0.5:
                    dx, dy = rng.integers(-max_delta, max_delta, size=2)
                    x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]
    return np.clip(ndimage.gaussian_filter(x / 255.0, (sigma, 0), mode="nearest"), 0, 1) * 255


def motion_blur(image, rng, radius=10, sigma=3):
    angle = rng.uniform(-45, 45)
    width = int(2 * math.ceil(radius) + 1)
    kernel = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(width)]
    kernel = [k / sum(kernel) for k in kernel]
    offsets = [
        (
            math.ceil(i * math.sin(math.radians(angle)) - 0.5),
            math.ceil(i * math.cos(math.radians(angle)) - 0.5),
        )
        for i in range(width)
    ]
    out = np.zeros((28, 28))
    for y in range(28):
        for x in range(28):
            total = 0.0
            for k, (dy, dx) in zip(kernel, offsets, strict=True):
                total += k * image[min(max(y + dy, 0), 27), min(max(x + dx, 0), 27)]
            out[y, x] = min(max(round(total), 0), 255)  # written back as an 8-bit PNG
    return out


def shear(image, rng, amount=0.4):
    s = amount * rng.choice([-1, 1])
    return _centred_warp(image, 1.0, -math.sin(s), 0.0, math.cos(s))


def rotate(image, rng, amount=0.4):
    s = amount * rng.choice([-1, 1])
    return _centred_warp(image, math.cos(s), -math.sin(s), math.sin(s), math.cos(s))


def scale(image, rng, factor=1 / 0.7):
    return _centred_warp(image, factor, 0.0, 0.0, factor)


def translate(image, rng, pixels=3):
    dx, dy = pixels * rng.choice([-1, 1]), pixels * rng.choice([-1, 1])
    return _warp(image, 1.0, 0.0, 0.0, 1.0, dx, dy)


def brightness(image, rng, shift=0.5):
    out = np.zeros((28, 28))
    for r in range(28):
        for c in range(28):
            value = image[r, c] / 255  # gray -> HSV: hue 0, saturation 0, value = the gray level
            value = min(max(value + shift, 0), 1)
            out[r, c] = value * (0.2125 + 0.7154 + 0.0721)  # HSV -> RGB (all = value) -> gray
    return np.clip(out, 0, 1) * 255


def stripe(image, rng):
    out = image.astype(np.float64)
    for c in list(range(7)) + list(range(21, 28)):
        out[:, c] = 255 - out[:, c]
    return out


def _plasma(rng, decay, size=256):
    grid = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        for i in range(half, size, step):  # squares: centre = mean of 4 corners + noise
            for j in range(half, size, step):
                corners = [
                    grid[(i + a) % size, (j + b) % size]
                    for a in (-half, half)
                    for b in (-half, half)
                ]
                grid[i, j] = sum(corners) / 4 + wibble * rng.uniform(-wibble, wibble)
        for i in range(0, size, half):  # diamonds: edge midpoints = mean of 4 neighbours + noise
            for j in range((i + half) % step, size, step):
                around = [
                    grid[(i - half) % size, j],
                    grid[(i + half) % size, j],
                    grid[i, (j - half) % size],
                    grid[i, (j + half) % size],
                ]
                grid[i, j] = sum(around) / 4 + wibble * rng.uniform(-wibble, wibble)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def fog(image, rng, density=3.0, decay=1.4):
    x = image / 255.0
    peak = x.max()
    x = x + density * _plasma(rng, decay)[:28, :28]
    return np.clip(x * peak / (peak + density), 0, 1) * 255


def spatter(image, rng, mean=0.65, std=0.3, blur=1, threshold=0.65, mask_blur=1.5):
    x = image / 255.0
    liquid = _gaussian(rng.normal(mean, std, size=(28, 28)), blur)
    liquid[liquid < threshold] = 0
    mask = _gaussian((liquid > threshold).astype(np.float64), mask_blur)
    mask[mask < 0.8] = 0
    return np.clip(x * (1 - mask) + 63 / 255 * mask, 0, 1) * 255


def _line(c0, r0, c1, r1):
    out = np.zeros((28, 28))
    if c1 == c0:
        return out
    for r in range(28):
        for c in range(28):
            if c < math.floor(c0) or c >= math.ceil(c1):
                continue
            distance = min(abs(r - ((r1 - r0) / (c1 - c0) * (c - c0) + r0)), 2.3 - 1e-10)
            out[r, c] = min(max(math.log(1 - distance / 2.3) + 1, 0), 1)
    return out


def dotted_line(image, rng):
    r0, r1 = rng.integers(0, 27, size=2)
    line = _line(0, r0, 27, r1)
    for c in range(28):
        if c % 4 in (0, 1):  # the reference blanks column pairs 0-1, 4-5, ..., 24-25
            line[:, c] = 0
    return np.clip(image / 255.0 + line, 0, 1) * 255


def zigzag(image, rng):
    x = image / 255.0
    r0 = int(rng.integers(0, 27))
    r1 = r0 + int(rng.integers(-5, 5))
    theta = math.atan((r1 - r0) / 23)
    d = 23 / math.cos(theta)
    points = [(0.0, 0.0)]
    for i in range(int((d - 2) // 4) + 1):
        points.append(((2 * i + 1) * 2.0, (-1) ** i * 2.0))
    last_c = 4 * (d // 4)
    if d != last_c:
        points.append((d, points[-1][1] / (2 * (d - last_c))))
    points = [
        (
            math.cos(theta) * c - math.sin(theta) * r + 2,
            math.sin(theta) * c + math.cos(theta) * r + r0,
        )
        for c, r in points
    ]
    for (c0, ra), (c1, rb) in zip(points[:-1], points[1:], strict=True):
        x = np.clip(x + _line(c0, ra, c1, rb), 0, 1)
    return x * 255


def canny_edges(image, rng=None, sigma=1.0, low=0.1, high=0.2):
    x = image / 255.0
    smoothed = ndimage.gaussian_filter(x, sigma, mode="constant") / (
        ndimage.gaussian_filter(np.ones((28, 28)), sigma, mode="constant") + np.finfo(float).eps
    )
    isobel, jsobel = ndimage.sobel(smoothed, axis=0), ndimage.sobel(smoothed, axis=1)
    magnitude = np.hypot(isobel, jsobel)
    maxima = np.zeros((28, 28), bool)
    for r in range(1, 27):
        for c in range(1, 27):
            gi, gj, m = isobel[r, c], jsobel[r, c], magnitude[r, c]
            if m <= 0:
                continue
            same, opposite = gi * gj >= 0, gi * gj <= 0
            result = None  # later sectors win on their shared boundaries, as in skimage
            if same and abs(gi) >= abs(gj):
                w = abs(gj) / abs(gi)
                result = (
                    magnitude[r + 1, c + 1] * w + magnitude[r + 1, c] * (1 - w) <= m
                    and magnitude[r - 1, c - 1] * w + magnitude[r - 1, c] * (1 - w) <= m
                )
            if same and abs(gi) <= abs(gj):
                w = abs(gi) / abs(gj)
                result = (
                    magnitude[r + 1, c + 1] * w + magnitude[r, c + 1] * (1 - w) <= m
                    and magnitude[r - 1, c - 1] * w + magnitude[r, c - 1] * (1 - w) <= m
                )
            if opposite and abs(gi) <= abs(gj):
                w = abs(gi) / abs(gj)
                result = (
                    magnitude[r - 1, c + 1] * w + magnitude[r, c + 1] * (1 - w) <= m
                    and magnitude[r + 1, c - 1] * w + magnitude[r, c - 1] * (1 - w) <= m
                )
            if opposite and abs(gi) >= abs(gj):
                w = abs(gj) / abs(gi)
                result = (
                    magnitude[r - 1, c + 1] * w + magnitude[r - 1, c] * (1 - w) <= m
                    and magnitude[r + 1, c - 1] * w + magnitude[r + 1, c] * (1 - w) <= m
                )
            maxima[r, c] = bool(result)
    low_mask, high_mask = maxima & (magnitude >= low), maxima & (magnitude >= high)
    labels, count = ndimage.label(low_mask, structure=np.ones((3, 3), bool))
    keep = np.zeros(count + 1, bool)
    for label in range(1, count + 1):
        keep[label] = high_mask[labels == label].any()
    keep[0] = False
    return keep[labels].astype(np.float64) * 255


REFERENCE = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "canny_edges": canny_edges,
}


def reference_corrupt(images_uint8: np.ndarray, name: str, seed: int = 12345) -> np.ndarray:
    """Corrupt (N, 28, 28) uint8 images one at a time; returns uint8 (N, 28, 28), rounded like
    the MNIST-C release (``np.round(x).astype(np.uint8)``)."""
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    out = np.empty_like(images_uint8)
    for i, image in enumerate(images_uint8):
        out[i] = np.round(np.clip(REFERENCE[name](image.astype(np.float64), rng), 0, 255)).astype(
            np.uint8
        )
    return out
