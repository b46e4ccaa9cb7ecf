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

An OOD AUROC record (a ranking of two sets, not a share) has ``{"count": N_in + N_out,
"positives": N_in, "misranked": "<base64>", "images": ..., "seed": S}`` instead of ``correct``:
each image's misrankings against the other set (DeLong's placement values as integers, see
:func:`safetycheck.measures.ood_metrics.misranked_counts`), the N_in in-distribution images first,
as little-endian uint32 compressed with zlib (most are 0 for a good detector). They depend on the
scores only through their order: the file keeps no score (:func:`decode_ranking`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
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


@dataclass(frozen=True)
class PerExampleRanking:
    """An OOD AUROC's per-image results: ``in_misranked`` (N_in,) and ``out_misranked`` (N_out,)
    int counts (:func:`safetycheck.measures.ood_metrics.misranked_counts`); ``images``: the digest
    of both sets' images, in order."""

    in_misranked: np.ndarray
    out_misranked: np.ndarray
    images: str
    seed: int = 0

    def encode(self) -> dict:
        """The JSON form (the module docstring's)."""
        counts = np.concatenate([self.in_misranked, self.out_misranked]).astype("<u4")
        return {
            "count": int(counts.size),
            "positives": int(self.in_misranked.size),
            "misranked": base64.b64encode(zlib.compress(counts.tobytes(), 9)).decode("ascii"),
            "images": self.images,
            "seed": int(self.seed),
        }


def is_ranking(data: object) -> bool:
    """Whether a record's ``per_example`` is an OOD ranking (:class:`PerExampleRanking`)."""
    return isinstance(data, dict) and "misranked" in data


def decode_ranking(data: object, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(in_misranked (N_in,), out_misranked (N_out,), images digest)``, int64, from an OOD
    record's ``per_example``.

    Raises
    ------
    ConfigError
        Naming ``where`` and the field, when ``count`` or ``positives`` are not integers with
        ``0 < positives < count``, ``misranked`` is not base64 zlib data of ``count`` uint32
        numbers, a count exceeds twice the other set's size, or the two sides' sums differ (each
        is twice the pairs ranked the wrong way round): a damaged file.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: per_example must be an object with count, positives, misranked."
        )
    count, positives, images = data.get("count"), data.get("positives"), data.get("images")
    for name, number in (("count", count), ("positives", positives)):
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(f"{where}: per_example.{name} must be an integer; got {number!r}.")
    assert isinstance(count, int) and isinstance(positives, int)
    if not 0 < positives < count:
        raise ConfigError(
            f"{where}: per_example.positives must lie between 0 and count ({count}), "
            f"exclusive; got {positives}."
        )
    if not isinstance(images, str) or not images:
        raise ConfigError(f"{where}: per_example.images must be the digest of the scored images.")
    encoded = data.get("misranked")
    try:
        raw = zlib.decompress(base64.b64decode(str(encoded).encode("ascii"), validate=True))
    except (binascii.Error, ValueError, UnicodeEncodeError, zlib.error):
        raise ConfigError(
            f"{where}: per_example.misranked is not base64 zlib data; the file is damaged."
        ) from None
    if len(raw) != 4 * count:
        raise ConfigError(
            f"{where}: per_example.misranked holds {len(raw) // 4} numbers for a count of "
            f"{count}; the file is damaged."
        )
    counts = np.frombuffer(raw, dtype="<u4").astype(np.int64)
    inside, outside = counts[:positives], counts[positives:]
    if (
        inside.max() > 2 * outside.size
        or outside.max() > 2 * inside.size
        or inside.sum() != outside.sum()
    ):
        raise ConfigError(
            f"{where}: per_example.misranked is not a ranking of {positives} against "
            f"{count - positives} images (its two sides disagree); the file is damaged."
        )
    return inside, outside, images


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
