"""Loaders of image-dataset files in common formats, one function per format, one contract.

Every loader returns a :class:`LoadedImages` (a :class:`~safetycheck.io.data.LabelledImages` with
the class names, where the pixels came from and whether they were rescaled): ``images`` float32
(N, C, H, W) in [0, 1], contiguous, on the CPU; ``labels`` int64 (N,). A file that cannot be read
as promised raises :class:`~safetycheck.core.errors.DataError` with one sentence that names the
file and says what to change; a wrong argument (an unknown split) raises
:class:`~safetycheck.core.errors.ConfigError`. Nothing is rescaled silently: uint8 pixels are
divided by 255 and the result says so (``scaled_from_uint8``, ``note``); float pixels outside
[0, 1] are refused.

=====================  =========================================================================
:func:`load_cifar10`   CIFAR-10's python version, ``cifar-10-batches-py/`` (restricted unpickler)
:func:`load_svhn`      SVHN cropped digits, ``test_32x32.mat`` / ``train_32x32.mat``
:func:`load_npz`       an ``.npz`` with ``x``, ``y`` and optionally ``classes``
:func:`load_image_folder`  torchvision's ImageFolder layout, decoded in parallel workers
=====================  =========================================================================

The pixel arithmetic is torchvision's ``ToTensor`` (uint8 -> float32, then divided by 255), so the
images equal, bit for bit, what torchvision's own dataset classes give for the same files.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safetycheck.core.errors import ConfigError, DataError
from safetycheck.io.data import LabelledImages

SPLITS = ("train", "test")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
UINT8_NOTE = "uint8 pixels divided by 255"
# Folders smaller than this are decoded in the calling process: starting workers costs more.
PARALLEL_MIN_IMAGES = 1000
MAX_WORKERS = 8
_BATCH = 256


@dataclass(frozen=True)
class LoadedImages(LabelledImages):
    """A :class:`LabelledImages` read from a file, with what the run metadata should record."""

    classes: tuple[str, ...] = ()  # class names by label; empty where the file has none
    source: str = ""  # the file or folder read
    format: str = ""  # "cifar10", "svhn", "npz", "image_folder"
    scaled_from_uint8: bool = False  # True: the file held uint8 pixels, divided by 255 here
    note: str = ""  # one line for the run metadata: what was done to the pixels

    def metadata(self) -> dict[str, Any]:
        """What a run records about its data: format, source, size, classes, rescaling."""
        return {
            "format": self.format,
            "source": self.source,
            "items": len(self),
            "image_shape": list(self.images.shape[1:]),
            "classes": list(self.classes),
            "scaled_from_uint8": self.scaled_from_uint8,
            "note": self.note,
        }


# ---------------------------------------------------------------------------------------------
# Shared validation


def validate_labelled(
    images: torch.Tensor,
    labels: torch.Tensor,
    source: str,
    num_classes: int | None = None,
) -> None:
    """Raise :class:`DataError` unless ``images`` is float32 (N, C, H, W), C in 1..4, finite, in
    [0, 1], on the CPU, and ``labels`` is int64 (N,) with every label in 0..num_classes-1 (only
    ``>= 0`` when ``num_classes`` is None). ``source`` names the data in the message."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DataError(f"{source}: images and labels must be torch tensors.")
    if images.dtype != torch.float32 or images.ndim != 4:
        raise DataError(
            f"{source}: images are {images.dtype} of shape {tuple(images.shape)}; expected "
            "float32 (N, C, H, W)."
        )
    count, channels, height, width = images.shape
    if count == 0 or height == 0 or width == 0:
        raise DataError(f"{source}: holds no images (shape {tuple(images.shape)}).")
    if not 1 <= channels <= 4:
        raise DataError(f"{source}: images have {channels} channels; expected 1 to 4.")
    if images.device.type != "cpu":
        raise DataError(f"{source}: images are on {images.device}; load them on the CPU.")
    low, high = float(images.min()), float(images.max())
    if np.isnan(low) or np.isnan(high):
        raise DataError(f"{source}: images contain NaN pixels; replace them before loading.")
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"{source}: pixels range over [{low:g}, {high:g}], outside [0, 1]; rescale to [0, 1] "
            "yourself; safetycheck does not rescale silently."
        )
    if labels.dtype != torch.int64 or labels.ndim != 1:
        raise DataError(
            f"{source}: labels are {labels.dtype} of shape {tuple(labels.shape)}; expected "
            "int64 (N,)."
        )
    if labels.shape[0] != count:
        raise DataError(f"{source}: {count} images but {labels.shape[0]} labels.")
    smallest, largest = int(labels.min()), int(labels.max())
    if smallest < 0:
        raise DataError(f"{source}: labels must be 0 or more; found {smallest}.")
    if num_classes is not None and largest >= num_classes:
        raise DataError(
            f"{source}: label {largest} is out of range for {num_classes} classes "
            f"(labels must be 0..{num_classes - 1})."
        )


def require_classes_present(labels: torch.Tensor, source: str, minimum: int = 2) -> None:
    """The profile-level rule, separate from :func:`validate_labelled`: at least ``minimum``
    distinct classes must occur, or accuracy and per-class checks mean nothing."""
    present = int(torch.unique(labels).numel())
    if present < minimum:
        raise DataError(
            f"{source}: only {present} class(es) occur in the labels; a safety test needs at "
            f"least {minimum}. Use a split that holds every class."
        )


def _split(split: str, dataset: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r} for {dataset}; choose 'train' or 'test'.")
    return split


def _uint8_to_unit(array: np.ndarray) -> torch.Tensor:
    """uint8 array (any layout) -> contiguous float32 tensor / 255, as ``ToTensor`` computes it;
    one float32 copy, divided in place."""
    floats = np.ascontiguousarray(array, dtype=np.float32)
    return torch.from_numpy(floats).div_(255.0)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python version)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]

    def latin1_encode(text: str, encoding: str = "latin1") -> bytes:
        # Python 3's pickles write bytes as _codecs.encode(text, "latin1"); nothing else.
        if encoding != "latin1" or not isinstance(text, str):
            raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
        return text.encode("latin1")

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


class _Refused(Exception):
    """A pickle asked for a global outside the allow-list (raised before anything runs)."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists, numbers and strings, and nothing else: every global a
    pickle names is looked up in an allow-list, so no other code can run while a file is read."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle(path: Path, what: str) -> Any:
    try:
        with open(path, "rb") as handle:
            return _BatchUnpickler(handle, encoding="bytes").load()
    except _Refused as refused:
        raise DataError(
            f"{path} is not a CIFAR-10 {what}: it asks to load {refused}, which a CIFAR-10 file "
            f"never does, so it was not unpickled. Replace it with the official file from "
            f"{CIFAR10_URL}."
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}.") from None
    except Exception as exc:  # truncated or corrupt: EOFError, UnpicklingError, ValueError, ...
        raise DataError(
            f"{path} is not a readable CIFAR-10 {what} ({type(exc).__name__}: {exc}); it is "
            f"truncated or corrupt. Replace it with the official file from {CIFAR10_URL}."
        ) from None


def _get(entry: dict, key: str) -> Any:
    # encoding="bytes" gives the official (Python 2) files bytes keys; a batch re-saved from
    # Python 3 has str keys.
    return entry[key.encode()] if key.encode() in entry else entry.get(key)


def _cifar10_folder(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if (root / "batches.meta").is_file() or (root / "test_batch").is_file():
        return root
    return root / CIFAR10_FOLDER


def cifar10_classes(root: str | os.PathLike) -> tuple[str, ...]:
    """The class names in ``<root>/cifar-10-batches-py/batches.meta`` (b"label_names")."""
    path = _cifar10_folder(root) / "batches.meta"
    if not path.is_file():
        raise DataError(
            f"CIFAR-10 class names not found: expected {path}. Extract {CIFAR10_URL} into "
            f"{Path(root)} (it holds {CIFAR10_FOLDER}/batches.meta)."
        )
    meta = _unpickle(path, "batches.meta")
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise DataError(f"{path} holds no label_names list: it is not CIFAR-10's batches.meta.")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(
            f"CIFAR-10 batch not found: expected {path}. Download the python version from "
            f"{CIFAR10_URL} and extract it so that {path.parent.name}/ sits in the root you "
            "passed."
        )
    entry = _unpickle(path, "batch")
    if not isinstance(entry, dict):
        raise DataError(
            f"{path} holds a {type(entry).__name__}, not a dict with data and labels: it is "
            "not a CIFAR-10 batch."
        )
    data, labels = _get(entry, "data"), _get(entry, "labels")
    if data is None or labels is None:
        found = ", ".join(sorted(k.decode() if isinstance(k, bytes) else str(k) for k in entry))
        raise DataError(
            f"{path} has no {'data' if data is None else 'labels'} entry (found: {found}): it "
            "is not a CIFAR-10 batch."
        )
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise DataError(
            f"{path}: data is not a uint8 (N, 3072) array "
            f"({getattr(data, 'dtype', type(data).__name__)}, shape {getattr(data, 'shape', '?')})."
        )
    if data.shape[1] != 3 * 32 * 32 or data.shape[0] == 0:
        raise DataError(
            f"{path}: data has shape {data.shape}; CIFAR-10 rows hold 3072 bytes (3x32x32)."
        )
    try:
        label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: labels are not a list of integers.") from None
    if len(label_array) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(label_array)} labels.")
    if label_array.min() < 0 or label_array.max() > 9:
        raise DataError(
            f"{path}: labels fall outside 0..9 ({label_array.min()}..{label_array.max()}); the "
            "file is corrupt or not CIFAR-10."
        )
    return data, label_array


def load_cifar10(root: str | os.PathLike, split: str = "test") -> LoadedImages:
    """CIFAR-10's python version: ``<root>/cifar-10-batches-py/test_batch`` (``split="test"``,
    10,000 images) or ``data_batch_1`` .. ``data_batch_5`` (``"train"``, 50,000). ``root`` may
    also be the ``cifar-10-batches-py`` folder itself.

    Images are (N, 3, 32, 32) RGB; each row of the file's b"data" is the R plane, then G, then B,
    each 32x32 row-major. Class names come from ``batches.meta`` (empty if it is missing).
    """
    split = _split(split, "CIFAR-10")
    folder = _cifar10_folder(root)
    names = ["test_batch"] if split == "test" else [f"data_batch_{k}" for k in range(1, 6)]
    batches = [_read_cifar10_batch(folder / name) for name in names]
    count = sum(len(data) for data, _ in batches)
    if len(batches) == 1:
        images = _uint8_to_unit(batches[0][0]).view(count, 3, 32, 32)
        labels = torch.from_numpy(batches[0][1])
    else:
        images = torch.empty((count, 3, 32, 32), dtype=torch.float32)
        flat = images.view(count, 3072)
        start = 0
        for data, _ in batches:
            flat[start : start + len(data)] = torch.from_numpy(data.astype(np.float32))
            start += len(data)
        images.div_(255.0)
        labels = torch.from_numpy(np.concatenate([lab for _, lab in batches]))
    classes = cifar10_classes(root) if (folder / "batches.meta").is_file() else ()
    source = str(folder / names[0]) if len(names) == 1 else str(folder / "data_batch_[1-5]")
    return LoadedImages(
        images=images,
        labels=labels.contiguous(),
        name=f"cifar10-{split}",
        classes=classes,
        source=source,
        format="cifar10",
        scaled_from_uint8=True,
        note=UINT8_NOTE,
    )


# ---------------------------------------------------------------------------------------------
# SVHN (cropped digits, .mat)


def load_svhn(root: str | os.PathLike, split: str = "test") -> LoadedImages:
    """SVHN's cropped digits: ``<root>/svhn/test_32x32.mat`` or ``<root>/test_32x32.mat``
    (``train_32x32.mat`` for ``split="train"``), MATLAB v5 files with ``X`` uint8 (32, 32, 3, N)
    and ``y`` (N, 1) in 1..10, where 10 stands for the digit 0. Images are (N, 3, 32, 32) RGB;
    labels are the digits 0..9; classes ``("0", ..., "9")``."""
    split = _split(split, "SVHN")
    root = Path(root).expanduser()
    filename = f"{split}_32x32.mat"
    candidates = [root / "svhn" / filename, root / filename]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise DataError(
            f"SVHN {split} file not found: expected {candidates[0]} or {candidates[1]}. Download "
            f"{filename} (format 2, cropped digits) from {SVHN_URL} into one of them."
        )
    try:
        from scipy.io import loadmat

        mat = loadmat(str(path), variable_names=["X", "y"])
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise DataError(
            f"{path} is a MATLAB v7.3 (HDF5) file; save it as v7 or earlier "
            "(save(..., '-v7')), as the official SVHN files are."
        ) from None
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ... on bad files
        raise DataError(
            f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc}); it is "
            f"truncated or corrupt. Replace it with the official {filename} from {SVHN_URL}."
        ) from None
    missing = [key for key in ("X", "y") if key not in mat]
    if missing:
        from scipy.io import whosmat

        found = ", ".join(sorted(entry[0] for entry in whosmat(str(path)))) or "nothing"
        raise DataError(
            f"{path} has no variable {' or '.join(missing)} (found: {found}); an SVHN file holds "
            "X (32, 32, 3, N) and y (N, 1)."
        )
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] == 0:
        raise DataError(
            f"{path}: X is {x.dtype} of shape {x.shape}; SVHN's X is uint8 (32, 32, 3, N)."
        )
    count = x.shape[3]
    if y.size != count or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: y has shape {y.shape} for {count} images; expected ({count}, 1).")
    labels = y.reshape(-1).astype(np.int64)
    if not np.array_equal(labels, y.reshape(-1)):
        raise DataError(f"{path}: y holds non-integer labels; SVHN's y holds 1..10.")
    if labels.min() < 1 or labels.max() > 10:
        raise DataError(
            f"{path}: y holds labels {labels.min()}..{labels.max()}; SVHN's y holds 1..10 "
            "(10 stands for the digit 0)."
        )
    labels[labels == 10] = 0
    images = _uint8_to_unit(x.transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    return LoadedImages(
        images=images,
        labels=torch.from_numpy(labels),
        name=f"svhn-{split}",
        classes=tuple(str(digit) for digit in range(10)),
        source=str(path),
        format="svhn",
        scaled_from_uint8=True,
        note=UINT8_NOTE + "; label 10 read as digit 0",
    )


# ---------------------------------------------------------------------------------------------
# .npz


def _channels_first(x: np.ndarray, path: Path) -> np.ndarray:
    """A view (N, C, H, W) of ``x`` given as (N, H, W), (N, C, H, W) or (N, H, W, C)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataError(
            f"{path}: x has shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C)."
        )
    first, last = 1 <= x.shape[1] <= 4, 1 <= x.shape[-1] <= 4
    if first and not last:
        return x
    if last and not first:
        return x.transpose(0, 3, 1, 2)
    if first and last:
        raise DataError(
            f"{path}: x has shape {x.shape}, which reads as channels-first and as channels-last; "
            "save it as (N, C, H, W) with H and W above 4, or pass 3-D (N, H, W) grayscale."
        )
    raise DataError(
        f"{path}: x has shape {x.shape}: neither axis 1 nor the last axis is a channel count "
        "(1 to 4); save it as (N, C, H, W) or (N, H, W, C)."
    )


def load_npz(path: str | os.PathLike) -> LoadedImages:
    """An ``.npz`` holding ``x`` (uint8 0..255, or float in [0, 1]; (N, H, W), (N, C, H, W) or
    (N, H, W, C), C in 1..4), ``y`` integer labels (N,) and optionally ``classes`` (strings).

    uint8 pixels are divided by 255 (``scaled_from_uint8``); float pixels must already lie in
    [0, 1]. Read with ``allow_pickle=False``: object arrays are refused.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"npz file not found: {path}.")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError, BadZipFile, OSError, ...
        raise DataError(
            f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}); write it with "
            "numpy.savez(path, x=images, y=labels)."
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds one array (a .npy), not named arrays; write it with "
            "numpy.savez(path, x=images, y=labels)."
        )
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise DataError(
                f"{path} has no array {' or '.join(repr(m) for m in missing)} (found: "
                f"{', '.join(archive.files) or 'none'}); save the images as x and the labels as y."
            )
        try:
            x, y = archive["x"], archive["y"]
            classes_array = archive["classes"] if "classes" in archive.files else None
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                raise DataError(
                    f"{path} is truncated or corrupt ({exc}); write it again."
                ) from None
            raise DataError(  # an object array: numpy would have to unpickle it
                f"{path}: {exc}; save classes as numpy.array(list_of_names) (a str array) and x, "
                "y as numeric arrays."
            ) from None
        except Exception as exc:  # a truncated member: zlib / zipfile / EOF errors
            raise DataError(
                f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); write it again."
            ) from None
    return _npz_to_images(path, x, y, classes_array)


def _npz_to_images(
    path: Path, x: np.ndarray, y: np.ndarray, classes_array: np.ndarray | None
) -> LoadedImages:
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"{path}: x is empty (shape {x.shape}); it must hold at least one image.")
    if y.ndim != 1:
        raise DataError(f"{path}: y has shape {y.shape}; expected one label per image, (N,).")
    if len(x) != len(y):
        raise DataError(f"{path}: x holds {len(x)} images but y holds {len(y)} labels.")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: y has dtype {y.dtype}; labels must be integers (save y.astype(np.int64))."
        )
    if y.min() < 0:
        raise DataError(f"{path}: y holds negative labels (down to {y.min()}); labels are 0..K-1.")
    images_view = _channels_first(x, path)
    if images_view.shape[2] == 0 or images_view.shape[3] == 0:
        raise DataError(f"{path}: x has shape {x.shape}: images of zero height or width.")
    if x.dtype == np.uint8:
        images = _uint8_to_unit(images_view)
        scaled = True
    elif np.issubdtype(x.dtype, np.floating):
        low, high = images_view.min(), images_view.max()  # NaN propagates through both
        if np.isnan(low) or np.isnan(high):
            raise DataError(f"{path}: x contains NaN pixels; replace them before loading.")
        if low < 0 or high > 1:
            raise DataError(
                f"{path}: float pixels range over [{low:g}, {high:g}], outside [0, 1]; rescale to "
                "[0, 1] yourself; safetycheck does not rescale silently."
            )
        images = torch.from_numpy(np.ascontiguousarray(images_view, dtype=np.float32))
        scaled = False
    else:
        raise DataError(
            f"{path}: x has dtype {x.dtype}; pixels must be uint8 (0..255) or float in [0, 1] "
            "(convert with x.astype(np.uint8) or x.astype(np.float32) / 255)."
        )
    classes: tuple[str, ...] = ()
    if classes_array is not None:
        if classes_array.ndim != 1 or classes_array.dtype.kind not in "US":
            raise DataError(
                f"{path}: classes is {classes_array.dtype} of shape {classes_array.shape}; save "
                "it as numpy.array(['name0', 'name1', ...]), one string per class."
            )
        classes = tuple(
            c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in classes_array.tolist()
        )
        if int(y.max()) >= len(classes):
            raise DataError(
                f"{path}: y holds label {int(y.max())} but classes names only {len(classes)} "
                f"classes (labels must be 0..{len(classes) - 1})."
            )
    return LoadedImages(
        images=images,
        labels=torch.from_numpy(y.astype(np.int64)),
        name=path.stem,
        classes=classes,
        source=str(path),
        format="npz",
        scaled_from_uint8=scaled,
        note=UINT8_NOTE if scaled else "float pixels in [0, 1], read as float32",
    )


# ---------------------------------------------------------------------------------------------
# ImageFolder

_GRAY_MODES = {"1", "L", "LA", "La"}  # read as L; every other 8-bit mode is read as RGB
_UNSUPPORTED_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _open_image(path: str) -> Any:
    """ImageFolder's loader in the workers: an image in mode L or RGB, or, for a file that cannot
    be read, a string saying why (returned, not raised, so that the message stays one line)."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            if image.mode in _UNSUPPORTED_MODES:
                return f"it is a {image.mode} (16-bit or float) image; save it as 8-bit L or RGB"
            return image.convert("L" if image.mode in _GRAY_MODES else "RGB")
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        return f"it cannot be read as an image ({type(exc).__name__}: {exc})"


def _to_uint8_tensor(image: Any) -> Any:
    """PILToTensor: uint8 (C, H, W). The workers send uint8 (a quarter of float32's bytes); the
    calling process divides by 255, the arithmetic of ``ToTensor``."""
    if isinstance(image, str):
        return image
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(np.array(array.transpose(2, 0, 1), order="C"))  # a writable copy


def _stack_batch(batch: list) -> list:
    """DataLoader's collate in the workers: one (B, C, H, W) uint8 tensor where the batch's images
    share a shape (one shared-memory block to send, not B), else each image as (1, C, H, W) and
    each unreadable file's reason as a string, in order."""
    items = [item for item, _ in batch]
    shapes = {tuple(item.shape) if isinstance(item, torch.Tensor) else None for item in items}
    if len(shapes) == 1 and None not in shapes:
        return [torch.stack(items)]
    return [item if isinstance(item, str) else item[None] for item in items]


def default_workers(count: int) -> int:
    """Worker processes for ``count`` images: 0 (decode in this process) below
    :data:`PARALLEL_MIN_IMAGES` or on one CPU, else one per available CPU, at most
    :data:`MAX_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if count < PARALLEL_MIN_IMAGES or cpus < 2:
        return 0
    return min(cpus, MAX_WORKERS)


def load_image_folder(path: str | os.PathLike, workers: int | None = None) -> LoadedImages:
    """A folder in torchvision's ImageFolder layout, ``<path>/<class name>/<image file>``: labels
    are the class folders' indices in sorted order (``ImageFolder.classes``). Files whose suffix is
    not an image suffix torchvision knows (.png, .jpg, .bmp, ...) are ignored, as ImageFolder does.

    Decoding runs in ``workers`` DataLoader processes (default :func:`default_workers`). Every
    image must have the same height and width. Modes: 1, L and LA are read as grayscale (L),
    every other 8-bit mode as RGB (alpha dropped, palettes expanded); if any image is RGB, the
    grayscale ones are repeated to 3 channels (as PIL converts L to RGB), so C is 3, else 1.
    16-bit and float images are refused.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder} is not a directory.")
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    try:
        dataset = ImageFolder(str(folder), loader=_open_image, transform=_to_uint8_tensor)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(
            f"{folder} is not in ImageFolder layout ({exc}); put each class's images in a "
            "sub-folder named after the class, <folder>/<class>/<image>.png."
        ) from None
    count = len(dataset)
    workers = default_workers(count) if workers is None else int(workers)
    if workers < 0:
        raise ConfigError(f"workers must be 0 or more, not {workers}.")
    loader = DataLoader(
        dataset,
        batch_size=_BATCH,
        shuffle=False,
        num_workers=workers,
        collate_fn=_stack_batch,
        persistent_workers=False,
    )
    chunks: list[torch.Tensor] = []  # uint8 (B, C, H, W), in the dataset's order
    first_size: tuple[int, int] | None = None
    index = 0
    for batch in loader:
        for chunk in batch:
            file = dataset.samples[index][0]
            if isinstance(chunk, str):
                raise DataError(f"{file}: {chunk}.")
            size = (int(chunk.shape[2]), int(chunk.shape[3]))
            if first_size is None:
                first_size = size
            elif size != first_size:
                first = dataset.samples[0][0]
                raise DataError(
                    f"{folder} holds images of different sizes: {first} is "
                    f"{first_size[1]}x{first_size[0]} but {file} is {size[1]}x{size[0]} "
                    "(width x height); resize them all to one size first."
                )
            chunks.append(chunk)
            index += len(chunk)
    assert first_size is not None  # ImageFolder refuses a folder without images
    channels = max(int(chunk.shape[1]) for chunk in chunks)
    images = torch.empty((count, channels, *first_size), dtype=torch.float32)
    start = 0
    for chunk in chunks:
        images[start : start + len(chunk)] = chunk  # 1 channel broadcasts to 3: L -> RGB
        start += len(chunk)
    images.div_(255.0)
    mixed = channels == 3 and any(chunk.shape[1] == 1 for chunk in chunks)
    return LoadedImages(
        images=images,
        labels=torch.tensor(dataset.targets, dtype=torch.int64),
        name=folder.name,
        classes=tuple(dataset.classes),
        source=str(folder),
        format="image_folder",
        scaled_from_uint8=True,
        note=UINT8_NOTE + ("; grayscale images repeated to RGB" if mixed else ""),
    )


__all__: Sequence[str] = (
    "LoadedImages",
    "cifar10_classes",
    "default_workers",
    "load_cifar10",
    "load_image_folder",
    "load_npz",
    "load_svhn",
    "require_classes_present",
    "validate_labelled",
)


def tensors_to_images(value: Any, source: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Test images given in memory, as (images float32 (N, C, H, W) in [0, 1], labels int64 (N,),
    a note on what was done to the pixels): an ``(images, labels)`` pair of tensors or arrays, or
    a ``torch.utils.data.Dataset`` of ``(image, label)`` items (read in order). Images may be
    (N, H, W) (one channel is added) or (N, C, H, W); uint8 pixels are divided by 255 and the note
    says so; float pixels must already lie in [0, 1]."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        images, labels = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
                          for v in value)  # fmt: skip
    elif isinstance(value, torch.utils.data.Dataset) and hasattr(value, "__len__"):
        items = [value[k] for k in range(len(value))]  # type: ignore[arg-type]
        if not items:
            raise DataError(f"{source}: the dataset is empty.")
        try:
            images = torch.stack([torch.as_tensor(item[0]) for item in items])
            labels = torch.as_tensor([int(item[1]) for item in items])
        except (TypeError, ValueError, RuntimeError, IndexError) as error:
            raise DataError(
                f"{source}: items must be (image tensor, integer label) pairs of one size: {error}"
            ) from None
    else:
        raise DataError(
            f"{source}: return an (images, labels) pair of tensors or a torch Dataset of "
            f"(image, label) items, not {type(value).__name__}."
        )
    images, labels = images.detach().cpu(), labels.detach().cpu()
    if images.ndim == 3:
        images = images.unsqueeze(1)
    note = ""
    if images.dtype == torch.uint8:
        images, note = images.float() / 255.0, "uint8 pixels divided by 255"
    elif images.is_floating_point():
        images = images.float()
    else:
        raise DataError(f"{source}: pixels are {images.dtype}; give uint8 or float in [0, 1].")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise DataError(f"{source}: labels are {labels.dtype}; give integer class indices.")
    labels = labels.long().reshape(-1)
    if len(labels) != len(images):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels.")
    validate_labelled(images.contiguous(), labels, source)
    return images.contiguous(), labels, note
