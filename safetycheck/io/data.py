"""The datasets: MNIST (train and test), Fashion-MNIST and KMNIST, as whole tensors.

Images come back as float32 tensors of shape (N, 1, 28, 28) with values in [0, 1] and labels as
int64 tensors of shape (N,). Each IDX file is read with one ``numpy.frombuffer`` after its header
is checked (as torchvision's dataset classes read them, byte for byte, without importing
torchvision, which costs two seconds in every process and every xdist worker); torchvision is used
only to download. Every split is loaded once per process and then shared.

Where the files live (first one set wins):

1. an explicit root (the plugin's ``--safety-data DIR``);
2. the ``SAFETYCHECK_DATA`` environment variable;
3. the user cache folder, ``$XDG_CACHE_HOME/safetycheck/data`` (``~/.cache/safetycheck/data``).

The root holds torchvision's raw layout, ``<root>/MNIST/raw/t10k-images-idx3-ubyte`` and so on.
Nothing is downloaded unless the caller allows it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from safetycheck.core.errors import DataError

DATA_ENV_VAR = "SAFETYCHECK_DATA"
CACHE_ENV_VAR = "SAFETYCHECK_CACHE"
DOWNLOAD_FLAG = "--safety-download"

IMAGE_SHAPE = (1, 28, 28)
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset in torchvision's raw layout."""

    key: str  # the name users type: "mnist", "fashion_mnist", "kmnist"
    folder: str  # torchvision's class name, which is also its folder under the root
    title: str
    sizes: dict  # split -> number of items


DATASETS: dict[str, DatasetInfo] = {
    info.key: info
    for info in (
        DatasetInfo("mnist", "MNIST", "MNIST", {"train": 60_000, "test": 10_000}),
        DatasetInfo(
            "fashion_mnist", "FashionMNIST", "Fashion-MNIST", {"train": 60_000, "test": 10_000}
        ),
        DatasetInfo("kmnist", "KMNIST", "Kuzushiji-MNIST", {"train": 60_000, "test": 10_000}),
    )
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class LabelledImages:
    """A whole split: ``images`` float32 (N, 1, 28, 28) in [0, 1], ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DataRoot:
    path: Path
    source: str  # where the choice came from, for messages and run metadata


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "safetycheck" / "data"


def cache_dir(root: DataRoot) -> Path:
    """Where derived data (generated MNIST-C sets) is cached: ``$SAFETYCHECK_CACHE``; else
    ``<data root>/safetycheck-cache`` when the data root is writable; else the user cache
    (``~/.cache/safetycheck/cache``), so that a read-only shared data folder is never written."""
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    if _writable(root.path):
        return root.path / "safetycheck-cache"
    return default_cache_root().parent / "cache"


def _writable(folder: Path) -> bool:
    # Write bits as well as access(): a superuser may write anywhere, but a folder shipped without
    # write bits is meant to stay as it is.
    try:
        return bool(folder.stat().st_mode & 0o200) and os.access(folder, os.W_OK)
    except OSError:
        return False


def resolve_data_root(explicit: str | os.PathLike | None = None) -> DataRoot:
    """Pick the data root: ``explicit``, then ``$SAFETYCHECK_DATA``, then the user cache folder."""
    if explicit:
        return DataRoot(Path(explicit).expanduser().resolve(), "--safety-data")
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return DataRoot(Path(from_env).expanduser().resolve(), f"${DATA_ENV_VAR}")
    return DataRoot(default_cache_root(), "user cache folder")


def expected_files(dataset: str) -> list[str]:
    """The four raw file names torchvision needs before it loads either split."""
    _info(dataset)
    return [
        f"{_SPLIT_PREFIX[split]}-{kind}-idx{dims}-ubyte"
        for split in ("train", "test")
        for kind, dims in (("images", 3), ("labels", 1))
    ]


def check_files(dataset: str, root: DataRoot | str | os.PathLike) -> None:
    """Raise :class:`DataError` unless all raw files of ``dataset`` exist under ``root`` and are
    whole.

    Each file's IDX header is read and its size compared with what the header promises, so a
    truncated or corrupt file is reported by name instead of failing later inside numpy.
    """
    info = _info(dataset)
    root = root if isinstance(root, DataRoot) else DataRoot(Path(root), "argument")
    raw = root.path / info.folder / "raw"
    names = expected_files(dataset)
    missing = [name for name in names if not (raw / name).is_file()]
    if missing:
        raise DataError(
            f"{info.title} data not found: expected {', '.join(names)} in {raw} "
            f"(data root {root.path}, from {root.source}); missing {', '.join(missing)}. "
            f"Point --safety-data or ${DATA_ENV_VAR} at a folder holding {info.folder}/raw/, "
            f"or pass {DOWNLOAD_FLAG} to download it with torchvision."
        )
    for name in names:
        _check_idx_file(
            raw / name, expected_items=info.sizes["train" if name.startswith("train") else "test"]
        )


def data_checksums(root: DataRoot | str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every raw file present under ``root`` (``"MNIST/t10k-images-idx3-ubyte"`` ->
    hex digest), for the run metadata: two runs on the same numbers read the same bytes."""
    root = root if isinstance(root, DataRoot) else DataRoot(Path(root), "argument")
    digests = {}
    for info in DATASETS.values():
        for name in expected_files(info.key):
            path = root.path / info.folder / "raw" / name
            if path.is_file():
                digests[f"{info.folder}/{name}"] = _sha256(path)
    return digests


@functools.lru_cache(maxsize=32)
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_idx_file(path: Path, expected_items: int) -> None:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(4)
        if len(header) < 4:
            raise DataError(
                f"{path} is truncated ({size} bytes): not an IDX file. Delete it and "
                "download it again."
            )
        magic = struct.unpack(">i", header)[0]
        if magic not in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC):
            raise DataError(
                f"{path} is not an uncompressed IDX file (magic number {magic:#x}; expected "
                f"{IDX_IMAGES_MAGIC:#x} or {IDX_LABELS_MAGIC:#x}). If it is still gzipped, gunzip "
                "it; otherwise delete it and download it again."
            )
        ndim = 3 if magic == IDX_IMAGES_MAGIC else 1
        dims_bytes = handle.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(
            f"{path} is truncated inside its header ({size} bytes). Delete it and "
            "download it again."
        )
    dims = struct.unpack(f">{ndim}i", dims_bytes)
    payload = 1
    for dim in dims:
        payload *= dim
    expected_size = 4 + 4 * ndim + payload
    if ndim == 3 and tuple(dims[1:]) != IMAGE_SHAPE[1:]:
        raise DataError(
            f"{path} holds images of shape {dims[1:]}, not 28x28: it is not an MNIST-style file."
        )
    if dims[0] != expected_items:
        raise DataError(
            f"{path} holds {dims[0]} items where {expected_items} are expected: it is not the "
            "official file. Replace it with the official one."
        )
    if size != expected_size:
        state = "truncated" if size < expected_size else "longer than its header says"
        raise DataError(
            f"{path} is {state}: {size} bytes where its header promises {expected_size}. "
            f"Delete it and download it again (pass {DOWNLOAD_FLAG})."
        )


def load_split(
    dataset: str,
    split: str,
    root: DataRoot | str | os.PathLike | None = None,
    download: bool = False,
) -> LabelledImages:
    """Load one split of a dataset as whole tensors; cached per process.

    Args:
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"kmnist"``.
        split: ``"train"`` or ``"test"``.
        root: the data root; ``None`` resolves it with :func:`resolve_data_root`.
        download: allow torchvision to download missing files into the root.

    Returns:
        :class:`LabelledImages`; the tensors are shared between callers, so do not modify them
        in place.
    """
    info = _info(dataset)
    if split not in info.sizes:
        raise DataError(
            f"unknown split {split!r} for {info.title}; choose one of {sorted(info.sizes)}."
        )
    if not isinstance(root, DataRoot):
        root = resolve_data_root(root)
    return _load_split_cached(info.key, split, root, download)


@functools.cache
def _load_split_cached(key: str, split: str, root: DataRoot, download: bool) -> LabelledImages:
    info = DATASETS[key]
    raw_present = all(
        (root.path / info.folder / "raw" / name).is_file() for name in expected_files(key)
    )
    if download and not raw_present:
        import torchvision.datasets as tv_datasets

        root.path.mkdir(parents=True, exist_ok=True)
        try:
            getattr(tv_datasets, info.folder)(
                root=str(root.path), train=(split == "train"), download=True
            )
        except Exception as exc:  # network errors come in many types; all mean the same here
            raise DataError(
                f"could not download {info.title} into {root.path / info.folder / 'raw'}: {exc}. "
                f"Check the network, or place the raw files there by hand."
            ) from exc
    check_files(key, root)
    raw = root.path / info.folder / "raw"
    prefix = _SPLIT_PREFIX[split]
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte")
    labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte")
    images = images.to(torch.float32).div_(255.0).unsqueeze(1).contiguous()
    labels = labels.to(torch.int64).contiguous()
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(
            f"{info.title} ({split}) labels fall outside 0..9: the label file is corrupt."
        )
    return LabelledImages(images=images, labels=labels, name=f"{key}-{split}")


def read_idx(path: Path) -> torch.Tensor:
    """The uint8 payload of an uncompressed IDX file whose header :func:`check_files` has checked:
    shape (N, 28, 28) for images, (N,) for labels."""
    import numpy as np

    data = path.read_bytes()
    ndim = data[3]  # the magic number's last byte is the number of dimensions
    dims = struct.unpack(f">{ndim}i", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return torch.from_numpy(array.copy())


def _info(dataset: str) -> DatasetInfo:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}.") from None
