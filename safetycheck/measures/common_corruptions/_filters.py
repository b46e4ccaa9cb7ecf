"""The image primitives the reference corruptions rely on, batched in torch with the reference's
semantics (SciPy's and OpenCV's borders, SciPy's linear zoom, the shift-and-add motion blur).

Every function takes float tensors whose last two dimensions are (H, W) and any leading ones,
and computes in the input's dtype on the input's device.

Border modes use SciPy's names (``scipy.ndimage``): ``"nearest"`` repeats the edge pixel
(``a a | a b c d | d d``; OpenCV's BORDER_REPLICATE), ``"reflect"`` mirrors about the edge
(``b a | a b c d | d c``; BORDER_REFLECT), ``"mirror"`` mirrors about the edge pixel's centre
(``c b | a b c d | c b``; BORDER_REFLECT_101, OpenCV's default), ``"constant"`` pads with zeros.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

MODES = ("nearest", "reflect", "mirror", "constant")


def border_index(size: int, pad: int, mode: str) -> np.ndarray:
    """Source indices (length ``size + 2 * pad``) of a padded axis; -1 marks a zero (constant)."""
    if mode not in MODES:
        raise ValueError(f"unknown border mode {mode!r}; one of {MODES}")
    index = np.arange(-pad, size + pad)
    if mode == "nearest":
        return np.clip(index, 0, size - 1)
    if mode == "constant":
        return np.where((index >= 0) & (index < size), index, -1)
    if size == 1:
        return np.zeros_like(index)
    if mode == "reflect":
        period = 2 * size
        folded = np.mod(index, period)
        return np.where(folded < size, folded, period - 1 - folded)
    period = 2 * size - 2  # mirror
    folded = np.mod(index, period)
    return np.where(folded < size, folded, period - folded)


def pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last two dimensions by the given amounts with border ``mode``."""
    height, width = x.shape[-2:]
    out = x
    for dim, size, before, after in ((-2, height, top, bottom), (-1, width, left, right)):
        if before == 0 and after == 0:
            continue
        reach = max(before, after)
        index = border_index(size, reach, mode)[reach - before : reach + size + after]
        if mode == "constant":
            keep = torch.as_tensor(index >= 0, device=x.device)
            gathered = out.index_select(dim, torch.as_tensor(np.maximum(index, 0), device=x.device))
            shape = [1] * out.dim()
            shape[dim] = keep.numel()
            out = gathered * keep.reshape(shape).to(out.dtype)
        else:
            out = out.index_select(dim, torch.as_tensor(index, device=x.device))
    return out


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """SciPy's ``gaussian_filter1d`` weights: radius ``int(truncate * sigma + 0.5)``, sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    if sigma <= 0:
        return np.array([1.0])
    weights = np.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return weights / weights.sum()


@functools.lru_cache(maxsize=256)
def _filter_matrix(size: int, kernel: tuple[float, ...], mode: str) -> np.ndarray:
    """(size, size) float64: correlation with the centred ``kernel`` along an axis of ``size``
    samples, the border folded in (``out = matrix @ in``)."""
    radius = len(kernel) // 2
    index = border_index(size, radius, mode)
    matrix = np.zeros((size, size))
    for out in range(size):
        for tap, weight in enumerate(kernel):
            source = index[out + tap]
            if source >= 0:
                matrix[out, source] += weight
    return matrix


def separable(
    x: torch.Tensor, rows: np.ndarray, cols: np.ndarray, mode: str = "nearest"
) -> torch.Tensor:
    """Correlate the last two dimensions with the 1-D kernels ``rows`` (along H) and ``cols``
    (along W), centred (odd lengths), with border ``mode``.

    Computed as ``A_rows @ x @ A_cols.T`` with the kernels and borders folded into two small
    matrices: on a CPU several times faster than one-channel convolutions, and the same for an
    image whatever the batch around it."""
    height, width = x.shape[-2:]
    out = x
    if len(rows) > 1:
        matrix = _filter_matrix(height, tuple(float(w) for w in rows), mode)
        out = torch.as_tensor(matrix, dtype=x.dtype, device=x.device) @ out
    if len(cols) > 1:
        matrix = _filter_matrix(width, tuple(float(w) for w in cols), mode)
        out = out @ torch.as_tensor(matrix.T.copy(), dtype=x.dtype, device=x.device)
    return out


def gaussian_filter(
    x: torch.Tensor,
    sigma: float | tuple[float, float],
    mode: str = "nearest",
    truncate: float = 4.0,
) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter`` over the last two dimensions (``skimage.filters.
    gaussian`` on float images, whose default border is ``"nearest"``); ``sigma`` is one value or
    (sigma along H, sigma along W)."""
    sy, sx = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    return separable(x, gaussian_kernel(sy, truncate), gaussian_kernel(sx, truncate), mode)


def filter2d(x: torch.Tensor, kernel: np.ndarray, mode: str = "mirror") -> torch.Tensor:
    """``cv2.filter2D(x, -1, kernel)``: correlation with a 2-D kernel (odd sizes) centred on each
    pixel, OpenCV's default border (BORDER_REFLECT_101, ``"mirror"``)."""
    shape = x.shape
    kh, kw = kernel.shape
    flat = pad(x.reshape(-1, 1, *shape[-2:]), kh // 2, kh // 2, kw // 2, kw // 2, mode)
    weights = torch.as_tensor(kernel, dtype=x.dtype, device=x.device).reshape(1, 1, kh, kw)
    return F.conv2d(flat, weights).reshape(shape)


@functools.lru_cache(maxsize=256)
def _zoom_matrix(size: int, zoom: float, start: int, length: int, keep: int, offset: int):
    """(keep, length) float64: SciPy's order-1 ``zoom`` of ``length`` samples taken from
    ``start``, to ``round(length * zoom)`` samples, then rows ``offset : offset + keep``, as a
    matrix on the original axis of ``size`` samples ((keep, size))."""
    out = int(round(length * zoom))
    if out > 1 and length > 1:
        coordinates = np.arange(out, dtype=np.float64) * (length - 1) / (out - 1)
    else:
        coordinates = np.zeros(out)
    low = np.floor(coordinates).astype(np.int64).clip(0, length - 1)
    high = np.minimum(low + 1, length - 1)
    frac = coordinates - low
    matrix = np.zeros((out, size))
    rows = np.arange(out)
    np.add.at(matrix, (rows, start + low), 1.0 - frac)
    np.add.at(matrix, (rows, start + high), frac)
    return matrix[offset : offset + keep]


def clipped_zoom(x: torch.Tensor, zoom: float, variant: str = "imagenet") -> torch.Tensor:
    """The references' ``clipped_zoom``: a centred crop of 1/zoom of the image magnified by
    ``zoom`` with SciPy's linear ``zoom`` (``order=1``), cut back to (H, W).

    ``variant="imagenet"`` is imagecorruptions' (crop each axis to ``ceil(size / zoom)`` from
    ``(size - crop) // 2``; keep the first H rows and W columns); ``"cifar"`` is
    ``make_cifar_c.py``'s (the same crop; keep the centred H rows and W columns; the reference
    sizes both axes by H, the same on its square images)."""
    axes = []
    for size in x.shape[-2:]:
        crop = int(math.ceil(size / float(zoom)))
        trim = 0 if variant == "imagenet" else (int(round(crop * zoom)) - size) // 2
        axes.append(_zoom_matrix(size, float(zoom), (size - crop) // 2, crop, size, trim))
    rows = torch.as_tensor(axes[0], dtype=x.dtype, device=x.device)
    cols = torch.as_tensor(axes[1], dtype=x.dtype, device=x.device)
    return rows @ x @ cols.T


def motion_kernel(radius: int, sigma: float) -> np.ndarray:
    """The references' 1-D motion-blur weights: a half Gaussian over ``2 * radius + 1`` taps."""
    width = 2 * int(radius) + 1
    weights = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2 * float(sigma) ** 2))
    return weights / weights.sum()


def shift_blur(x: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' ``_motion_blur`` (a port of ImageMagick's MotionBlurImage), batched with
    one angle per image: the sum over taps ``i`` of ``motion_kernel[i]`` times the image read at
    (row + ceil(i sin(angle) - 0.5), col + ceil(i cos(angle) - 0.5)), edges repeated; taps that
    reach past the image end the sum for that image, as in the reference.

    Parameters
    ----------
    x : torch.Tensor
        (N, C, H, W).
    angles : torch.Tensor
        (N,) degrees.
    """
    count, _, height, width = x.shape
    weights = motion_kernel(radius, sigma)
    radians = torch.deg2rad(angles.to(device=x.device, dtype=torch.float64))
    sin, cos = torch.sin(radians), torch.cos(radians)
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    out = torch.zeros_like(x)
    flat = x.reshape(count, x.shape[1], height * width)
    alive = torch.ones(count, dtype=torch.bool, device=x.device)
    for tap, weight in enumerate(weights):
        dy = torch.ceil(tap * sin - 0.5).to(torch.int64)
        dx = torch.ceil(tap * cos - 0.5).to(torch.int64)
        alive = alive & (dy.abs() < height) & (dx.abs() < width)
        if not bool(alive.any()):
            break
        source_rows = (rows[None, :] + dy[:, None]).clamp(0, height - 1)
        source_cols = (cols[None, :] + dx[:, None]).clamp(0, width - 1)
        # One gather on the flattened image: a third of the cost of one 4-D advanced index.
        source = (source_rows[:, :, None] * width + source_cols[:, None, :]).reshape(count, 1, -1)
        shifted = flat.gather(2, source.expand(flat.shape)).reshape(x.shape)
        scale = alive.to(x.dtype).reshape(count, 1, 1, 1) * float(weight)
        out.addcmul_(shifted, scale)
    return out


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) with ITU-R BT.601 weights (OpenCV's COLOR_RGB2GRAY, PIL's
    ``convert("L")`` without its rounding)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * weights.reshape(1, 3, 1, 1)).sum(dim=1, keepdim=True)
