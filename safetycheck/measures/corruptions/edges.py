"""Canny edges as ``skimage.feature.canny(image)`` computes them with its defaults (scikit-image
0.14).

The steps, for a float image in [0, 1] (sigma 1, thresholds 0.1 and 0.2 of the float range):

1. smooth: ``gaussian(x, 1, mode='constant') / gaussian(ones, 1, mode='constant')`` (the mask
   "bleed-over" correction at the border);
2. gradients: ``scipy.ndimage.sobel`` along rows (``isobel``) and columns (``jsobel``), border
   'reflect' (which, one pixel deep, repeats the edge pixel); magnitude = hypot;
3. non-maximum suppression with interpolation between the two neighbours on each side of the
   gradient direction, in four sectors, the later sector winning on their shared boundaries, on
   the interior pixels only (the 1-pixel frame and zero-magnitude pixels are never edges);
4. hysteresis: keep the 8-connected groups of pixels at or above 0.1 that hold a pixel at or
   above 0.2.

Vectorised over the batch in float64, as the reference computes in float64.
"""

from __future__ import annotations

import functools

import torch

from safetycheck.measures.corruptions._common import (
    SIDE,
    filter_matrix,
    gaussian_blur,
    separable_filter,
)

LOW_THRESHOLD, HIGH_THRESHOLD = 0.1, 0.2


@functools.cache
def _bleed_over(sigma: float) -> torch.Tensor:
    ones = torch.ones(1, 1, SIDE, SIDE, dtype=torch.float64)
    return gaussian_blur(ones, sigma, mode="constant") + torch.finfo(torch.float64).eps


@functools.cache
def _sobel_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    """(difference, smoothing) as 28x28 matrices with SciPy's 'reflect' border."""
    difference = filter_matrix(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64), SIDE, "reflect")
    smoothing = filter_matrix(torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64), SIDE, "reflect")
    return difference, smoothing


@functools.cache
def _neighbourhood() -> torch.Tensor:
    """Ones on the three central diagonals: ``A @ X @ A`` sums each 3x3 neighbourhood (zero
    outside)."""
    return filter_matrix(torch.ones(3, dtype=torch.float32), SIDE, "constant")


def _shifted(values: torch.Tensor, d_row: int, d_col: int) -> torch.Tensor:
    """``out[r, c] = values[r + d_row, c + d_col]`` on the interior; the 1-pixel frame is left 0
    (only interior pixels are ever compared, so it never matters)."""
    out = torch.zeros_like(values)
    out[..., 1:-1, 1:-1] = values[..., 1 + d_row : SIDE - 1 + d_row, 1 + d_col : SIDE - 1 + d_col]
    return out


def canny(
    images: torch.Tensor, generator: torch.Generator | None = None, sigma: float = 1.0
) -> torch.Tensor:
    """Binary Canny edge maps (N, 1, 28, 28) float32 in {0, 1}; deterministic (``generator``
    unused)."""
    smoothed = gaussian_blur(images.to(torch.float64), sigma, mode="constant") / _bleed_over(sigma)
    difference, smoothing = _sobel_matrices()
    isobel = separable_filter(smoothed, difference, smoothing)
    jsobel = separable_filter(smoothed, smoothing, difference)
    abs_i, abs_j = isobel.abs(), jsobel.abs()
    magnitude = torch.hypot(isobel, jsobel)
    interior = torch.zeros_like(magnitude, dtype=torch.bool)
    interior[..., 1:-1, 1:-1] = True
    candidates = interior & (magnitude > 0)

    safe_i = torch.where(abs_i > 0, abs_i, torch.ones_like(abs_i))
    safe_j = torch.where(abs_j > 0, abs_j, torch.ones_like(abs_j))
    w_ji, w_ij = abs_j / safe_i, abs_i / safe_j
    same_sign = ((isobel >= 0) & (jsobel >= 0)) | ((isobel <= 0) & (jsobel <= 0))
    opposite_sign = ((isobel <= 0) & (jsobel >= 0)) | ((isobel >= 0) & (jsobel <= 0))
    mostly_rows, mostly_cols = abs_i >= abs_j, abs_i <= abs_j
    # (sector, weight, neighbours on the + side (near, diagonal), on the - side (near, diagonal))
    sectors = (
        (same_sign & mostly_rows, w_ji, ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),  # 0-45 degrees
        (same_sign & mostly_cols, w_ij, ((0, 1), (1, 1)), ((0, -1), (-1, -1))),  # 45-90
        (opposite_sign & mostly_cols, w_ij, ((0, 1), (-1, 1)), ((0, -1), (1, -1))),  # 90-135
        (opposite_sign & mostly_rows, w_ji, ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),  # 135-180
    )
    local_maxima = torch.zeros_like(candidates)
    for in_sector, weight, plus, minus in sectors:
        points = candidates & in_sector
        c_plus = (
            _shifted(magnitude, *plus[1]) * weight + _shifted(magnitude, *plus[0]) * (1 - weight)
            <= magnitude
        )
        c_minus = (
            _shifted(magnitude, *minus[1]) * weight + _shifted(magnitude, *minus[0]) * (1 - weight)
            <= magnitude
        )
        local_maxima = torch.where(points, c_plus & c_minus, local_maxima)
    high = local_maxima & (magnitude >= HIGH_THRESHOLD)
    low = local_maxima & (magnitude >= LOW_THRESHOLD)
    return hysteresis(high, low).to(torch.float32)


def hysteresis(seeds: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The 8-connected components of ``allowed`` (bool (N, 1, H, W)) that hold a pixel of ``seeds``.

    Grows the seeds one 3x3 dilation (a product with a tridiagonal matrix on each side) at a time,
    only on the images still changing, until none changes.
    """
    band = _neighbourhood()
    kept = (seeds & allowed).to(torch.float32)
    permitted = allowed.to(torch.float32)
    active = torch.arange(len(kept))
    while len(active):
        current = kept[active]
        grown = ((band @ current @ band) > 0).to(torch.float32) * permitted[active]
        changed = (grown != current).flatten(1).any(dim=1)
        kept[active] = grown
        active = active[changed]
    return kept > 0
