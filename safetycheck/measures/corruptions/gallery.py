"""One example image per corruption, as PNG bytes, for reports a person reads."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from safetycheck.core.errors import ConfigError
from safetycheck.core.files import write_atomic
from safetycheck.measures.corruptions._common import to_uint8, validate_images


def gallery(
    images: torch.Tensor,
    seed: int = 0,
    index: int = 0,
    zoom: int = 4,
    names: tuple[str, ...] | None = None,
) -> dict[str, bytes]:
    """``{name: PNG bytes}``: image ``index`` of ``images`` under each corruption, ``identity``
    first.

    Args:
        images: float (N, 1, 28, 28) in [0, 1]; the whole batch is corrupted (so each picture is
            exactly what that image looks like in a corrupted set of this batch and seed), and
            image ``index`` is shown.
        seed: the corruption seed.
        zoom: each pixel becomes a zoom x zoom block (4 gives 112 x 112 pictures).
        names: corruptions to show; default ``identity`` and the 15 MNIST-C corruptions.

    Returns:
        8-bit grayscale PNG files, in the order of ``names``.
    """
    from PIL import Image

    from safetycheck.measures.corruptions.catalogue import ALL_NAMES, corrupt

    images = validate_images(images)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
        raise ConfigError(f"index {index!r} is outside the batch of {len(images)} images.")
    if isinstance(zoom, bool) or not isinstance(zoom, int) or not 1 <= zoom <= 32:
        raise ConfigError(f"zoom must be an integer from 1 to 32; got {zoom!r}.")
    pictures = {}
    for name in names or ALL_NAMES:
        pixels = to_uint8(corrupt(images, name, seed=seed)[index, 0]).numpy()
        # Pillow sets the module-level NEAREST at import time, unseen by its type information;
        # Image.Resampling.NEAREST (the same 0) would need Pillow >= 9.1.
        nearest = Image.NEAREST  # type: ignore[attr-defined]
        picture = Image.fromarray(pixels).resize((28 * zoom, 28 * zoom), nearest)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        pictures[name] = buffer.getvalue()
    return pictures


def write_gallery(
    folder: str | os.PathLike, images: torch.Tensor, seed: int = 0, **options
) -> list[Path]:
    """Write :func:`gallery` as ``<folder>/<name>.png``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, png in gallery(images, seed, **options).items():
        path = folder / f"{name}.png"
        write_atomic(path, png)
        written.append(path)
    return written


def test_set_gallery(
    root=None, seed: int = 0, download: bool = False, batch: int = 16, dataset: str = "mnist"
) -> dict[str, bytes]:
    """:func:`gallery` of the first test image of ``dataset`` (MNIST, or another of the IDX sets),
    corrupted together with the next ``batch - 1`` (as in the reports: the HTML report and the
    study)."""
    from safetycheck.io.data import load_split

    images = load_split(dataset, "test", root=root, download=download).images
    return gallery(images[:batch], seed=seed, index=0)
