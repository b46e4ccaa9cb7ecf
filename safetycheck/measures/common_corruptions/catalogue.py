"""The 19 common corruptions, their parameter sets, and :func:`corrupt`.

A corruption is one :class:`CommonCorruption`, declared in the module of its kind (:mod:`.noise`,
:mod:`.blur`, :mod:`.weather`, :mod:`.digital`, and :mod:`.warp` for the elastic transform) next
to its five levels for each parameter set.
This module only gathers them in the benchmark's order and checks the input.
"""

from __future__ import annotations

import difflib
import math

import torch

from safetycheck.core.errors import ConfigError
from safetycheck.io.profiles import COMMON_MIN_SIDE
from safetycheck.measures.common_corruptions._filters import rgb_to_gray
from safetycheck.measures.common_corruptions._random import SampleRandom, sample_keys
from safetycheck.measures.common_corruptions._types import CommonCorruption, CorruptionUnavailable

PARAMS = ("imagenet", "cifar")
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = COMMON_MIN_SIDE

# Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and
# Perturbations" (ICLR): the 15 benchmark corruptions in the paper's order, then the 4 held out for
# validation.
BENCHMARK = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
HELD_OUT = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
NAMES = BENCHMARK + HELD_OUT


def _registry() -> dict[str, CommonCorruption]:
    from safetycheck.measures.common_corruptions import blur, digital, noise, warp, weather

    modules = (noise, blur, weather, digital, warp)
    found = {c.name: c for module in modules for c in module.CORRUPTIONS}
    missing = [name for name in NAMES if name not in found]
    if missing or len(found) != len(NAMES):
        raise RuntimeError(f"common corruptions not declared: {missing or sorted(found)}")
    return {name: found[name] for name in NAMES}


_REGISTRY: dict[str, CommonCorruption] | None = None


def registry() -> dict[str, CommonCorruption]:
    """Every corruption by name, in :data:`NAMES` order."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    return _REGISTRY


def get_corruption(name: str) -> CommonCorruption:
    """The corruption called ``name``; an unknown name is a ConfigError naming the nearest."""
    corruptions = registry()
    if not isinstance(name, str) or name not in corruptions:
        nearest = difflib.get_close_matches(str(name), NAMES, n=1, cutoff=0.4)
        hint = f"did you mean {nearest[0]!r}? " if nearest else ""
        raise ConfigError(
            f"unknown corruption {name!r}; {hint}the corruptions are: {', '.join(NAMES)}."
        )
    return corruptions[name]


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor):
        raise ConfigError(
            "images must be a float torch tensor (N, C, H, W) in [0, 1]; got "
            f"{type(images).__name__}."
        )
    if not images.is_floating_point():
        raise ConfigError(
            f"images must be a float tensor with values in [0, 1]; got {images.dtype} "
            "(divide 8-bit images by 255 first)."
        )
    if images.dim() != 4:
        raise ConfigError(
            f"images must have rank 4, (N, C, H, W); got shape {tuple(images.shape)}"
            + (" (add a batch dimension: images[None])" if images.dim() == 3 else "")
            + "."
        )
    channels, height, width = images.shape[1:]
    if channels not in (1, 3):
        raise ConfigError(
            f"images must have 1 (grayscale) or 3 (RGB) channels; got {channels} in shape "
            f"{tuple(images.shape)} (channels first: (N, C, H, W))."
        )
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ConfigError(
            f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels for the common corruptions; "
            f"got {height}x{width}."
        )
    if images.numel():
        low, high = float(images.min()), float(images.max())
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0.0 or high > 1.0:
            raise ConfigError(
                f"image values must lie in [0, 1]; these span [{low:g}, {high:g}] (divide 8-bit "
                "images by 255; corrupt before normalising)."
            )


def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ConfigError(f"severity must be an integer from 1 to 5; got {severity!r}.")
    return severity


def _check_indices(indices, count: int, device) -> torch.Tensor:
    if indices is None:
        return torch.arange(count, device=device)
    indices = torch.as_tensor(indices)
    if indices.shape != (count,) or indices.is_floating_point() or indices.dtype == torch.bool:
        raise ConfigError(
            f"indices must be {count} integers (one per image: its index in the dataset); got "
            f"{indices.dtype} of shape {tuple(indices.shape)}."
        )
    return indices.to(device=device, dtype=torch.int64)


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    seed: int = 0,
    params: str = "imagenet",
    indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Corrupt a batch of images with one of the 19 common corruptions.

    Parameters
    ----------
    images : torch.Tensor
        Float (N, C, H, W), values in [0, 1], C = 1 (grayscale) or 3 (RGB), H, W >= 16; any
        device and float dtype.
    name : str
        One of :data:`NAMES`: the 15 of the benchmark (:data:`BENCHMARK`) or the 4 held out
        (:data:`HELD_OUT`).
    severity : int
        1 to 5.
    seed : int, default=0
        The randomness of the random corruptions.
    params : {"imagenet", "cifar"}, default="imagenet"
        The parameter set: ImageNet-C's as imagecorruptions applies them to images of any size,
        or CIFAR-10-C's (Hendrycks' ``make_cifar_c.py``), made for 32x32 images.
    indices : torch.Tensor, optional
        (N,) integers: each image's index in its dataset. Image ``k``'s randomness comes from
        (seed, name, severity, ``indices[k]``) only (default: ``k``), so that corrupting a set in
        batches, in shards or on another device gives the same images as corrupting it whole.

    Returns
    -------
    torch.Tensor
        The corrupted images: same shape, dtype and device, values in [0, 1].

    Grayscale images are treated as the reference treats them: repeated to three channels,
    corrupted in RGB, then turned back into one channel with ITU-R BT.601 weights (what PIL's
    ``convert("L")`` does to the reference's RGB output).

    Raises
    ------
    ConfigError
        On images that are not a float (N, 1 or 3, >=16, >=16) tensor in [0, 1], an unknown name
        (naming the nearest), a severity outside 1..5, an unknown parameter set or bad indices.
    CorruptionUnavailable
        ``frost`` without its photographs (they ship with the ``imagecorruptions`` package).
    """
    _check_images(images)
    corruption = get_corruption(name)
    severity = _check_severity(severity)
    if params not in PARAMS:
        nearest = difflib.get_close_matches(str(params), PARAMS, n=1, cutoff=0.3)
        hint = f"did you mean {nearest[0]!r}? " if nearest else ""
        raise ConfigError(f"unknown parameter set {params!r}; {hint}use 'imagenet' or 'cifar'.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer; got {seed!r}.")
    reason = corruption.unavailable()
    if reason is not None:
        raise CorruptionUnavailable(f"{name} is unavailable: {reason}.")
    count, channels = images.shape[:2]
    indices = _check_indices(indices, count, images.device)
    if count == 0:
        return images.clone()
    random = SampleRandom(sample_keys(seed, name, severity, indices, images.device))
    rgb = images.detach().to(torch.float32)
    if channels == 1:
        rgb = rgb.expand(-1, 3, -1, -1).contiguous()
    with torch.no_grad():
        out = corruption.function(rgb, corruption.level(severity, params), random, params)
        out = out.to(torch.float32).clamp_(0.0, 1.0)
        if channels == 1:
            out = rgb_to_gray(out).clamp_(0.0, 1.0)
    return out.to(images.dtype)
