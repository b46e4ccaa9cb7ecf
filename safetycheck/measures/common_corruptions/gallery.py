"""One image under every common corruption at severities 1, 3 and 5, as PNG bytes, for the HTML
report (the common-corruption counterpart of :mod:`safetycheck.measures.corruptions.gallery`)."""

from __future__ import annotations

import io
import math

import torch

from safetycheck.core.errors import ConfigError
from safetycheck.measures.common_corruptions.catalogue import NAMES, corrupt, get_corruption
from safetycheck.measures.common_corruptions.dataset import to_uint8

GALLERY_SEVERITIES = (1, 3, 5)
MIN_PICTURE = 64  # smaller images are enlarged (nearest neighbour) to at least this side
MAX_PICTURE = 256  # larger ones are reduced to at most this side, to keep the report small


def _png(image: torch.Tensor) -> bytes:
    """(C, H, W) float in [0, 1] -> PNG bytes, quantised as the corrupted sets are (uint8), tiny
    images enlarged pixel for pixel, large ones reduced."""
    from PIL import Image

    pixels = to_uint8(image.detach().to(torch.float32).cpu())
    if pixels.shape[0] == 1:
        picture = Image.fromarray(pixels[0].numpy(), mode="L")
    else:
        picture = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    width, height = picture.size
    side = min(width, height)
    if side < MIN_PICTURE:
        zoom = math.ceil(MIN_PICTURE / side)
        # Pillow sets the module-level NEAREST at import time, unseen by its type information.
        nearest = Image.NEAREST  # type: ignore[attr-defined]
        picture = picture.resize((width * zoom, height * zoom), nearest)
    elif max(width, height) > MAX_PICTURE:
        scale = MAX_PICTURE / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        picture = picture.resize(size, Image.BOX)  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def common_gallery(
    image: torch.Tensor, params: str, seed: int = 0, index: int = 0
) -> dict[str, bytes]:
    """``{"clean": PNG, "<name>@<severity>": PNG, ...}``: ``image`` under every common corruption
    (:data:`NAMES` order) at severities 1, 3 and 5.

    Parameters
    ----------
    image : torch.Tensor
        Float (C, H, W) in [0, 1], C = 1 or 3, H, W >= 16: one test image.
    params : {"imagenet", "cifar"}
        The parameter set (the dataset profile's ``corruption_params``).
    seed : int, default=0
        The run's corruption seed.
    index : int, default=0
        The image's index in its test set: its randomness is drawn as in the corrupted sets the
        models were evaluated on (:func:`corrupt`'s ``indices``), so each picture is exactly what
        the models saw for that image.

    Corruptions that cannot run here (frost without its photographs) are left out. Images under
    64 pixels a side are enlarged with nearest-neighbour, over 256 reduced.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ConfigError(f"the gallery takes one image (C, H, W); got {shape}.")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ConfigError(f"index must be a non-negative integer; got {index!r}.")
    batch = image[None]
    indices = torch.tensor([index], dtype=torch.int64)
    pictures = {"clean": _png(image)}
    for name in NAMES:
        if get_corruption(name).unavailable() is not None:
            continue
        for severity in GALLERY_SEVERITIES:
            corrupted = corrupt(batch, name, severity, seed=seed, params=params, indices=indices)
            pictures[f"{name}@{severity}"] = _png(corrupted[0])
    return pictures


def profile_gallery(profile, root=None, seed: int = 0, download: bool = False) -> dict[str, bytes]:
    """:func:`common_gallery` of the first test image of a dataset profile
    (:class:`~safetycheck.io.profiles.DatasetProfile`), with its parameter set."""
    test = profile.load_test(root, download)
    return common_gallery(test.images[0], profile.corruption_params, seed=seed, index=0)
