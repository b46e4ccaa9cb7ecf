"""The 15 MNIST-C corruptions and ``identity``: each one's function and reference parameters,
and :func:`corrupt`, which applies one (see :mod:`safetycheck.measures.corruptions`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from safetycheck.core.errors import ConfigError
from safetycheck.measures.corruptions import blur, edges, geometric, noise, overlays
from safetycheck.measures.corruptions._common import (
    generator_for,
    quantise,
    unknown_name,
    validate_images,
)

# Bump whenever any corruption's output for a given (images, seed, severity) changes: cached
# corrupted sets are keyed by it, so older files are regenerated rather than trusted.
IMPLEMENTATION_VERSION = "1"


@dataclass(frozen=True)
class Corruption:
    """One corruption: its function and the reference's parameter list, one entry per severity."""

    name: str
    function: Callable[
        ..., torch.Tensor
    ]  # (float32 images, generator, *params) -> unclipped images
    levels: tuple[tuple, ...]  # parameters per severity, level 1 first
    default_severity: int  # the level the MNIST-C dataset uses
    description: str

    def parameters(self, severity: int | None) -> tuple:
        return self.levels[self.resolve_severity(severity) - 1]

    def resolve_severity(self, severity: int | None) -> int:
        if severity is None:
            return self.default_severity
        if (
            isinstance(severity, bool)
            or not isinstance(severity, int)
            or not 1 <= severity <= len(self.levels)
        ):
            valid = (
                f"an integer from 1 to {len(self.levels)}"
                if len(self.levels) > 1
                else "1 (it has a single level)"
            )
            raise ConfigError(
                f"severity {severity!r} is out of range for {self.name}: use {valid}, or None for "
                f"MNIST-C's level {self.default_severity}."
            )
        return severity


def _single(name, function, description) -> Corruption:
    return Corruption(name, function, ((),), 1, description)


_SPECS = (
    Corruption(
        "shot_noise",
        noise.shot_noise,
        ((60,), (25,), (12,), (5,), (3,)),
        5,
        "Poisson noise, Poisson(x * c) / c with c photons per unit of intensity",
    ),
    Corruption(
        "impulse_noise",
        noise.impulse_noise,
        ((0.03,), (0.06,), (0.09,), (0.17,), (0.27,)),
        4,
        "salt-and-pepper noise on a fraction of the pixels",
    ),
    Corruption(
        "glass_blur",
        blur.glass_blur,
        ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        1,
        "vertical Gaussian blur, local pixel shuffling, vertical Gaussian blur",
    ),
    Corruption(
        "motion_blur",
        blur.motion_blur,
        ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        1,
        "ImageMagick motion blur (radius, sigma) at a random angle in [-45, 45) degrees",
    ),
    Corruption(
        "shear",
        geometric.shear,
        ((0.2,), (0.4,), (0.6,), (0.8,), (1.0,)),
        2,
        "affine shear by the given angle in radians, random direction, about the centre",
    ),
    Corruption(
        "scale",
        geometric.scale,
        ((1 / 0.9,), (1 / 0.8,), (1 / 0.7,), (1 / 0.6,), (1 / 0.5,)),
        3,
        "shrink about the centre (the inverse map scales by the given factor)",
    ),
    Corruption(
        "rotate",
        geometric.rotate,
        ((0.2,), (0.4,), (0.6,), (0.8,), (1.0,)),
        2,
        "rotation by the given angle in radians, random direction, about the centre",
    ),
    Corruption(
        "brightness",
        overlays.brightness,
        ((0.1,), (0.2,), (0.3,), (0.4,), (0.5,)),
        5,
        "add the given amount to the HSV value",
    ),
    Corruption(
        "translate",
        geometric.translate,
        ((1,), (2,), (3,), (4,), (5,)),
        3,
        "shift by the given number of pixels along each axis, random directions",
    ),
    _single("stripe", overlays.stripe, "invert the 7 leftmost and 7 rightmost columns"),
    Corruption(
        "fog",
        overlays.fog,
        ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
        5,
        "add a diamond-square plasma fractal (density, decay), rescale",
    ),
    Corruption(
        "spatter",
        overlays.spatter,
        (
            (0.65, 0.3, 4, 0.69, 0.6),
            (0.65, 0.3, 3, 0.68, 0.6),
            (0.65, 0.3, 2, 0.68, 0.5),
            (0.65, 0.3, 1, 0.65, 1.5),
            (0.67, 0.4, 1, 0.65, 1.5),
        ),
        4,
        "gray mud blobs from thresholded smoothed noise",
    ),
    _single(
        "dotted_line",
        overlays.dotted_line,
        "a dotted line across the image between two random rows",
    ),
    _single("zigzag", overlays.zigzag, "a zigzag line across the image near a random row"),
    _single("canny_edges", edges.canny, "the image replaced by its Canny edge map"),
)

SPECS: dict[str, Corruption] = {spec.name: spec for spec in _SPECS}
IDENTITY = _single("identity", lambda images, generator: images, "the image unchanged")

#: The 15 MNIST-C corruptions, in the reference's order; their mean accuracy is MNIST-C's metric.
CORRUPTIONS: tuple[str, ...] = tuple(SPECS)
ALL_NAMES: tuple[str, ...] = ("identity",) + CORRUPTIONS


def get_corruption(name: str) -> Corruption:
    """The :class:`Corruption` called ``name`` (one of :data:`ALL_NAMES`); :class:`ConfigError`
    otherwise."""
    if name == "identity":
        return IDENTITY
    if not isinstance(name, str) or name not in SPECS:
        raise unknown_name("MNIST-C corruption", name, ALL_NAMES)
    return SPECS[name]


def corrupt(
    images: torch.Tensor, name: str, seed: int = 0, severity: int | None = None
) -> torch.Tensor:
    """Apply one MNIST-C corruption to a batch.

    Args:
        images: float tensor (N, 1, 28, 28) with values in [0, 1] (any device; off-grid values
            are first rounded to 8 bits, as the reference reads 8-bit images).
        name: one of :data:`ALL_NAMES` (``"identity"`` or one of the 15 in :data:`CORRUPTIONS`).
        seed: non-negative integer; with the name it seeds the corruption's own generator.
        severity: 1..5 (1 for the four corruptions without levels); ``None`` for MNIST-C's level.

    Returns:
        float32 (N, 1, 28, 28) on the CPU, clipped to [0, 1] and rounded to multiples of 1/255.
        The same (images, name, seed, severity) always gives the same result.

    Raises:
        ConfigError: unknown name (the nearest valid one is suggested), bad severity or seed,
            or images of the wrong type, shape or range.
    """
    spec = get_corruption(name)
    params = spec.parameters(severity)
    generator = generator_for(seed, name)
    clean = validate_images(images)
    if len(clean) == 0:
        return clean
    out = spec.function(clean, generator, *params)
    return quantise(out)


def corrupt_all(
    images: torch.Tensor, seed: int = 0, names: tuple[str, ...] = CORRUPTIONS
) -> dict[str, torch.Tensor]:
    """``{name: corrupt(images, name, seed)}`` for each name (the 15 MNIST-C corruptions by
    default)."""
    return {name: corrupt(images, name, seed) for name in names}
