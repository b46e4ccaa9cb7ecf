"""Blurs: glass blur (blur, locally shuffle pixels, blur again) and ImageMagick's motion blur.

Both are re-derived from the semantics of the APIs the reference calls, two of which surprise:

* glass blur calls ``skimage.filters.gaussian(x, sigma, multichannel=True)`` on a *2-D* image.
  Old scikit-image (0.14-0.18, what MNIST-C was made with) then takes the last axis for colour
  channels and filters with sigma ``(sigma, 0)``: the blur is **vertical only**. We reproduce
  that, since it is what the published images contain.
* ``MagickMotionBlurImage(radius, sigma, angle)`` is a *one-sided* Gaussian streak: with
  ``width = 2 * ceil(radius) + 1`` taps, tap ``i`` (0 <= i < width) weighs
  ``exp(-i^2 / (2 sigma^2))`` (normalised to sum 1) and reads the pixel at column offset
  ``ceil(i cos(angle) - 0.5)`` and row offset ``ceil(i sin(angle) - 0.5)``, with edge pixels
  repeated outside the image. The result is written back as an 8-bit PNG (rounded).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from safetycheck.measures.corruptions._common import SIDE, gaussian_blur


def glass_blur(
    images: torch.Tensor, generator: torch.Generator, sigma: float, max_delta: int, iterations: int
) -> torch.Tensor:
    """MNIST-C glass blur: vertical Gaussian, 8-bit truncation, sequential local swaps, vertical
    Gaussian.

    The swap pass visits rows ``h`` and columns ``w`` from ``27 - max_delta`` down to
    ``max_delta + 1``; at each visit, with probability 1/2, it swaps pixel (h, w) with
    (h + dy, w + dx) where dx, dy are uniform integers in ``[-max_delta, max_delta - 1]`` (NumPy's
    ``randint`` excludes its upper bound). Swaps are sequential, so a pixel can travel several
    steps; we keep the sequence exactly and vectorise over the batch instead.
    """
    n = images.shape[0]
    blurred = gaussian_blur(images, sigma, mode="nearest", axes=(-2,))
    # np.uint8(float * 255) truncates toward zero; pixels are stored one row per position so
    # that each step reads and writes contiguous rows of N values
    pixels = torch.floor(blurred * 255.0).reshape(n, SIDE * SIDE).t().contiguous()
    flat = pixels.view(-1)
    positions = [
        h * SIDE + w
        for h in range(SIDE - max_delta, max_delta, -1)
        for w in range(SIDE - max_delta, max_delta, -1)
    ]
    steps = iterations * len(positions)
    swap = torch.rand(steps, n, generator=generator) < 0.5
    offsets = torch.randint(-max_delta, max_delta, (steps, n, 2), generator=generator)
    # flat index of the partner pixel of every step: (position + dy * 28 + dx) * N + image
    partner = (
        torch.tensor(positions * iterations).view(steps, 1)
        + offsets[..., 1] * SIDE
        + offsets[..., 0]
    ) * n + torch.arange(n).view(1, n)
    # The 1352 sequential steps each touch only N values: NumPy's single-threaded small-array
    # operations beat torch's here (no thread-pool wake-up per operation).
    table, flat_np = partner.numpy(), flat.numpy()
    rows_np, swap_np = pixels.numpy(), swap.numpy()
    for step, here in enumerate(positions * iterations):
        there, chosen = table[step], swap_np[step]
        value_here = rows_np[here].copy()
        value_there = flat_np[there]
        flat_np[there] = np.where(chosen, value_here, value_there)
        rows_np[here] = np.where(chosen, value_there, value_here)
    shuffled = (pixels.t() / 255.0).reshape(n, 1, SIDE, SIDE)
    return gaussian_blur(shuffled, sigma, mode="nearest", axes=(-2,))


def motion_blur_kernel(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick's one-sided motion-blur weights: (width,) float64 summing to 1."""
    width = int(2 * math.ceil(radius) + 1)
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def motion_blur_offsets(
    angles_degrees: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer (row, column) offsets of each tap for each angle: two (N, width) int64 tensors."""
    taps = torch.arange(width, dtype=torch.float64)
    radians = torch.deg2rad(angles_degrees.to(torch.float64)).unsqueeze(1)
    cols = torch.ceil(taps * torch.cos(radians) - 0.5).long()
    rows = torch.ceil(taps * torch.sin(radians) - 0.5).long()
    return rows, cols


def motion_blur(
    images: torch.Tensor,
    generator: torch.Generator,
    radius: float,
    sigma: float,
    max_angle: float = 45.0,
) -> torch.Tensor:
    """ImageMagick motion blur with an angle drawn uniformly from [-max_angle, max_angle)
    degrees."""
    n = images.shape[0]
    angles = (torch.rand(n, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * max_angle
    kernel = motion_blur_kernel(radius, sigma)
    width = kernel.numel()
    row_offsets, col_offsets = motion_blur_offsets(angles, width)
    # Edge pixels repeat outside the image (ImageMagick's default virtual-pixel method); with a
    # frame as wide as the kernel, every tap of every image is a fixed shift of one flat index.
    padded = F.pad(images, (width, width, width, width), mode="replicate").reshape(n, -1)
    stride = SIDE + 2 * width
    index = torch.arange(SIDE)
    base = ((index.view(SIDE, 1) + width) * stride + (index.view(1, SIDE) + width)).view(1, -1)
    out = torch.zeros(n, SIDE * SIDE, dtype=images.dtype)
    for tap, weight in enumerate(kernel.tolist()):
        shift = (row_offsets[:, tap] * stride + col_offsets[:, tap]).view(n, 1)
        out.add_(torch.gather(padded, 1, base + shift), alpha=weight)
    # the blurred image travels back through an 8-bit PNG
    return torch.round(out.clamp(0.0, 1.0) * 255.0).div(255.0).view(n, 1, SIDE, SIDE)
