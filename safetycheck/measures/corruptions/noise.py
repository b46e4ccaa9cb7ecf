"""Pixel noise: shot (Poisson) noise and impulse (salt-and-pepper) noise.

Both act on each pixel independently, so they vectorise exactly: one draw per pixel of the batch.
Inputs are float32 (N, 1, 28, 28) in [0, 1]; outputs are unclipped and unquantised (the caller
clips and rounds to 8 bits once).
"""

from __future__ import annotations

import torch


def shot_noise(images: torch.Tensor, generator: torch.Generator, photons: float) -> torch.Tensor:
    """Poisson photon noise: ``Poisson(x * photons) / photons``.

    The reference's ``np.random.poisson(x * c) / c`` with ``c = photons`` (3 at MNIST-C's
    severity 5, so every pixel becomes 0, 1/3, 2/3 or 1 after clipping).
    """
    return torch.poisson(images * photons, generator=generator) / photons


def impulse_noise(
    images: torch.Tensor, generator: torch.Generator, amount: float, salt_vs_pepper: float = 0.5
) -> torch.Tensor:
    """Salt-and-pepper noise as ``skimage.util.random_noise(mode='s&p')`` defines it.

    Each pixel is replaced with probability ``amount``; a replaced pixel becomes 1 (salt) with
    probability ``salt_vs_pepper`` and 0 (pepper) otherwise, both draws independent per pixel.
    """
    flipped = torch.rand(images.shape, generator=generator) < amount
    salted = torch.rand(images.shape, generator=generator) < salt_vs_pepper
    out = images.clone()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out
