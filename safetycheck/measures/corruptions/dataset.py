"""MNIST-C as datasets: generated once and cached on disk, or read from the official static files.

Generated sets live in the cache folder (:func:`safetycheck.io.data.cache_dir`:
``$SAFETYCHECK_CACHE``, else ``<data root>/safetycheck-cache`` when the data root is writable, else
the user cache)::

    <cache>/mnist_c/v<IMPLEMENTATION_VERSION>/<corruption>-seed<seed>.npy

one uint8 array (10000, 28, 28) per corruption and seed, made from the MNIST test set. The
implementation version is part of the path, so a file written by another version of the code is
never read; a file that is unreadable or has the wrong shape or dtype is regenerated. Writers
write a temporary file in the same folder and ``os.replace`` it into place
(:func:`safetycheck.core.files.atomic_writer`), so processes that generate the same file at once
never see a half-written one (they write identical contents).

The official static set (Mu & Gilmer, zenodo.org/record/3237938), unpacked under the root::

    <root>/mnist_c/<corruption>/test_images.npy   uint8 (10000, 28, 28, 1)
    <root>/mnist_c/<corruption>/test_labels.npy   integers 0..9, (10000,)
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from safetycheck.core.errors import ConfigError, DataError
from safetycheck.core.files import atomic_writer
from safetycheck.io.data import DataRoot, LabelledImages, cache_dir, load_split, resolve_data_root
from safetycheck.measures.corruptions._common import to_uint8

SOURCES = ("generated", "official")
TEST_SIZE = 10_000


def _root(root: DataRoot | str | os.PathLike | None) -> DataRoot:
    return root if isinstance(root, DataRoot) else resolve_data_root(root)


def cache_path(
    name: str,
    seed: int = 0,
    root: DataRoot | str | os.PathLike | None = None,
    dataset: str = "mnist",
) -> Path:
    """Where the generated set for (``name``, ``seed``) of ``dataset``'s test split is cached (see
    :func:`safetycheck.io.data.cache_dir`): ``mnist_c/`` for MNIST, ``<dataset>_c/`` otherwise."""
    from safetycheck.measures.corruptions.catalogue import IMPLEMENTATION_VERSION, get_corruption

    get_corruption(name)
    folder = "mnist_c" if dataset == "mnist" else f"{dataset}_c"
    return cache_dir(_root(root)) / folder / f"v{IMPLEMENTATION_VERSION}" / f"{name}-seed{seed}.npy"


def generate_corrupted(
    name: str,
    seed: int = 0,
    root: DataRoot | str | os.PathLike | None = None,
    download: bool = False,
    dataset: str = "mnist",
) -> np.ndarray:
    """The corrupted test set of ``dataset`` (MNIST, or another 28x28 grayscale set of 10000
    test images: Fashion-MNIST, KMNIST) as uint8 (10000, 28, 28): read from the cache, else made
    and cached."""
    from safetycheck.measures.corruptions.catalogue import corrupt

    path = cache_path(name, seed, root, dataset)
    cached = _read_cache(path)
    if cached is not None:
        return cached
    clean = load_split(dataset, "test", root=_root(root), download=download)
    array = to_uint8(corrupt(clean.images, name, seed=seed))[:, 0].numpy()
    _write_atomically(path, array)
    return array


def _read_cache(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # truncated or not an .npy file: regenerate rather than trust it
    if array.dtype != np.uint8 or array.shape != (TEST_SIZE, 28, 28):
        return None
    return array


def _write_atomically(path: Path, array: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path) as stream:
            np.save(stream, array, allow_pickle=False)
    except OSError as exc:
        warnings.warn(
            f"could not cache MNIST-C images at {path} ({exc}); they will be regenerated next run.",
            stacklevel=3,
        )


def load_official(name: str, root: DataRoot | str | os.PathLike | None = None) -> LabelledImages:
    """One corruption of the official static MNIST-C test set, validated.

    Raises:
        DataError: a file is missing, unreadable, or not of the documented shape, dtype or range.
    """
    from safetycheck.measures.corruptions.catalogue import get_corruption

    get_corruption(name)
    folder = _root(root).path / "mnist_c" / name
    images_file, labels_file = folder / "test_images.npy", folder / "test_labels.npy"
    for file in (images_file, labels_file):
        if not file.is_file():
            raise DataError(
                f"official MNIST-C file {file} not found: expected the static set "
                "(zenodo.org/record/3237938) unpacked as <data "
                "root>/mnist_c/<corruption>/test_images.npy and test_labels.npy; use "
                "source='generated' (--safety-mnist-c=generated) to generate the "
                "corruptions instead."
            )
    images = _load_npy(images_file, "uint8 images of shape (10000, 28, 28, 1)")
    labels = _load_npy(labels_file, "10000 integer labels in 0..9")
    if images.dtype != np.uint8 or images.shape not in (
        (TEST_SIZE, 28, 28, 1),
        (TEST_SIZE, 28, 28),
    ):
        raise DataError(
            f"{images_file} holds {images.dtype} of shape {images.shape}; expected uint8 images of "
            f"shape (10000, 28, 28, 1). Download the file again."
        )
    if labels.shape != (TEST_SIZE,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{labels_file} holds {labels.dtype} of shape {labels.shape}; expected 10000 integer "
            f"labels. Download the file again."
        )
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(
            f"{labels_file} holds labels outside 0..9 ({labels.min()}..{labels.max()}): "
            "it is corrupt."
        )
    tensor = torch.from_numpy(images.reshape(TEST_SIZE, 1, 28, 28).astype(np.float32) / 255.0)
    return LabelledImages(
        images=tensor,
        labels=torch.from_numpy(labels.astype(np.int64)),
        name=f"mnist_c-official-{name}",
    )


def _load_npy(file: Path, expected: str) -> np.ndarray:
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{file} is not a readable .npy file ({exc}); expected {expected}. Download it again."
        ) from None


def load_corrupted(
    name: str,
    source: str = "generated",
    root: DataRoot | str | os.PathLike | None = None,
    seed: int = 0,
    download: bool = False,
    dataset: str = "mnist",
) -> LabelledImages:
    """One corruption of the MNIST test set (or of ``dataset``'s: the MNIST-C corruptions of
    another 28x28 grayscale set): images float32 (10000, 1, 28, 28) in [0, 1], labels int64.

    Args:
        name: one of :data:`safetycheck.measures.corruptions.ALL_NAMES`.
        source: ``"generated"`` (our seeded re-implementation, cached) or ``"official"`` (the static
            MNIST-C files under ``<root>/mnist_c``).
        root: the data root; ``None`` resolves it as :func:`safetycheck.io.data.load_split` does.
        seed: the corruption seed (generated sets only).
        download: let the clean MNIST test set be downloaded if missing (generated sets only).

    Results are shared within the process; do not modify them in place.
    """
    from safetycheck.measures.corruptions._common import unknown_name

    if source not in SOURCES:
        raise unknown_name("MNIST-C source", source, SOURCES)
    if source == "official" and dataset != "mnist":
        raise ConfigError(
            f"the official static MNIST-C set holds MNIST images only; for {dataset} use the "
            "generated corruptions (the default source)."
        )
    return _load_cached(name, source, _root(root), int(seed), download, dataset)


@functools.lru_cache(maxsize=64)
def _load_cached(
    name: str, source: str, root: DataRoot, seed: int, download: bool, dataset: str = "mnist"
) -> LabelledImages:
    if source == "official":
        return load_official(name, root)
    array = generate_corrupted(name, seed, root, download, dataset)
    labels = load_split(dataset, "test", root=root, download=download).labels
    images = torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1)
    prefix = "mnist_c" if dataset == "mnist" else f"{dataset}_c"
    return LabelledImages(images=images, labels=labels, name=f"{prefix}-{name}-seed{seed}")
