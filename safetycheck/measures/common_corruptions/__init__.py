"""The common corruptions of Hendrycks & Dietterich (ICLR 2019, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations") for images of any size and colour: the 15 of
ImageNet-C / CIFAR-10-C and the 4 held out, 5 severities each, as batched, seeded torch code.

    >>> from safetycheck import corrupt
    >>> foggy = corrupt(images, "fog", severity=3, seed=0)          # ImageNet-C parameters
    >>> foggy = corrupt(images, "fog", severity=3, params="cifar")  # CIFAR-10-C parameters

The reference is the ``imagecorruptions`` package (Michaelis et al. 2019, ImageNet-C's code for any
image size) for ``params="imagenet"`` and Hendrycks' ``make_cifar_c.py`` for ``params="cifar"``;
docs/CORRUPTIONS.md lists every measured deviation.
"""

from safetycheck.measures.common_corruptions.catalogue import (
    BENCHMARK,
    HELD_OUT,
    MIN_SIDE,
    NAMES,
    PARAMS,
    SEVERITIES,
    CommonCorruption,
    CorruptionUnavailable,
    corrupt,
    get_corruption,
    registry,
)

__all__ = [
    "BENCHMARK",
    "HELD_OUT",
    "MIN_SIDE",
    "NAMES",
    "PARAMS",
    "SEVERITIES",
    "CommonCorruption",
    "CorruptionUnavailable",
    "corrupt",
    "get_corruption",
    "registry",
]
