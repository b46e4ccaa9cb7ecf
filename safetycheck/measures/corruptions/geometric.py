"""Affine corruptions: shear, scale, rotate and translate.

The reference builds a ``skimage.transform.AffineTransform`` and calls
``skimage.transform.warp(x, inverse_map=aff)``: the matrix maps each *output* pixel (col, row) to
the *input* position it reads, with bilinear interpolation and zeros outside. Old scikit-image
(as used for MNIST-C) builds the matrix from (scale, rotation, shear) as::

    [[sx cos(rot), -sy sin(rot + shear)],
     [sx sin(rot),  sy cos(rot + shear)]]

and for shear, scale and rotate the reference adds the translation that keeps the image centre
(13.5, 13.5) fixed: ``t = 13.5 * (1 - row sums of the matrix)``.
"""

from __future__ import annotations

import math

import torch

from safetycheck.measures.corruptions._common import bilinear_sample, pixel_grid

CENTRE = 13.5


def _random_signs(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) int64 of -1 or +1 with equal probability (``np.random.choice([-1, 1])``)."""
    return torch.randint(0, 2, (n,), generator=generator) * 2 - 1


def affine_map(
    matrix: list[list[float]], translation: tuple[float, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each output pixel reads the input under the inverse map ``matrix`` acting on (col,
    row).

    ``translation`` (col, row) defaults to the one that keeps the centre (13.5, 13.5) fixed.
    Returns (rows, cols), each (28, 28) float64.
    """
    (a1, a2), (b1, b2) = matrix
    if translation is None:
        translation = (CENTRE * (1 - a1 - a2), CENTRE * (1 - b1 - b2))
    rows, cols = pixel_grid(torch.float64)
    return b1 * cols + b2 * rows + translation[1], a1 * cols + a2 * rows + translation[0]


def warp_variants(
    images: torch.Tensor, choice: torch.Tensor, maps: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Warp image i with ``maps[choice[i]]``; each map is shared by its group, so one read serves
    it."""
    out = torch.empty_like(images)
    for k, (rows, cols) in enumerate(maps):
        members = (choice == k).nonzero().squeeze(1)
        if len(members):
            out[members] = bilinear_sample(images[members], rows, cols)
    return out


def shear(images: torch.Tensor, generator: torch.Generator, amount: float) -> torch.Tensor:
    """Shear by ``amount`` radians (the AffineTransform ``shear`` angle) with a random sign."""
    signs = _random_signs(len(images), generator)
    maps = [
        affine_map([[1.0, -math.sin(s * amount)], [0.0, math.cos(s * amount)]]) for s in (-1, 1)
    ]
    return warp_variants(images, (signs + 1) // 2, maps)


def rotate(images: torch.Tensor, generator: torch.Generator, amount: float) -> torch.Tensor:
    """Rotate by ``amount`` radians about the centre, in a random direction."""
    signs = _random_signs(len(images), generator)
    maps = []
    for s in (-1, 1):
        cos, sin = math.cos(s * amount), math.sin(s * amount)
        maps.append(affine_map([[cos, -sin], [sin, cos]]))
    return warp_variants(images, (signs + 1) // 2, maps)


def scale(images: torch.Tensor, generator: torch.Generator, factor: float) -> torch.Tensor:
    """Zoom out about the centre: the inverse map scales coordinates by ``factor`` (> 1 shrinks)."""
    return bilinear_sample(images, *affine_map([[factor, 0.0], [0.0, factor]]))


def translate(images: torch.Tensor, generator: torch.Generator, pixels: int) -> torch.Tensor:
    """Shift by ``pixels`` along each axis, each direction drawn independently; zeros fill in.

    The inverse map reads the input at (col + dx, row + dy), so the digit moves by (-dx, -dy).
    """
    n = len(images)
    dx, dy = _random_signs(n, generator), _random_signs(n, generator)
    identity = [[1.0, 0.0], [0.0, 1.0]]
    maps = [affine_map(identity, (pixels * sx, pixels * sy)) for sx in (-1, 1) for sy in (-1, 1)]
    return warp_variants(images, (dx + 1) // 2 * 2 + (dy + 1) // 2, maps)
