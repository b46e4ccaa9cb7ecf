"""The elastic transform: the image resampled along a smooth random displacement field.

Hendrycks & Dietterich 2019 ("Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR), after Simard, Steinkraus & Platt 2003 ("Best practices for convolutional
neural networks applied to visual document analysis"). The two parameter sets are two algorithms:

* ``"imagenet"``, imagecorruptions 1.1.2's ``elastic_transform``: a uniform random field per axis,
  smoothed by a Gaussian of 1 % of the image's side, scaled, and the image read at the displaced
  coordinates (``scipy.ndimage.map_coordinates``, order 1, ``mode="reflect"``).
* ``"cifar"``, ``make_cifar_c.py``'s: first a random affine map (three points moved at random,
  ``cv2.getAffineTransform`` and ``cv2.warpAffine``, bilinear, ``BORDER_REFLECT_101``), then the
  same kind of elastic displacement with other sizes. The reference's sizes are fractions of
  ``IMSIZE = 32``; here they are fractions of the image's height for vertical lengths and of its
  width for horizontal ones, which is the reference on square images.

Runs batched in torch: each image's random field and affine map from its own key; the resampling
is four gathers with the border folding of the reference (no ``grid_sample``, which has neither
SciPy's ``reflect`` nor OpenCV's ``REFLECT_101``).
"""

from __future__ import annotations

import functools

import torch

from safetycheck.measures.common_corruptions._filters import gaussian_filter, gaussian_kernel
from safetycheck.measures.common_corruptions._random import SampleRandom
from safetycheck.measures.common_corruptions._types import CommonCorruption
from safetycheck.measures.common_corruptions.noise import chunked


def fold(index: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Fold integer indices of any range into ``[0, size)`` like a border mode.

    Parameters
    ----------
    index : torch.Tensor
        int64, any shape and values.
    size : int
        The axis's length.
    mode : {"reflect", "mirror"}
        SciPy's names: ``"reflect"`` mirrors about the edge (``b a | a b c d | d c``; what
        ``map_coordinates(mode="reflect")`` reads beyond the image, OpenCV's BORDER_REFLECT),
        ``"mirror"`` about the edge pixel's centre (``c b | a b c d | c b``; BORDER_REFLECT_101).
        Both repeat with their period (2 size, 2 size - 2), so any distance folds back.

    Returns
    -------
    torch.Tensor
        int64, same shape, values in [0, size).
    """
    if size == 1:
        return torch.zeros_like(index)
    if mode == "reflect":
        period = 2 * size
        folded = torch.remainder(index, period)
        return torch.where(folded < size, folded, period - 1 - folded)
    if mode == "mirror":
        period = 2 * size - 2
        folded = torch.remainder(index, period)
        return torch.where(folded < size, folded, period - folded)
    raise ValueError(f"unknown border mode {mode!r}; 'reflect' or 'mirror'")


def bilinear(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Read each image at real coordinates, bilinearly, with the border ``mode`` beyond it.

    The four neighbours ``floor`` and ``floor + 1`` of each coordinate are folded into the image
    by :func:`fold`, then weighted by the distances. With ``mode="reflect"`` this is exactly
    ``scipy.ndimage.map_coordinates(order=1, mode="reflect")`` (SciPy folds the coordinate about
    -0.5 and size - 0.5, which commutes with linear interpolation of the reflected signal: checked
    against SciPy to 0 difference for coordinates from -30 to 30 on a 7-sample axis); with
    ``"mirror"``, ``cv2.warpAffine``'s INTER_LINEAR with BORDER_REFLECT_101 as OpenCV 5 runs it
    on float images of 3 channels, at the exact coordinates (to 1e-5; OpenCV 4, which made
    CIFAR-10-C, first rounds the coordinates to 1/32 pixel).

    Parameters
    ----------
    x : torch.Tensor
        (N, C, H, W), the images.
    rows, cols : torch.Tensor
        (N, H', W') float64: where output pixel (i, j) of image n reads, in pixels (row, column);
        any values.
    mode : {"reflect", "mirror"}

    Returns
    -------
    torch.Tensor
        (N, C, H', W'), the input's dtype.
    """
    count, channels, height, width = x.shape
    out_shape = rows.shape[1:]
    top = torch.floor(rows)
    left = torch.floor(cols)
    wy = (rows - top).to(x.dtype).reshape(count, 1, -1)
    wx = (cols - left).to(x.dtype).reshape(count, 1, -1)
    top_i = top.to(torch.int64)
    left_i = left.to(torch.int64)
    r0, r1 = fold(top_i, height, mode), fold(top_i + 1, height, mode)
    c0, c1 = fold(left_i, width, mode), fold(left_i + 1, width, mode)
    flat = x.reshape(count, channels, height * width)

    def read(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        index = (r * width + c).reshape(count, 1, -1).expand(-1, channels, -1)
        return torch.gather(flat, 2, index)

    upper = read(r0, c0) * (1 - wx) + read(r0, c1) * wx
    lower = read(r1, c0) * (1 - wx) + read(r1, c1) * wx
    return (upper * (1 - wy) + lower * wy).reshape(count, channels, *out_shape)


def _grid(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) float64 row and column coordinates of the pixels."""
    rows = torch.arange(height, device=device, dtype=torch.float64)
    cols = torch.arange(width, device=device, dtype=torch.float64)
    return rows[:, None].expand(height, width), cols[None, :].expand(height, width)


@functools.lru_cache(maxsize=64)
def _smoothing_matrix(
    size: int, sigma: float, truncate: float, device: torch.device
) -> torch.Tensor:
    """(size, size) float64: the 1-D Gaussian filter with SciPy's ``reflect`` border as a matrix
    (column j is the filtered unit vector j), so that filtering is one matrix product."""
    eye = torch.eye(size, dtype=torch.float64, device=device)
    return gaussian_filter(eye, (float(sigma), 0.0), mode="reflect", truncate=truncate)


def smooth(field: torch.Tensor, sigma: tuple[float, float], truncate: float) -> torch.Tensor:
    """``gaussian_filter(field, sigma, mode="reflect", truncate)`` over (H, W), float64.

    make_cifar_c.py's sigmas reach 20 % of the side (a 269-tap kernel at 224x224), where the
    convolution (float64, no fast path in torch) takes seconds per batch; the same linear map as
    two matrix products (rows, then columns) costs H + W multiply-adds per pixel whatever the
    sigma, and equals the convolution to 1e-15. Long kernels or small images use the products,
    short kernels on large images the convolution.
    """
    height, width = field.shape[-2:]
    taps = len(gaussian_kernel(sigma[0], truncate)) + len(gaussian_kernel(sigma[1], truncate))
    if height + width > 16 * taps:
        return gaussian_filter(field, sigma, mode="reflect", truncate=truncate)
    rows = _smoothing_matrix(height, sigma[0], truncate, field.device)
    cols = _smoothing_matrix(width, sigma[1], truncate, field.device)
    return rows @ field @ cols.T


def _displace(
    x: torch.Tensor,
    random: SampleRandom,
    low: float,
    high: float,
    sigma: tuple[float, float],
    alpha: tuple[float, float],
    streams: tuple[int, int],
) -> torch.Tensor:
    """The elastic step both references share: per axis, a uniform field on (low, high) smoothed
    by ``skimage.filters.gaussian(sigma, mode="reflect", truncate=3)`` (float64), times alpha,
    cast to float32 as the references do; then ``map_coordinates(order=1, mode="reflect")`` at
    (row + dy, column + dx).

    ``sigma`` is (along H, along W); ``alpha`` is (for dy, for dx); ``streams`` (dx, dy).
    """
    height, width = x.shape[-2:]
    fields = []
    for stream, scale in zip(streams, (alpha[1], alpha[0]), strict=True):
        uniform = random.uniform((height, width), stream=stream, low=low, high=high)
        smoothed = smooth(uniform, sigma, truncate=3.0)
        fields.append((smoothed * scale).to(torch.float32))
    dx, dy = fields
    rows, cols = _grid(height, width, x.device)
    return bilinear(x, rows + dy.to(torch.float64), cols + dx.to(torch.float64), "reflect")


def _affine(x: torch.Tensor, random: SampleRandom, jitter: float, stream: int) -> torch.Tensor:
    """make_cifar_c.py's random affine map, batched with one map per image.

    Three points around the centre, ``centre + (s, s)``, ``centre + (s, -s)`` and
    ``centre - (s, s)`` in (x, y) with ``s = min(H, W) // 3`` and centre (W // 2, H // 2), each
    moved by a uniform draw on (-jitter W, jitter W) in x and (-jitter H, jitter H) in y (float32,
    as the reference's); ``cv2.getAffineTransform`` finds the map of the three points onto the
    moved ones, and ``cv2.warpAffine`` reads output pixel p at the inverse map's image of p. We
    solve for that inverse map directly (moved points onto the original ones: the same affine map,
    in float64), then read bilinearly with BORDER_REFLECT_101.
    """
    count = len(random)
    height, width = x.shape[-2:]
    device = x.device
    side = min(height, width) // 3
    centre = torch.tensor([width // 2, height // 2], dtype=torch.float32, device=device)
    offsets = torch.tensor([[side, side], [side, -side], [-side, -side]], dtype=torch.float32)
    points = centre + offsets.to(device)  # (3, 2), (x, y)
    span = torch.tensor([jitter * width, jitter * height], dtype=torch.float64, device=device)
    moves = random.uniform((3, 2), stream=stream, low=-1.0, high=1.0) * span
    moved = points + moves.to(torch.float32)  # (N, 3, 2)
    ones = torch.ones(count, 3, 1, dtype=torch.float64, device=device)
    system = torch.cat([moved.to(torch.float64), ones], dim=2)  # rows (x', y', 1)
    targets = points.to(torch.float64).expand(count, 3, 2)
    inverse = torch.linalg.solve(system, targets)  # (N, 3, 2): (x', y', 1) @ inverse = (x, y)
    rows, cols = _grid(height, width, device)
    source_x = (
        inverse[:, 0, 0, None, None] * cols
        + inverse[:, 1, 0, None, None] * rows
        + inverse[:, 2, 0, None, None]
    )
    source_y = (
        inverse[:, 0, 1, None, None] * cols
        + inverse[:, 1, 1, None, None] * rows
        + inverse[:, 2, 1, None, None]
    )
    return bilinear(x, source_y, source_x, "mirror")


@chunked
def elastic_transform(x: torch.Tensor, level, random: SampleRandom, variant: str) -> torch.Tensor:
    """The elastic transform of imagecorruptions (``variant="imagenet"``) or of make_cifar_c.py
    (``"cifar"``).

    ``"imagenet"``: dx, dy = gaussian(uniform(-d, d, (H, W)), sigma=(0.01 H, 0.01 W),
    mode="reflect", truncate=3) * alpha with d = 0.005 H (the reference uses the height for both
    axes), then the image read at (row + dy, column + dx), bilinearly, SciPy's ``reflect`` border.

    ``"cifar"``: the random affine map of :func:`_affine` (jitter ``level[2]``), then dx, dy =
    gaussian(uniform(-1, 1, (H, W)), sigma=(level[1] H, level[1] W), mode="reflect", truncate=3)
    * (level[0] W, level[0] H), and the same reading. At 32x32 the sizes are make_cifar_c.py's
    ``IMSIZE * fraction``.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    level : float or tuple of float
        ``"imagenet"``: alpha (12.5 to 30, pixels per unit of the smoothed field); ``"cifar"``:
        (alpha, sigma, affine jitter) as fractions of the image's side.
    random : SampleRandom
        One key per image; streams 0 (dx), 1 (dy) and, for ``"cifar"``, 2 (the affine points).
    variant : {"imagenet", "cifar"}

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W) in [0, 1] (bilinear reads of the input).
    """
    height, width = x.shape[-2:]
    if variant == "cifar":
        alpha, sigma, jitter = (float(value) for value in level)
        warped = _affine(x, random, jitter, stream=2)
        return _displace(
            warped,
            random,
            -1.0,
            1.0,
            sigma=(sigma * height, sigma * width),
            alpha=(alpha * height, alpha * width),
            streams=(0, 1),
        )
    reach = 0.005 * height
    return _displace(
        x,
        random,
        -reach,
        reach,
        sigma=(0.01 * height, 0.01 * width),
        alpha=(float(level), float(level)),
        streams=(0, 1),
    )


# Levels, severities 1..5. imagecorruptions: alpha = 250 * (0.05, 0.065, 0.085, 0.1, 0.12).
# make_cifar_c.py: (alpha, sigma, jitter) = IMSIZE * fraction with IMSIZE = 32; the fractions.
CORRUPTIONS: tuple[CommonCorruption, ...] = (
    CommonCorruption(
        name="elastic_transform",
        kind="digital",
        function=elastic_transform,
        levels={
            "imagenet": tuple(250 * f for f in (0.05, 0.065, 0.085, 0.1, 0.12)),
            "cifar": (
                (0.0, 0.0, 0.08),
                (0.05, 0.2, 0.07),
                (0.08, 0.06, 0.06),
                (0.1, 0.04, 0.05),
                (0.1, 0.03, 0.03),
            ),
        },
    ),
)
