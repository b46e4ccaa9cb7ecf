"""Random numbers per sample, counter-based, so that a corrupted image depends only on the seed, the
corruption, the severity, the image's index in its dataset and the image itself: never on the batch
size, on how a set is split into batches or shards, or on the device.

Each image gets a 64-bit key (:func:`sample_keys`); draw ``k`` of stream ``s`` for that image is
SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators") at state
``key + (s * 2**40 + k) * golden``: a counter, hashed. The hash is computed with wrapping int64
arithmetic in torch, so it runs batched on any device and gives the same bits on each; a unit test
compares it with a pure-Python SplitMix64.

Streams separate the draws of one corruption (for example the angle and the noise of motion blur),
so that adding a draw to a corruption never shifts another one's numbers.
"""

from __future__ import annotations

import math
import zlib

import torch

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
STREAM_SHIFT = 40  # up to 2**40 draws per stream and image


def _signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN_S, _M1_S, _M2_S = _signed(GOLDEN), _signed(_M1), _signed(_M2)


def _srl(z: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic on signed integers)."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors, wrapping (the bits of the uint64 result)."""
    z = (z ^ _srl(z, 30)) * _M1_S
    z = (z ^ _srl(z, 27)) * _M2_S
    return z ^ _srl(z, 31)


_BLOCK = 1 << 16  # elements hashed at once on a CPU


def _mix64_(z: torch.Tensor) -> torch.Tensor:
    """:func:`mix64` in place (``z`` is overwritten and returned)."""
    scratch = torch.empty_like(z)
    for shift, multiplier in ((30, _M1_S), (27, _M2_S), (31, None)):
        torch.bitwise_right_shift(z, shift, out=scratch)
        scratch &= (1 << (64 - shift)) - 1
        z ^= scratch
        if multiplier is not None:
            z *= multiplier
    return z


def mix64_python(z: int) -> int:
    """The same finaliser on Python integers (the reference the tests compare with)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def sample_keys(
    seed: int, name: str, severity: int, indices: torch.Tensor, device: torch.device | str
) -> torch.Tensor:
    """(N,) int64: one key per image, from (seed, corruption name, severity, image index)."""
    base = mix64_python(
        (int(seed) * GOLDEN) ^ (zlib.crc32(name.encode()) << 8) ^ (int(severity) << 1)
    )
    counters = indices.to(device=device, dtype=torch.int64) + 1
    return mix64(counters * _GOLDEN_S + _signed(base))


class SampleRandom:
    """Draws for a batch of images, each image's from its own key.

    Parameters
    ----------
    keys : torch.Tensor
        (N,) int64, from :func:`sample_keys`.

    Every method returns a tensor of shape ``(N, *shape)`` on the keys' device; draw ``k`` of an
    image is the same whatever the other images of the batch are.
    """

    def __init__(self, keys: torch.Tensor):
        self.keys = keys
        self.device = keys.device

    def __len__(self) -> int:
        return int(self.keys.numel())

    def subset(self, rows: torch.Tensor) -> SampleRandom:
        """The same draws for a subset of the images (a bool mask or indices into the batch)."""
        return SampleRandom(self.keys[rows])

    def bits(self, shape: tuple[int, ...], stream: int) -> torch.Tensor:
        """(N, *shape) int64: 64 random bits per draw (as signed int64)."""
        count = math.prod(shape)
        counters = torch.arange(count, device=self.device, dtype=torch.int64)
        counters += int(stream) << STREAM_SHIFT
        counters *= _GOLDEN_S
        out = torch.empty(len(self), count, device=self.device, dtype=torch.int64)
        # In place, a block of images at a time: the hash's dozen integer passes then run in
        # cache instead of streaming the whole array through memory each time (4x on a CPU).
        rows = max(1, _BLOCK // max(count, 1)) if self.device.type == "cpu" else len(self)
        for start in range(0, len(self), rows):
            block = out[start : start + rows]
            torch.add(self.keys[start : start + rows, None], counters[None, :], out=block)
            _mix64_(block)
        return out.reshape(len(self), *shape)

    def uniform(
        self,
        shape: tuple[int, ...],
        stream: int,
        low: float = 0.0,
        high: float = 1.0,
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Uniform on the open interval (low, high): 53 random bits, centred on their cell."""
        bits = self.bits(shape, stream)
        bits >>= 11
        bits &= (1 << 53) - 1
        unit = bits.to(torch.float64).add_(0.5).mul_(2.0**-53)  # in place: a third the passes
        if (low, high) != (0.0, 1.0):
            unit.mul_(high - low).add_(low)
        return unit.to(dtype)

    def normal(
        self,
        shape: tuple[int, ...],
        stream: int,
        loc: float = 0.0,
        scale: float = 1.0,
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Normal by Box-Muller from two uniform streams (``stream`` and ``stream + 1``): each
        pair of uniforms gives two independent normals (the cosine one for the first half of the
        draws, the sine one for the second), half the hashing of one normal per pair."""
        count = math.prod(shape)
        pairs = (count + 1) // 2
        radius = self.uniform((pairs,), stream).log_().mul_(-2.0).sqrt_()
        angle = self.uniform((pairs,), stream + 1).mul_(2.0 * math.pi)
        z = torch.cat((torch.cos(angle).mul_(radius), angle.sin_().mul_(radius)), dim=1)
        z = z[:, :count].reshape(len(self), *shape)
        if (loc, scale) != (0.0, 1.0):
            z.mul_(scale).add_(loc)
        return z.to(dtype)

    def integers(self, low: int, high: int, shape: tuple[int, ...], stream: int) -> torch.Tensor:
        """Integers uniform on [low, high) (``numpy.random.randint(low, high)``), int64."""
        if high <= low:
            raise ValueError(f"empty range [{low}, {high})")
        draws = torch.floor(self.uniform(shape, stream) * (high - low)).to(torch.int64)
        return draws.clamp_(max=high - low - 1) + low

    def poisson(self, lam: torch.Tensor, stream: int) -> torch.Tensor:
        """Poisson counts with per-element means ``lam`` (shape (N, ...), >= 0), float64.

        Exact in distribution: inversion by sequential search below a mean of 10 and Hörmann's
        transformed rejection with squeeze (PTRS; "The transformed rejection method for generating
        Poisson random variables", Insurance: Mathematics and Economics 12, 1993) above it, the two
        methods numpy's generator uses. Rejection rounds use fresh streams (``stream + 2 * r``);
        acceptance is above 0.9 per round, so the rounds run out only with probability below
        ``0.1 ** 64`` per element.
        """
        lam = lam.to(torch.float64)
        if lam.shape[0] != len(self):
            raise ValueError("lam must have one row per image")
        shape = tuple(lam.shape[1:])
        result = torch.zeros_like(lam)
        small = lam < 10
        if bool(small.any()):
            u = self.uniform(shape, stream)
            term = torch.exp(-lam)
            cumulative = term.clone()
            count = torch.zeros_like(lam)
            active = small & (u > cumulative)
            k = 0
            while bool(active.any()):
                k += 1
                term = term * lam / k
                cumulative = cumulative + term
                count = count + active.to(count.dtype)
                active = active & (u > cumulative)
                if k > 200:  # mean < 10: P(count > 200) is far below float64 resolution
                    break
            result = torch.where(small, count, result)
        large = ~small
        if bool(large.any()):
            result = torch.where(large, self._ptrs(lam.clamp(min=10.0), shape, stream + 1), result)
        return result

    def _ptrs(self, lam: torch.Tensor, shape: tuple[int, ...], stream: int) -> torch.Tensor:
        slam = torch.sqrt(lam)
        loglam = torch.log(lam)
        b = 0.931 + 2.53 * slam
        a = -0.059 + 0.02483 * b
        invalpha = 1.1239 + 1.1328 / (b - 3.4)
        vr = 0.9277 - 3.6224 / (b - 2)
        result = torch.zeros_like(lam)
        pending = torch.ones_like(lam, dtype=torch.bool)
        for round_ in range(64):
            u = self.uniform(shape, stream + 2 * round_) - 0.5
            v = self.uniform(shape, stream + 2 * round_ + 1)
            us = 0.5 - torch.abs(u)
            k = torch.floor((2 * a / us + b) * u + lam + 0.43)
            squeeze = (us >= 0.07) & (v <= vr)
            valid = (k >= 0) & ~((us < 0.013) & (v > us))
            log_v = torch.log(v) + torch.log(invalpha) - torch.log(a / (us * us) + b)
            log_target = -lam + k * loglam - torch.lgamma(k.clamp(min=0) + 1)
            accept = squeeze | (valid & (log_v <= log_target))
            newly = pending & accept
            result = torch.where(newly, k, result)
            pending = pending & ~accept
            if not bool(pending.any()):
                break
        return result
