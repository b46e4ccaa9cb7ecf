"""Corrupted test sets: generated once per dataset, parameter set, seed, corruption and severity and
cached on disk, or read from the published sets when they are present.

Generated sets live in the cache folder (:func:`safetycheck.io.data.cache_dir`)::

    <cache>/common_corruptions/<dataset>-<content>/v<IMPLEMENTATION_VERSION>/<params>/
        <corruption>-s<severity>-seed<seed>.npy            uint8 (N, C, H, W), the whole test set
        <corruption>-s<severity>-seed<seed>-<digest>.npy   a subset (--safety-samples, a shard)

``<content>`` is a digest of the clean images (:func:`content_digest`), so that a user's file
edited in place, under the same name and shape, never reads another file's corrupted images.

Every image's randomness depends on its index in the test set only (:func:`corrupt`'s
``indices``), so a subset's images are exactly the whole set's; the digest names the subset's
indices. A file is written to a temporary name and renamed into place
(:func:`safetycheck.core.files.atomic_writer`); a file that is unreadable or of the wrong shape is
regenerated with a warning. Only one corrupted set is in memory at a time, built batch by batch
into its uint8 array.

Published sets, used instead of generating when present (the records say which):

* CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich 2019): a folder of ``<corruption>.npy``, uint8
  (5 x N, 32, 32, 3), severities 1 to 5 one after the other, and ``labels.npy`` (5 x N). The
  ``cifar10`` profile looks for ``<data root>/CIFAR-10-C``.
* ImageNet-C's layout: ``<folder>/<corruption>/<severity>/<class>/<image>`` (an ImageFolder per
  corruption and severity, read by :func:`safetycheck.io.formats.load_image_folder`).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from safetycheck.core.errors import DataError
from safetycheck.core.files import atomic_writer
from safetycheck.io.data import DataRoot, cache_dir
from safetycheck.measures.common_corruptions.catalogue import corrupt, get_corruption

IMPLEMENTATION_VERSION = 2
BATCH = 256


@dataclass(frozen=True)
class CorruptedSet:
    """One corruption at one severity of the evaluated test images.

    Attributes
    ----------
    images : torch.Tensor
        uint8 (N, C, H, W): 8-bit images, as stored (a quarter of float32's bytes; the family
        converts a batch at a time, so that one set and one batch are in memory).
    labels : torch.Tensor
        int64 (N,).
    source : str
        ``"generated (seed 0, cifar parameters)"`` or ``"published: <path>"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str


def cache_path(
    root: DataRoot,
    dataset: str,
    name: str,
    severity: int,
    seed: int,
    params: str,
    indices: torch.Tensor | None = None,
    content: str = "",
) -> Path:
    """Where a generated set is cached; ``indices`` (into the test set) name a subset, ``content``
    (:func:`content_digest`) the clean images."""
    get_corruption(name)
    stem = f"{name}-s{severity}-seed{seed}"
    if indices is not None:
        digest = hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest()[:16]
        stem += f"-{digest}"
    images = f"{dataset}-{content}" if content else dataset
    folder = cache_dir(root) / "common_corruptions" / images / f"v{IMPLEMENTATION_VERSION}"
    return folder / params / f"{stem}.npy"


def content_digest(images: torch.Tensor) -> str:
    """16 hex digits of SHA-256 over the images' shape, dtype and bytes."""
    array = images.detach().cpu().contiguous().numpy()
    digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [0, 1] -> uint8, rounding to the nearest level."""
    return (images * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def generate(
    images: torch.Tensor,
    name: str,
    severity: int,
    seed: int,
    params: str,
    indices: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The corrupted images as uint8 (N, C, H, W) on the CPU, made batch by batch on ``device``.

    ``indices`` (N,): each image's index in its test set (default: its position)."""
    count = len(images)
    out = torch.empty(images.shape, dtype=torch.uint8)
    positions = torch.arange(count) if indices is None else indices.to(torch.int64)
    for start in range(0, count, BATCH):
        batch = images[start : start + BATCH].to(device)
        corrupted = corrupt(
            batch,
            name,
            severity,
            seed=seed,
            params=params,
            indices=positions[start : start + BATCH],
        )
        out[start : start + BATCH] = to_uint8(corrupted).cpu()
    return out


def load_generated(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    root: DataRoot,
    dataset: str,
    name: str,
    severity: int,
    seed: int,
    params: str,
    indices: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    content: str | None = None,
) -> CorruptedSet:
    """A generated set of the evaluated test images (``indices`` into the test set, None for the
    whole set), read from the cache or made and cached. ``content``: the images'
    :func:`content_digest`, if the caller has it already (it is computed otherwise)."""
    digest = content_digest(images) if content is None else content
    path = cache_path(root, dataset, name, severity, seed, params, indices, digest)
    expected = tuple(images.shape)
    array = _read_cache(path, expected)
    if array is None:
        array = generate(images, name, severity, seed, params, indices, device).numpy()
        _write_cache(path, array)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return CorruptedSet(tensor, labels, f"generated (seed {seed}, {params} parameters)")


def _read_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        warnings.warn(
            f"corrupted-set cache {path} is unreadable ({exc}); regenerating it.", stacklevel=3
        )
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        warnings.warn(
            f"corrupted-set cache {path} holds {array.dtype} {array.shape}, not uint8 {shape}; "
            "regenerating it.",
            stacklevel=3,
        )
        return None
    return array


def _write_cache(path: Path, array: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path) as stream:
            np.save(stream, array, allow_pickle=False)
    except OSError as exc:
        warnings.warn(
            f"could not cache corrupted images at {path} ({exc}); they will be regenerated next "
            "run.",
            stacklevel=3,
        )


# Published sets ---------------------------------------------------------------------------------


def published_layout(folder: Path) -> str | None:
    """``"cifar_c"`` (a ``labels.npy`` beside ``<corruption>.npy`` files), ``"imagenet_c"``
    (``<corruption>/<severity>/`` folders), or None when ``folder`` holds neither."""
    if not folder.is_dir():
        return None
    if (folder / "labels.npy").is_file():
        return "cifar_c"
    if any((child / "1").is_dir() for child in folder.iterdir() if child.is_dir()):
        return "imagenet_c"
    return None


def has_published(folder: Path, name: str) -> bool:
    """Whether the published set in ``folder`` holds corruption ``name``."""
    layout = published_layout(folder)
    if layout == "cifar_c":
        return (folder / f"{name}.npy").is_file()
    if layout == "imagenet_c":
        return (folder / name).is_dir()
    return False


def load_cifar_c(folder: Path, name: str, severity: int) -> CorruptedSet:
    """Severity ``severity`` of ``<folder>/<name>.npy`` in CIFAR-10-C's format (memory-mapped:
    only that severity's fifth is read).

    Raises
    ------
    DataError
        A missing or unreadable file, a shape that is not (5 x N, H, W, 3) uint8, labels that are
        not 5 x N integers.
    """
    get_corruption(name)
    images_file, labels_file = folder / f"{name}.npy", folder / "labels.npy"
    for file in (images_file, labels_file):
        if not file.is_file():
            raise DataError(
                f"{file} not found: a CIFAR-10-C style folder holds <corruption>.npy and "
                "labels.npy (https://zenodo.org/record/2535967)."
            )
    try:
        images = np.load(images_file, mmap_mode="r", allow_pickle=False)
        labels = np.load(labels_file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{images_file} or {labels_file} is not a readable .npy file ({exc})."
        ) from None
    if (
        images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[-1] not in (1, 3)
        or len(images) % 5
    ):
        raise DataError(
            f"{images_file} holds {images.dtype} {images.shape}; expected uint8 (5 x N, H, W, 3): "
            "the five severities one after the other."
        )
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{labels_file} holds {labels.dtype} {labels.shape}; expected {len(images)} integer "
            "labels, one per image of every severity."
        )
    per = len(images) // 5
    part = slice((severity - 1) * per, severity * per)
    tensor = torch.from_numpy(np.array(images[part])).permute(0, 3, 1, 2).contiguous()
    return CorruptedSet(
        tensor,
        torch.from_numpy(np.array(labels[part]).astype(np.int64)),
        f"published: {images_file}",
    )


def load_imagenet_c(folder: Path, name: str, severity: int) -> CorruptedSet:
    """``<folder>/<name>/<severity>/`` in ImageNet-C's layout (one sub-folder per class)."""
    from safetycheck.io.formats import load_image_folder

    get_corruption(name)
    where = folder / name / str(severity)
    if not where.is_dir():
        raise DataError(
            f"{where} not found: an ImageNet-C style folder holds <corruption>/<severity>/<class>/."
        )
    loaded = load_image_folder(where)
    return CorruptedSet(to_uint8(loaded.images), loaded.labels, f"published: {where}")


def load_published(folder: Path, name: str, severity: int) -> CorruptedSet:
    """The published set in ``folder``, in whichever of the two layouts it is."""
    layout = published_layout(folder)
    if layout == "cifar_c":
        return load_cifar_c(folder, name, severity)
    if layout == "imagenet_c":
        return load_imagenet_c(folder, name, severity)
    raise DataError(
        f"{folder} is neither a CIFAR-10-C style folder (<corruption>.npy, labels.npy) nor an "
        "ImageNet-C style one (<corruption>/<severity>/<class>/)."
    )
