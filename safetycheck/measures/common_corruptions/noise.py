"""The four noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Hendrycks & Dietterich 2019 ("Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR). ``params="imagenet"`` follows ``imagecorruptions`` 1.1.2
(``corruptions.py``), ``params="cifar"`` Hendrycks' ``make_cifar_c.py``; the two differ only in
their levels. Every draw is independent per element (image, channel, row, column), so the
reference's (H, W, 3) layout and our (3, H, W) one give the same distribution; the draws come from
:class:`~safetycheck.measures.common_corruptions._random.SampleRandom`, one key per image, so an
image's noise does not depend on its batch.

All functions take float32 (N, 3, H, W) in [0, 1] and return float32 (N, 3, H, W), not clipped
(:func:`~safetycheck.measures.common_corruptions.catalogue.corrupt` clips to [0, 1], as the
reference's ``np.clip(..., 0, 1)`` does).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from safetycheck.measures.common_corruptions._random import (
    GOLDEN,
    MASK64,
    STREAM_SHIFT,
    SampleRandom,
    mix64,
)
from safetycheck.measures.common_corruptions._types import CommonCorruption

# The Poisson sampler uses many streams from its first one upward (one per rejection round), so it
# gets a stream far from 0 in case a draw is ever added before it.
_POISSON_STREAM = 100
# On the CPU a corruption runs on about this many elements at a time: the counter-based draws and
# the float64 arithmetic around them are some 50 passes over memory, faster on arrays that stay in
# the cache (one thread, 100 images of 224x224: Gaussian noise 2.9 s at once, 0.80 s in chunks of
# 2**20, 0.66 s of 2**18; shot noise 5.9, 3.1, 2.1 s). Not smaller: every chunk is ~50 parallel
# regions, and where the CPUs are shared each region can wait a time slice for a descheduled
# thread (measured: 2**18 on 2 busy shared cores, 100x slower at times). The output does not
# depend on the chunks: each image's draws come from its own key.
CHUNK_ELEMENTS = 1 << 20

Function = Callable[[torch.Tensor, Any, SampleRandom, str], torch.Tensor]


def chunked(function: Function) -> Function:
    """``function(x, level, random, variant)`` run on sub-batches of about CHUNK_ELEMENTS
    elements on the CPU (whole batches elsewhere: a GPU wants large launches), concatenated."""

    @functools.wraps(function)
    def run(x: torch.Tensor, level: Any, random: SampleRandom, variant: str) -> torch.Tensor:
        count = len(x)
        step = max(1, CHUNK_ELEMENTS // max(1, x[0].numel())) if count else 1
        if x.device.type != "cpu" or step >= count:
            return function(x, level, random, variant)
        parts = []
        for start in range(0, count, step):
            rows = torch.arange(start, min(start + step, count), device=random.device)
            parts.append(function(x[start : start + step], level, random.subset(rows), variant))
        return torch.cat(parts)

    return run


_GOLDEN_SIGNED = GOLDEN - (1 << 64)  # the int64 with GOLDEN's bits
_LOW_53 = (1 << 53) - 1


def _counters(random: SampleRandom, rows: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """The hash inputs of draw ``draws`` of images ``rows`` in stream 0 (int64, wrapping);
    stream s adds a constant (:func:`_uniform_at`)."""
    return random.keys[rows] + draws * _GOLDEN_SIGNED


def _uniform_at(counters: torch.Tensor, stream: int) -> torch.Tensor:
    """``random.uniform(shape, stream).flatten(1)[rows, draws]`` for ``counters =
    _counters(random, rows, draws)``, without drawing the rest: SampleRandom's counter-based
    uniforms (the same bits), hashed only where they are needed."""
    offset = ((int(stream) << STREAM_SHIFT) * GOLDEN) & MASK64  # (stream << 40) * golden, wrapped
    offset -= (1 << 64) if offset >> 63 else 0
    bits = (mix64(counters + offset) >> 11) & _LOW_53  # the top 53 bits, as uniform() takes them
    return (bits.to(torch.float64) + 0.5) * 2.0**-53


def poisson(random: SampleRandom, lam: torch.Tensor, stream: int) -> torch.Tensor:
    """``random.poisson(lam, stream)``, the same counts, computed only where still needed.

    :meth:`SampleRandom.poisson` (inversion below a mean of 10, Hörmann's PTRS rejection above,
    numpy's two methods) runs every inversion step and every rejection round on the whole batch,
    although after the first round only a tenth of the elements are pending (4.4 s of one CPU
    thread for 200 images of 64x64 at rate 60). This runs each step on the pending elements only
    (0.5 s), drawing their
    uniforms at the same counters of the same streams, with the same arithmetic, so the counts
    equal SampleRandom's (a unit test checks it) at a fraction of the cost.

    Parameters
    ----------
    random : SampleRandom
        One key per image.
    lam : torch.Tensor
        (N, ...) float64 means, >= 0.
    stream : int
        The first stream; inversion uses ``stream``, rejection round r ``stream + 1 + 2 r`` and
        ``stream + 2 + 2 r``.

    Returns
    -------
    torch.Tensor
        float64 counts, the shape of ``lam``.
    """
    shape = lam.shape
    flat = lam.to(torch.float64).reshape(shape[0], -1)
    result = torch.zeros_like(flat)
    small = flat < 10

    rows, draws = torch.nonzero(small, as_tuple=True)
    if rows.numel():
        u = _uniform_at(_counters(random, rows, draws), stream)
        result[rows, draws] = _search(u, flat[rows, draws])

    rows, draws = torch.nonzero(~small, as_tuple=True)
    if rows.numel():
        counters = _counters(random, rows, draws)
        result[rows, draws] = _ptrs(flat[rows, draws], counters, stream + 1)
    return result.reshape(shape)


def _search(u: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Poisson inversion by sequential search, SampleRandom.poisson's for means below 10: the
    count is the first k with ``u <= P(X <= k)``, the cumulative probabilities summed term by
    term in the same order. Elements drop out as they are found; the arrays are compacted once
    three quarters of them are done (compacting at every step costs more than it saves).

    u, mean : (M,) float64. Returns (M,) float64 counts.
    """
    count = torch.zeros_like(mean)
    index = torch.arange(mean.numel(), device=mean.device)  # the working arrays' positions
    term = torch.exp(-mean)
    cumulative = term.clone()
    tally = torch.zeros_like(mean)
    active = u > cumulative
    k = 0
    while k <= 200:  # mean < 10: P(X > 200) is below float64's resolution
        alive = int(active.sum())
        if alive == 0:
            break
        if 4 * alive < active.numel():
            count.index_add_(0, index, tally)
            keep = torch.nonzero(active, as_tuple=True)[0]
            index, u, mean = index[keep], u[keep], mean[keep]
            term, cumulative = term[keep], cumulative[keep]
            tally = torch.zeros_like(mean)
            active = torch.ones_like(u, dtype=torch.bool)
        k += 1
        term = term * mean / k
        cumulative = cumulative + term
        tally += active
        active &= u > cumulative
    return count.index_add_(0, index, tally)


def _ptrs(lam: torch.Tensor, counters: torch.Tensor, stream: int) -> torch.Tensor:
    """Hörmann's PTRS for means >= 10 (1-D, at the draws ``counters`` of :func:`_counters`), each
    round on the pending elements only; SampleRandom._ptrs's constants, acceptance test and
    arithmetic (the per-element constants computed once instead of once per round)."""
    slam = torch.sqrt(lam)
    loglam = torch.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    two_a, log_invalpha = 2 * a, torch.log(invalpha)
    result = torch.zeros_like(lam)
    pending = torch.arange(lam.numel(), device=lam.device)
    for round_ in range(64):  # acceptance > 0.9 per round: 64 rounds fail with p < 0.1**64
        u = _uniform_at(counters, stream + 2 * round_) - 0.5
        v = _uniform_at(counters, stream + 2 * round_ + 1)
        us = 0.5 - torch.abs(u)
        k = torch.floor((two_a / us + b) * u + lam + 0.43)
        squeeze = (us >= 0.07) & (v <= vr)
        valid = (k >= 0) & ~((us < 0.013) & (v > us))
        log_v = torch.log(v) + log_invalpha - torch.log(a / (us * us) + b)
        log_target = -lam + k * loglam - torch.lgamma(k.clamp(min=0) + 1)
        accept = squeeze | (valid & (log_v <= log_target))
        result[pending[accept]] = k[accept]
        keep = torch.nonzero(~accept, as_tuple=True)[0]
        if not keep.numel():
            break
        pending, counters, lam, loglam, a, two_a, b, log_invalpha, vr = (
            t[keep] for t in (pending, counters, lam, loglam, a, two_a, b, log_invalpha, vr)
        )
    return result


@chunked
def gaussian_noise(
    x: torch.Tensor, scale: float, random: SampleRandom, variant: str
) -> torch.Tensor:
    """``x + N(0, scale**2)``, independently per element.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    scale : float
        The noise's standard deviation in [0, 1] units (imagecorruptions: 0.08 to 0.38;
        make_cifar_c.py: 0.04 to 0.10).
    random : SampleRandom
        One key per image; stream 0 (and 1, Box-Muller's second uniform).
    variant : str
        Unused: both parameter sets use the same formula.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W), not clipped.
    """
    noise = random.normal(tuple(x.shape[1:]), stream=0, scale=float(scale), dtype=torch.float64)
    # The reference adds in float64 (``np.array(x) / 255.``); so do we, then return float32.
    return (x.to(torch.float64) + noise).to(torch.float32)


@chunked
def shot_noise(x: torch.Tensor, rate: float, random: SampleRandom, variant: str) -> torch.Tensor:
    """``Poisson(x * rate) / rate``, independently per element: photon noise with ``rate``
    photons at full intensity, so a pixel of value v keeps its mean v and gets variance v / rate.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    rate : float
        imagecorruptions: 60 to 3; make_cifar_c.py: 500 to 50 (lower is noisier).
    random : SampleRandom
        One key per image; streams from 100 upward (exact Poisson sampling, inversion below a mean
        of 10 and rejection above, as numpy's ``np.random.poisson``).
    variant : str
        Unused: both parameter sets use the same formula.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W), not clipped (counts above ``rate`` exceed 1).
    """
    rate = float(rate)
    levels = x * LEVELS
    codes = levels.round()
    on_grid = (levels - codes).abs_().flatten(1).amax(dim=1) <= _GRID_TOLERANCE
    if bool(on_grid.all()):
        counts = _poisson_by_table(random, codes, rate, _POISSON_STREAM)
    else:
        counts = torch.empty_like(x)
        rows = torch.nonzero(on_grid, as_tuple=True)[0]
        if rows.numel():
            table = _poisson_by_table(random.subset(rows), codes[rows], rate, _POISSON_STREAM)
            counts[rows] = table
        rows = torch.nonzero(~on_grid, as_tuple=True)[0]
        exact = poisson(random.subset(rows), x[rows].to(torch.float64) * rate, _POISSON_STREAM)
        counts[rows] = exact.to(counts.dtype)
    return counts.div_(rate)


# An image whose every value lies within this many steps of the 8-bit grid takes shot noise's
# table path (float32's k / 255, times 255, is off by a few 1e-5 steps), every other image
# the rejection sampler; the two give the same distribution.
LEVELS = 255
_GRID_TOLERANCE = 1e-3


_GUIDE_BINS = 1024  # guide-table cells per mean: about one in 20 draws takes a second step


@functools.lru_cache(maxsize=16)
def _poisson_tables(rate: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The Poisson CDFs of the means ``k / 255 * rate``, k = 0..255, and their guide tables.

    Returns ``(cdf, guide, length)``: ``cdf`` (256 * length,) float64, row k the CDF of mean
    ``k / 255 * rate`` at counts 0..length-1, running to ``rate + 12 sqrt(rate) + 20`` (past which
    every row's mass is below 1e-30) and ending in exactly 1, so that every uniform finds a count
    inside its row; ``guide`` (256 * _GUIDE_BINS,) int16, cell j of row k the first count whose
    CDF reaches ``j / _GUIDE_BINS`` (Chen & Asau 1974, "On generating random variates from an
    empirical distribution", AIIE Transactions 6).
    """
    means = torch.arange(LEVELS + 1, dtype=torch.float64) / LEVELS * rate
    length = int(math.ceil(rate + 12 * math.sqrt(rate) + 20)) + 1
    counts = torch.arange(length, dtype=torch.float64)
    log_pmf = torch.xlogy(counts, means[:, None]) - means[:, None] - torch.lgamma(counts + 1)
    cdf = log_pmf.exp().cumsum(dim=1).clamp_(max=1.0)
    cdf[:, -1] = 1.0
    cells = torch.arange(_GUIDE_BINS, dtype=torch.float64) / _GUIDE_BINS
    guide = torch.searchsorted(cdf, cells.expand(LEVELS + 1, -1).contiguous())
    guide = guide.to(torch.int16)  # counts below 2**15; a quarter of the memory to look up
    return cdf.flatten().to(device), guide.flatten().to(device), length


def _poisson_by_table(
    random: SampleRandom, codes: torch.Tensor, rate: float, stream: int
) -> torch.Tensor:
    """Poisson counts of means ``codes / 255 * rate`` (codes: integers 0..255, float) by
    inversion: the count is the first k with ``u <= P(X <= k)``, one uniform per element, looked
    up in the precomputed CDF of the element's mean from the guide table's start
    (:func:`_poisson_tables`; the search steps up from there on the few draws that need it).

    Exact in distribution (to float64's resolution of the CDF), and several times faster than
    rejection sampling: an 8-bit image has at most 256 distinct means, so their CDFs are computed
    once per rate, not per element.

    Returns the counts in ``codes``' dtype and shape.
    """
    cdf, guide, length = _poisson_tables(rate, codes.device)
    u = random.uniform(tuple(codes.shape[1:]), stream, dtype=torch.float64).flatten()
    rows = codes.flatten().to(torch.int64)
    cell = (u * _GUIDE_BINS).to(torch.int64)
    cell += rows * _GUIDE_BINS
    count = guide.index_select(0, cell).to(torch.int64)  # index_select: 4x plain indexing
    base = rows.mul_(length)
    pending = torch.nonzero(cdf.index_select(0, base + count) < u, as_tuple=True)[0]
    while pending.numel():  # ends: each row's CDF ends in 1 > u
        count[pending] += 1
        at = base[pending] + count[pending]
        pending = pending[cdf.index_select(0, at) < u[pending]]
    return count.reshape(codes.shape).to(codes.dtype)


@chunked
def impulse_noise(
    x: torch.Tensor, amount: float, random: SampleRandom, variant: str
) -> torch.Tensor:
    """Salt and pepper noise, ``skimage.util.random_noise(x, mode="s&p", amount=amount)``: each
    element (channel, row, column) independently is replaced with probability ``amount``, by 1
    (salt) or 0 (pepper) with equal odds.

    scikit-image draws ``flipped = rng.random(shape) <= amount`` and, independently,
    ``salted = rng.random(shape) <= 0.5`` over the whole (H, W, 3) array, so the channels of a pixel
    flip independently and coloured specks appear; we draw the same two Bernoulli fields.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    amount : float
        The fraction of elements replaced (imagecorruptions: 0.03 to 0.27; make_cifar_c.py: 0.01
        to 0.07).
    random : SampleRandom
        One key per image; stream 0 (which elements flip) and stream 1 (salt or pepper).
    variant : str
        Unused: both parameter sets use the same formula.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    """
    shape = tuple(x.shape[1:])
    flipped = random.uniform(shape, stream=0, dtype=torch.float64) <= float(amount)
    salted = random.uniform(shape, stream=1, dtype=torch.float64) <= 0.5
    impulses = salted.to(x.dtype)  # 1 for salt, 0 for pepper
    return torch.where(flipped, impulses, x)


@chunked
def speckle_noise(
    x: torch.Tensor, scale: float, random: SampleRandom, variant: str
) -> torch.Tensor:
    """Multiplicative noise ``x + x * N(0, scale**2)``, independently per element: dark pixels
    barely change, bright ones most.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    scale : float
        The relative noise's standard deviation (imagecorruptions: 0.15 to 0.6; make_cifar_c.py:
        0.06 to 0.2).
    random : SampleRandom
        One key per image; stream 0 (and 1, Box-Muller's second uniform).
    variant : str
        Unused: both parameter sets use the same formula.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W), not clipped.
    """
    noise = random.normal(tuple(x.shape[1:]), stream=0, scale=float(scale), dtype=torch.float64)
    wide = x.to(torch.float64)
    return (wide + wide * noise).to(torch.float32)


# Levels, severities 1..5: imagecorruptions 1.1.2 (ImageNet-C's) and make_cifar_c.py (CIFAR-10-C's).
CORRUPTIONS: tuple[CommonCorruption, ...] = (
    CommonCorruption(
        name="gaussian_noise",
        kind="noise",
        function=gaussian_noise,
        levels={
            "imagenet": (0.08, 0.12, 0.18, 0.26, 0.38),
            "cifar": (0.04, 0.06, 0.08, 0.09, 0.10),
        },
    ),
    CommonCorruption(
        name="shot_noise",
        kind="noise",
        function=shot_noise,
        levels={"imagenet": (60, 25, 12, 5, 3), "cifar": (500, 250, 100, 75, 50)},
    ),
    CommonCorruption(
        name="impulse_noise",
        kind="noise",
        function=impulse_noise,
        levels={
            "imagenet": (0.03, 0.06, 0.09, 0.17, 0.27),
            "cifar": (0.01, 0.02, 0.03, 0.05, 0.07),
        },
    ),
    CommonCorruption(
        name="speckle_noise",
        kind="noise",
        function=speckle_noise,
        levels={"imagenet": (0.15, 0.2, 0.35, 0.45, 0.6), "cifar": (0.06, 0.1, 0.12, 0.16, 0.2)},
    ),
)
