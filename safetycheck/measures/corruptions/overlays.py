"""Corruptions that add or change content: brightness, stripe, fog, spatter, dotted line, zigzag.

Lines follow the reference's ``line_from_points(c0, r0, c1, r1)``: for the straight line through
(col c0, row r0) and (col c1, row r1), each pixel gets ``log(1 - d / 2.3) + 1`` clipped to [0, 1],
where ``d`` is its *vertical* distance to the line (clipped just below 2.3), and columns left of
``floor(c0)`` or from ``ceil(c1)`` on are blanked (so a line ending at column 27 leaves column 27
empty). A line and a digit add and clip at 1. Every dotted line or zigzag is one of a few hundred
patterns (its random parameters are small integers), so we draw each pattern once and index.
"""

from __future__ import annotations

import functools
import math

import torch

from safetycheck.measures.corruptions._common import SIDE, gaussian_blur, pixel_grid

LINE_REACH = 2.3  # pixels from the line's centre to where its intensity reaches 0


# ---- brightness and stripe -----------------------------------------------------------------


def brightness(images: torch.Tensor, generator: torch.Generator, shift: float) -> torch.Tensor:
    """Add ``shift`` to the HSV value channel. For a gray pixel (saturation 0) the reference's
    gray -> RGB -> HSV -> RGB -> gray round trip is the identity, so this is ``x + shift``."""
    return images + shift


def stripe(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Invert the 7 leftmost and 7 rightmost columns (``x[:, :7]`` and ``x[:, 21:]``)."""
    out = images.clone()
    out[..., :7] = 1.0 - out[..., :7]
    out[..., 21:] = 1.0 - out[..., 21:]
    return out


# ---- fog -----------------------------------------------------------------------------------


def plasma_fractal(
    count: int, generator: torch.Generator, decay: float, mapsize: int = 256, crop: int = SIDE
) -> torch.Tensor:
    """The top-left ``crop`` x ``crop`` of ``count`` diamond-square maps, each scaled to [0, 1].

    The reference's recipe (a modification of FLHerne/mapgen): start from 0 at (0, 0); at each
    step size s = mapsize, mapsize/2, ..., 2, set each square's centre to the mean of its four
    corners, then each edge midpoint to the mean of its four diamond neighbours, the grid wrapping
    around; every new value gets uniform noise ``w * U(-w, w)`` with w starting at 100 and divided
    by ``decay`` after each step. The map is then shifted and scaled so that its minimum is 0 and
    its maximum 1 over the *whole* mapsize x mapsize map, not just the part cropped.

    We keep the grid of the current step as one array and interleave corners, edge midpoints and
    centres into the next, finer grid; the last step's three new point sets are only reduced to
    their minima and maxima and cropped, never assembled. Returns (count, crop, crop) float32.
    """
    grid = torch.zeros(count, 1, 1, dtype=torch.float32)
    wibble = 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=torch.float32)
        return noise.mul_(2 * wibble * wibble).sub_(wibble * wibble).add_(total, alpha=0.25)

    while True:
        k = grid.shape[1]
        down = torch.roll(grid, -1, dims=1)
        centres = wibbled_mean(
            grid + down + torch.roll(grid, -1, dims=2) + torch.roll(down, -1, dims=2)
        )
        tops = wibbled_mean(
            centres + torch.roll(centres, 1, dims=1) + grid + torch.roll(grid, -1, dims=2)
        )
        lefts = wibbled_mean(centres + torch.roll(centres, 1, dims=2) + grid + down)
        wibble /= decay
        if 2 * k == mapsize:
            break
        top_rows = torch.stack([grid, tops], dim=-1).view(count, k, 2 * k)
        bottom_rows = torch.stack([lefts, centres], dim=-1).view(count, k, 2 * k)
        grid = torch.stack([top_rows, bottom_rows], dim=2).view(count, 2 * k, 2 * k)
    parts = (grid, tops, lefts, centres)
    low = torch.stack([p.amin(dim=(1, 2)) for p in parts]).amin(dim=0).view(count, 1, 1)
    high = torch.stack([p.amax(dim=(1, 2)) for p in parts]).amax(dim=0).view(count, 1, 1)
    half = (crop + 1) // 2
    small = [p[:, :half, :half] for p in parts]
    top_rows = torch.stack([small[0], small[1]], dim=-1).view(count, half, 2 * half)
    bottom_rows = torch.stack([small[2], small[3]], dim=-1).view(count, half, 2 * half)
    cropped = torch.stack([top_rows, bottom_rows], dim=2).view(count, 2 * half, 2 * half)[
        :, :crop, :crop
    ]
    return (cropped - low) / (high - low)


def fog(
    images: torch.Tensor, generator: torch.Generator, density: float, decay: float, chunk: int = 256
) -> torch.Tensor:
    """Add ``density`` x plasma (top-left 28x28 of a 256x256 map), then rescale by max/(max +
    density).

    Maps are made ``chunk`` images at a time to bound memory (a map is 256 KiB).
    """
    n = images.shape[0]
    plasma = torch.empty(n, 1, SIDE, SIDE, dtype=images.dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        plasma[start:stop, 0] = plasma_fractal(stop - start, generator, decay).to(images.dtype)
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images + density * plasma) * peak / (peak + density)


# ---- spatter -------------------------------------------------------------------------------


def spatter(
    images: torch.Tensor,
    generator: torch.Generator,
    mean: float,
    std: float,
    blur: float,
    threshold: float,
    mask_blur: float,
) -> torch.Tensor:
    """Mud spatter: blobs of gray 63/255 where smoothed Gaussian noise rises above ``threshold``.

    liquid = gaussian(N(mean, std), blur); mask = [liquid > threshold]; m = gaussian(mask,
    mask_blur) with values below 0.8 set to 0; out = x (1 - m) + (63/255) m. Both blurs use
    SciPy's 'nearest' border over both axes (skimage's ``gaussian`` on a 2-D array).
    """
    liquid = torch.randn(images.shape, generator=generator, dtype=images.dtype) * std + mean
    liquid = gaussian_blur(liquid, blur, mode="nearest")
    mask = gaussian_blur((liquid > threshold).to(images.dtype), mask_blur, mode="nearest")
    mask = torch.where(mask < 0.8, torch.zeros((), dtype=mask.dtype), mask).to(images.dtype)
    return images * (1 - mask) + (63.0 / 255.0) * mask


# ---- lines ---------------------------------------------------------------------------------


def line_from_points(c0: float, r0: float, c1: float, r1: float) -> torch.Tensor:
    """The reference's anti-aliased line as a (28, 28) float64 intensity map."""
    if c1 == c0:
        return torch.zeros(SIDE, SIDE, dtype=torch.float64)
    rows, cols = pixel_grid(torch.float64)
    slope = (r1 - r0) / (c1 - c0)
    distance = (rows - (slope * (cols - c0) + r0)).abs().clamp(0.0, LINE_REACH - 1e-10)
    line = (torch.log(1 - distance / LINE_REACH) + 1).clamp(0.0, 1.0)
    left, right = math.floor(c0), math.ceil(c1)
    line[:, :left] = 0.0
    line[:, right:] = 0.0
    return line


def dotted_line_pattern(r0: int, r1: int) -> torch.Tensor:
    """A line from (col 0, row r0) to (col 27, row r1), with column pairs 0-1, 4-5, ..., 24-25
    blanked."""
    line = line_from_points(0, r0, 27, r1)
    for start in range(0, 28, 4):
        line[:, start : start + 2] = 0.0
    return line


def zigzag_endpoints(
    r0: int, r1: int, length: float = 2.0, width: float = 2.0
) -> list[tuple[float, float]]:
    """(col, row) corners of the reference's zigzag from column 2, row r0 towards column 25, row r1.

    A zigzag of teeth ``length`` long and ``width`` high is laid along the x axis from 0 to the
    line's length d, then rotated onto the line. Its last point is the reference's own formula,
    ``(d, r_last / (2 (d - max_c)))`` with ``max_c = 2 length floor(d / (2 length))``, kept as is.
    """
    c_start, c_end = 2, 25
    theta = math.atan((r1 - r0) / (c_end - c_start))
    d = (c_end - c_start) / math.cos(theta)
    points = [(0.0, 0.0)]
    r_i = 0.0
    for i in range(int((d - length) // (2 * length)) + 1):
        r_i = (-1) ** i * width
        points.append(((2 * i + 1) * length, r_i))
    max_c = (2 * length) * (d // (2 * length))
    if d != max_c:
        points.append((d, r_i / (2 * (d - max_c))))
    cos, sin = math.cos(theta), math.sin(theta)
    return [(cos * c - sin * r + c_start, sin * c + cos * r + r0) for c, r in points]


def zigzag_pattern(r0: int, r1: int) -> torch.Tensor:
    """Sum of the zigzag's segments. The reference adds them one by one, clipping at 1 each time;
    as every segment is non-negative, adding the sum and clipping once gives the same image."""
    points = zigzag_endpoints(r0, r1)
    total = torch.zeros(SIDE, SIDE, dtype=torch.float64)
    for (c0, ra), (c1, rb) in zip(points[:-1], points[1:], strict=True):
        total += line_from_points(c0, ra, c1, rb)
    return total


@functools.cache
def _dotted_table() -> torch.Tensor:
    return torch.stack([dotted_line_pattern(r0, r1) for r0 in range(27) for r1 in range(27)])


@functools.cache
def _zigzag_table() -> torch.Tensor:
    return torch.stack(
        [zigzag_pattern(r0, r0 + delta) for r0 in range(27) for delta in range(-5, 5)]
    )


def dotted_line(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add a dotted line between rows r0 and r1 (uniform integers in [0, 26]) across the image."""
    n = images.shape[0]
    ends = torch.randint(0, 27, (n, 2), generator=generator)
    patterns = _dotted_table()[ends[:, 0] * 27 + ends[:, 1]]
    return images + patterns.unsqueeze(1).to(images.dtype)


def zigzag(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add a zigzag from row r0 in [0, 26] to row r0 + delta, delta in [-5, 4], columns 2 to 25."""
    n = images.shape[0]
    r0 = torch.randint(0, 27, (n,), generator=generator)
    delta = torch.randint(-5, 5, (n,), generator=generator)
    patterns = _zigzag_table()[r0 * 10 + (delta + 5)]
    return images + patterns.unsqueeze(1).to(images.dtype)
