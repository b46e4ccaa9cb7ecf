"""Per-example results: which of the scored images a check got right, stored compactly in the
results JSON so that two runs on the same images can be compared image by image (a paired test,
:mod:`safetycheck.gate.paired`), not only through their two accuracies.

A record's ``per_example`` is ``{"count": N, "correct": "<base64>", "images": "<16 hex>", "seed":
S}``: the N verdicts as a bitmap (``numpy.packbits``, most significant bit first, base64), and
``images``, a digest of which images were scored (the dataset, what was scored and the images'
indices into the test set under the run's seed), so that two runs are paired only where they
scored the very same images in the same order.

A check whose value is not a share of right images (calibration) adds ``"values": {name:
"<base64>"}``: per-image float32 quantities (little-endian), from which its metric and a paired
bootstrap of it are computed (:func:`decode_values`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from safetycheck.core.errors import ConfigError


@dataclass(frozen=True)
class PerExample:
    """``correct``: (N,) bool, one verdict per scored image; ``images``: their digest
    (:func:`images_digest`); ``seed``: the run's seed, recorded for people."""

    correct: torch.Tensor
    images: str
    seed: int = 0
    values: dict[str, torch.Tensor] | None = None  # per-image quantities, (N,) each

    def encode(self) -> dict:
        """The JSON form (the module docstring's)."""
        bits = np.packbits(self.correct.detach().cpu().numpy().astype(bool))
        encoded = {
            "count": int(self.correct.numel()),
            "correct": base64.b64encode(bits.tobytes()).decode("ascii"),
            "images": self.images,
            "seed": int(self.seed),
        }
        if self.values:
            encoded["values"] = {
                name: base64.b64encode(value.detach().cpu().numpy().astype("<f4").tobytes()).decode(
                    "ascii"
                )
                for name, value in self.values.items()
            }
        return encoded


def images_digest(dataset: str, what: str, seed: int, indices: torch.Tensor) -> str:
    """16 hex digits naming a sequence of scored images: the dataset, what was scored (``"test"``,
    ``"attacked"``, ``"corrupted:fog:3"``...), the seed and the images' indices into the test set,
    in order."""
    digest = hashlib.sha256(f"{dataset}|{what}|seed={int(seed)}".encode())
    digest.update(indices.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def decode(data: object, where: str) -> tuple[np.ndarray, str]:
    """``(correct (N,) bool array, images digest)`` from a record's ``per_example``.

    Raises
    ------
    ConfigError
        Naming ``where`` (the file and record) and the field, when the data is not the module
        docstring's shape: a missing or non-integer ``count``, a bitmap that is not base64 or whose
        length does not match ``count``, or padding bits that are set (a damaged file).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: per_example must be an object with count, correct, images.")
    count, encoded, images = data.get("count"), data.get("correct"), data.get("images")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(
            f"{where}: per_example.count must be a non-negative integer; got {count!r}."
        )
    if not isinstance(images, str) or not images:
        raise ConfigError(f"{where}: per_example.images must be the digest of the scored images.")
    if not isinstance(encoded, str):
        raise ConfigError(f"{where}: per_example.correct must be a base64 string.")
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ConfigError(f"{where}: per_example.correct is not valid base64.") from None
    if len(raw) != (count + 7) // 8:
        raise ConfigError(
            f"{where}: per_example.correct holds {len(raw) * 8} bits for a count of {count} (it "
            f"must hold {(count + 7) // 8} bytes); the file is damaged."
        )
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[count:].any():
        raise ConfigError(f"{where}: per_example.correct has bits set past its count of {count}.")
    return bits[:count].astype(bool), images


def decode_values(data: dict, where: str) -> dict[str, np.ndarray]:
    """The per-image quantities of a record's ``per_example`` (``{}`` where it has none), each a
    (count,) float64 array.

    Raises
    ------
    ConfigError
        Naming ``where`` and the field, when ``values`` is not an object of base64 strings of
        ``count`` finite float32 numbers each.
    """
    values = data.get("values")
    if values is None:
        return {}
    count = data.get("count")
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ConfigError(f"{where}: per_example.values must map names to base64 strings.")
    decoded = {}
    for name, text in values.items():
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ConfigError(f"{where}: per_example.values.{name} is not valid base64.") from None
        if not isinstance(count, int) or len(raw) != 4 * count:
            raise ConfigError(
                f"{where}: per_example.values.{name} holds {len(raw) // 4} numbers for a count "
                f"of {count}; the file is damaged."
            )
        array = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        if not np.isfinite(array).all():
            raise ConfigError(f"{where}: per_example.values.{name} has non-finite numbers.")
        decoded[name] = array
    return decoded
