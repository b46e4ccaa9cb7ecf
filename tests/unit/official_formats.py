"""Writers of small dataset files in exactly the official formats, for the loaders' tests and the
loading benchmark (not collected: no ``test_`` prefix).

CIFAR-10's python version was written by Python 2's cPickle: its dict keys and its byte payloads
are Python 2 ``str`` objects (pickle opcodes SHORT_BINSTRING / BINSTRING), and the arrays name
``numpy.core.multiarray._reconstruct``. Python 3's pickle cannot write those opcodes for bytes (it
writes ``_codecs.encode`` calls instead), so :func:`py2_pickle` emits the opcodes itself; the result
reads as ``bytes`` with ``encoding="bytes"`` and as ``str`` with ``encoding="latin1"``
(torchvision's choice), as the official files do.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from safetycheck.io.profiles import CIFAR10_CLASSES


def _py2_str(data: bytes) -> bytes:
    if len(data) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(data)]) + data
    return pickle.BINSTRING + struct.pack("<i", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return pickle.BININT1 + bytes([value])
    return pickle.BININT + struct.pack("<i", value)


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _tuple(items: list[bytes]) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _py2_array(array: np.ndarray) -> bytes:
    """``numpy.ndarray.__reduce__`` as Python 2's numpy 1.x pickled it (C-ordered uint8)."""
    assert array.dtype == np.uint8 and array.flags.c_contiguous
    dtype = (
        _global("numpy", "dtype")
        + _tuple([_py2_str(b"u1"), _int(0), _int(1)])
        + pickle.REDUCE
        + _tuple(
            [_int(3), _py2_str(b"|"), pickle.NONE, pickle.NONE, pickle.NONE]
            + [_int(-1), _int(-1), _int(0)]
        )
        + pickle.BUILD
    )
    return (
        _global("numpy.core.multiarray", "_reconstruct")
        + _tuple([_global("numpy", "ndarray"), _tuple([_int(0)]), _py2_str(b"b")])
        + pickle.REDUCE
        + _tuple(
            [
                _int(1),
                _tuple([_int(dim) for dim in array.shape]),
                dtype,
                pickle.NEWFALSE,
                _py2_str(array.tobytes()),
            ]
        )
        + pickle.BUILD
    )


def _py2_value(value) -> bytes:
    if isinstance(value, bytes):
        return _py2_str(value)
    if isinstance(value, bool):
        return pickle.NEWTRUE if value else pickle.NEWFALSE
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, list):
        return pickle.EMPTY_LIST + pickle.MARK + b"".join(map(_py2_value, value)) + pickle.APPENDS
    if isinstance(value, dict):
        pairs = b"".join(_py2_value(k) + _py2_value(v) for k, v in value.items())
        return pickle.EMPTY_DICT + pickle.MARK + pairs + pickle.SETITEMS
    if isinstance(value, np.ndarray):
        return _py2_array(value)
    raise TypeError(f"cannot write {type(value)} as a Python 2 pickle")


def py2_pickle(value) -> bytes:
    """``cPickle.dumps(value, 2)`` as Python 2 wrote it, for dicts, lists, ints, str (given as
    bytes) and uint8 arrays."""
    return pickle.PROTO + b"\x02" + _py2_value(value) + pickle.STOP


def cifar10_batch(images: np.ndarray, labels, batch_label: bytes) -> dict:
    """An official batch dict: ``images`` uint8 (N, 3, 32, 32) becomes b"data" (N, 3072)."""
    count = len(images)
    return {
        b"batch_label": batch_label,
        b"labels": [int(label) for label in labels],
        b"data": np.ascontiguousarray(images.reshape(count, 3072), dtype=np.uint8),
        b"filenames": [f"image_{k:05d}.png".encode() for k in range(count)],
    }


def write_cifar10(root: Path, images: np.ndarray, labels, split: str = "test") -> Path:
    """Write ``<root>/cifar-10-batches-py/`` with ``batches.meta`` and the batch(es) of ``split``
    (train: the items dealt over data_batch_1..5); returns the batch folder."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        b"num_cases_per_batch": 10000,
        b"label_names": [name.encode() for name in CIFAR10_CLASSES],
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    if split == "test":
        batch = cifar10_batch(images, labels, b"testing batch 1 of 1")
        (folder / "test_batch").write_bytes(py2_pickle(batch))
    else:
        for index, part in enumerate(np.array_split(np.arange(len(images)), 5), start=1):
            batch = cifar10_batch(
                images[part], np.asarray(labels)[part], f"training batch {index} of 5".encode()
            )
            (folder / f"data_batch_{index}").write_bytes(py2_pickle(batch))
    return folder


def write_svhn(path: Path, images_nhwc: np.ndarray, digits) -> Path:
    """Write an SVHN cropped-digits .mat: X uint8 (32, 32, 3, N), y (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    digits = np.asarray(digits)
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    X = np.ascontiguousarray(np.transpose(images_nhwc, (1, 2, 3, 0)), dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"X": X, "y": y})
    return Path(path)


def random_images(count: int, seed: int = 0, shape=(3, 32, 32)) -> np.ndarray:
    """Seeded uint8 images (N, *shape) that use every pixel value: 0 and 255 included."""
    images = np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)
    flat = images.reshape(-1)
    flat[:256] = np.arange(256, dtype=np.uint8)
    return images
