"""What every corruption shares: input validation, seeding, 8-bit quantisation, filters, sampling.

The reference generator (google-research/mnist-c, ``corruptions.py``) works on one 8-bit PIL image
at a time with scikit-image, SciPy, OpenCV and ImageMagick. The helpers here re-derive the few
primitives it relies on as batched torch operations with the same semantics:

* :func:`gaussian_blur` is ``scipy.ndimage.gaussian_filter`` (which ``skimage.filters.gaussian``
  wraps): a sampled Gaussian truncated at ``int(4 * sigma + 0.5)`` pixels and normalised to sum 1,
  applied separably, with SciPy's ``'nearest'`` (edge-replicating) or ``'constant'`` (zero) border.
* :func:`bilinear_sample` is ``skimage.transform.warp(order=1, mode='constant', cval=0)``: each
  output pixel reads the input at a real-valued (row, col); neighbours outside the image count as 0.
"""

from __future__ import annotations

import difflib
import hashlib
import math

import torch
import torch.nn.functional as F

from safetycheck.core.errors import ConfigError

IMAGE_SHAPE = (1, 28, 28)
SIDE = 28


def validate_images(images) -> torch.Tensor:
    """Check the corruption contract and return the images as float32 on the 8-bit grid.

    Args:
        images: float tensor (N, 1, 28, 28), values in [0, 1].

    Returns:
        float32 (N, 1, 28, 28) on the CPU, rounded to multiples of 1/255: the reference works on
        8-bit images, so an off-grid input is first quantised the way saving it as a PNG would.
    """
    if not isinstance(images, torch.Tensor):
        raise ConfigError(
            f"images must be a torch tensor of shape (N, 1, 28, 28); got {type(images).__name__}."
        )
    if not images.is_floating_point():
        raise ConfigError(
            f"images must be a float tensor with values in [0, 1]; got dtype {images.dtype} "
            f"(divide 8-bit images by 255 first)."
        )
    if images.dim() != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ConfigError(
            "images must have shape (N, 1, 28, 28) (MNIST-style grayscale); got "
            f"{tuple(images.shape)}."
        )
    if images.numel() == 0:
        return images.detach().to("cpu", torch.float32).clone()
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0.0 or high > 1.0:
        raise ConfigError(
            f"image values must lie in [0, 1]; these span [{low:g}, {high:g}] "
            f"(divide 8-bit images by 255; do not normalise them)."
        )
    return quantise(images.detach().to("cpu", torch.float32))


def quantise(values: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to the nearest multiple of 1/255, as float32 (an 8-bit image)."""
    return torch.round(values.clamp(0.0, 1.0) * 255.0).div_(255.0).to(torch.float32)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) float in [0, 1] -> uint8 with the same rounding as :func:`quantise`."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def generator_for(seed: int, name: str) -> torch.Generator:
    """A torch generator owned by one corruption: its stream depends on (seed, name) only."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}.")
    digest = hashlib.sha256(f"safetycheck/mnist_c/{name}/{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def unknown_name(kind: str, name, valid) -> ConfigError:
    valid = list(valid)
    nearest = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.4)
    hint = f"did you mean {nearest[0]!r}? " if nearest else ""
    return ConfigError(f"unknown {kind} {name!r}; {hint}valid names: {', '.join(valid)}.")


def gaussian_kernel(sigma: float, truncate: float = 4.0, dtype=torch.float64) -> torch.Tensor:
    """SciPy's 1-D Gaussian: exp(-x^2 / (2 sigma^2)) for |x| <= int(truncate*sigma + 0.5), summing
    to 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    return (weights / weights.sum()).to(dtype)


def filter_matrix(weights: torch.Tensor, length: int = SIDE, mode: str = "nearest") -> torch.Tensor:
    """A centred 1-D correlation with ``weights`` over ``length`` samples, as a (length, length)
    matrix.

    ``out = matrix @ signal`` equals ``scipy.ndimage.correlate1d(signal, weights, mode=mode)``:
    the border rule is folded into the matrix (``"nearest"`` repeats the edge sample,
    ``"constant"`` reads zeros, ``"reflect"`` mirrors about the edge: ..., s1, s0 | s0, s1, ...).
    """
    radius = (weights.numel() - 1) // 2
    matrix = torch.zeros(length, length, dtype=weights.dtype)
    for i in range(length):
        for k, weight in enumerate(weights.tolist()):
            j = i + k - radius
            if mode == "constant" and not 0 <= j < length:
                continue
            if mode == "nearest":
                j = min(max(j, 0), length - 1)
            elif mode == "reflect":
                while not 0 <= j < length:
                    j = -j - 1 if j < 0 else 2 * length - j - 1
            matrix[i, j] += weight
    return matrix


def separable_filter(
    images: torch.Tensor, row_matrix: torch.Tensor | None, col_matrix: torch.Tensor | None
) -> torch.Tensor:
    """Apply 1-D filters given as matrices along rows (axis -2) and/or columns (axis -1).

    One batched matrix product per axis: far faster on the CPU than a single-channel conv2d.
    """
    out = images
    if row_matrix is not None:
        out = torch.matmul(row_matrix.to(images.dtype), out)
    if col_matrix is not None:
        out = torch.matmul(out, col_matrix.to(images.dtype).t())
    return out


def gaussian_blur(
    images: torch.Tensor, sigma: float, mode: str = "nearest", axes: tuple[int, ...] = (-2, -1)
) -> torch.Tensor:
    """Gaussian filter of (N, 1, H, W) images along ``axes`` (-2: rows, -1: columns), as
    ``scipy.ndimage.gaussian_filter`` with ``truncate=4`` and border ``mode`` ("nearest" or
    "constant"). Computed in the dtype of ``images``."""
    matrix = filter_matrix(gaussian_kernel(sigma), images.shape[-1], mode)
    return separable_filter(images, matrix if -2 in axes else None, matrix if -1 in axes else None)


def bilinear_sample(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Read (N, 1, H, W) images at real-valued positions with bilinear interpolation.

    ``rows`` and ``cols`` are (H, W) (one map for the whole batch) or (N, H, W): where each output
    pixel reads the input. The four integer neighbours are weighted by distance; a neighbour
    outside the image contributes 0 (skimage's ``mode='constant', cval=0``). Returns
    (N, 1, H, W) in the dtype of ``images``.
    """
    n, _, height, width = images.shape
    # a zero frame two pixels wide: positions further out are clamped into it and read zeros
    padded = F.pad(images, (2, 2, 2, 2)).reshape(n, -1)
    stride = width + 4
    r0 = torch.floor(rows).clamp(-2, height)
    c0 = torch.floor(cols).clamp(-2, width)
    dr, dc = (
        (rows - torch.floor(rows)).to(images.dtype),
        (cols - torch.floor(cols)).to(images.dtype),
    )
    base = ((r0.long() + 2) * stride + (c0.long() + 2)).reshape(*rows.shape[:-2], -1)
    out: torch.Tensor | None = None
    for shift, weight in (
        (0, (1 - dr) * (1 - dc)),
        (1, (1 - dr) * dc),
        (stride, dr * (1 - dc)),
        (stride + 1, dr * dc),
    ):
        index = base + shift
        values = padded[:, index] if index.dim() == 1 else torch.gather(padded, 1, index)
        term = values.reshape(n, height, width) * weight
        out = term if out is None else out.add_(term)
    assert out is not None  # the loop above runs four times
    return out.unsqueeze(1)


def pixel_grid(dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols), each (28, 28): the integer coordinates of every pixel."""
    index = torch.arange(SIDE, dtype=dtype)
    rows, cols = torch.meshgrid(index, index, indexing="ij")
    return rows, cols
