"""The digital corruptions: brightness, contrast, saturate, pixelate and JPEG compression, batched
in torch with the references' arithmetic.

References: ``imagecorruptions`` 1.1.2 (Michaelis et al. 2019; ``params="imagenet"``) and
Hendrycks' ``ImageNet-C/create_c/make_cifar_c.py`` (``params="cifar"``), both from Hendrycks &
Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
(ICLR). The two differ only in their levels, in pixelate's upscaling filter (NEAREST for ImageNet,
BOX for CIFAR) and in the JPEG qualities.

What the references do through libraries is reproduced here from those libraries' definitions:

* brightness and saturate: scikit-image's ``rgb2hsv`` / ``hsv2rgb``, formula for formula in
  float64 (so that 8-bit inputs give the reference's values to the last bit);
* pixelate: Pillow's ``Image.resize`` with ``BOX`` (``Resample.c``: the coefficients of
  ``precompute_coeffs``, 22-bit fixed-point weights, two passes in Pillow 13's order, 8-bit
  rounding after each) and with ``NEAREST`` (``ImagingScaleAffine``'s accumulated source
  positions);
* jpeg_compression: what Pillow's ``save(..., "JPEG", quality=q)`` and ``Image.open`` run in
  libjpeg(-turbo) with their defaults: JFIF RGB->YCbCr in 16-bit fixed point, 4:2:0 chroma
  subsampling (2x2 averages with libjpeg's alternating rounding bias), edges replicated to whole
  blocks, the "islow" integer forward DCT (Loeffler, Ligtenberg & Moschytz 1989), the JPEG standard
  (Annex K) quantisation tables scaled by ``jpeg_quality_scaling`` and clamped to baseline,
  quantisation by libjpeg-turbo's reciprocal multiplication, the islow inverse DCT, "fancy"
  (triangular) chroma upsampling and the fixed-point YCbCr->RGB tables. All integer, so the
  result is the reference's own decoded image.

Pixelate and JPEG work on 8-bit images in the references: the input is rounded to 8 bits first and
the output is 8-bit levels (``k / 255``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from safetycheck.measures.common_corruptions._random import SampleRandom
from safetycheck.measures.common_corruptions._types import CommonCorruption

# ---------------------------------------------------------------------------------------------
# 8-bit levels


def _exact_float64(x: torch.Tensor) -> torch.Tensor:
    """x in float64, with values that are 8-bit levels (a float32 ``k / 255``) replaced by the
    float64 ``k / 255``: the references compute ``uint8 / 255.`` in float64, and this keeps 8-bit
    inputs bit-identical to them (other values move by under 4e-7 or not at all)."""
    wide = x.to(torch.float64)
    levels = torch.round(wide * 255.0)
    return torch.where((wide * 255.0 - levels).abs() < 1e-4, levels / 255.0, wide)


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    """float [0, 1] -> int64 8-bit levels 0..255 (nearest), as the references' uint8 images."""
    return torch.round(x.to(torch.float64) * 255.0).clamp_(0, 255).to(torch.int64)


def _from_levels(levels: torch.Tensor) -> torch.Tensor:
    return levels.to(torch.float32) / 255.0


# ---------------------------------------------------------------------------------------------
# HSV, as scikit-image computes it


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``skimage.color.rgb2hsv`` on (N, 3, H, W): hue in [0, 1), saturation and value in [0, 1].

    Ties for the largest channel resolve as scikit-image's successive assignments do (blue over
    green over red); grey pixels (no spread) get hue and saturation 0.
    """
    red, green, blue = rgb.unbind(1)
    value = rgb.amax(1)
    delta = value - rgb.amin(1)
    grey = delta == 0.0
    # No spread (which includes black) is saturation and hue 0; the 0/0 there is never used.
    safe = torch.where(grey, torch.ones_like(delta), delta)
    saturation = torch.where(grey, torch.zeros_like(delta), delta / torch.where(grey, 1.0, value))
    hue = (green - blue) / safe
    hue = torch.where(green == value, 2.0 + (blue - red) / safe, hue)
    hue = torch.where(blue == value, 4.0 + (red - green) / safe, hue)
    hue = hue / 6.0
    hue = torch.where(hue < 0.0, hue + 1.0, hue)  # numpy's "% 1.0" on [-1/6, 5/6]
    hue = torch.where(grey, torch.zeros_like(hue), hue)
    return torch.stack((hue, saturation, value), dim=1)


# hsv2rgb's np.choose: for each sector hi = floor(6 h) mod 6, the (R, G, B) picks among
# (v, t, p, q), indexed 0..3.
_SECTORS = ((0, 1, 2), (3, 0, 2), (2, 0, 1), (2, 3, 0), (1, 2, 0), (0, 2, 3))


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """``skimage.color.hsv2rgb`` on (N, 3, H, W) (hue, saturation, value) -> RGB."""
    hue, saturation, value = hsv.unbind(1)
    sector = torch.floor(hue * 6.0)
    frac = hue * 6.0 - sector
    p = value * (1.0 - saturation)
    q = value * (1.0 - frac * saturation)
    t = value * (1.0 - (1.0 - frac) * saturation)
    candidates = torch.stack((value, t, p, q), dim=1)
    table = torch.tensor(_SECTORS, device=hsv.device)
    picks = table[torch.remainder(sector.to(torch.int64), 6)]  # (N, H, W, 3)
    return torch.gather(candidates, 1, picks.permute(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------
# brightness, contrast, saturate


def brightness(x: torch.Tensor, level: float, random: SampleRandom, variant: str) -> torch.Tensor:
    """Add ``level`` to the HSV value, clipped to [0, 1] (both references).

    Parameters
    ----------
    x : torch.Tensor
        (N, 3, H, W) RGB in [0, 1].
    level : float
        The value shift.

    Returns
    -------
    torch.Tensor
        (N, 3, H, W) float32 in [0, 1].
    """
    hsv = rgb_to_hsv(_exact_float64(x))
    hue, saturation, value = hsv.unbind(1)
    hsv = torch.stack((hue, saturation, (value + level).clamp(0.0, 1.0)), dim=1)
    return hsv_to_rgb(hsv).clamp_(0.0, 1.0).to(torch.float32)


def saturate(
    x: torch.Tensor, level: tuple[float, float], random: SampleRandom, variant: str
) -> torch.Tensor:
    """Scale and shift the HSV saturation, ``s * level[0] + level[1]`` clipped to [0, 1]."""
    hsv = rgb_to_hsv(_exact_float64(x))
    hue, saturation, value = hsv.unbind(1)
    saturation = (saturation * level[0] + level[1]).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.stack((hue, saturation, value), dim=1)).clamp_(0.0, 1.0).float()


def contrast(x: torch.Tensor, level: float, random: SampleRandom, variant: str) -> torch.Tensor:
    """Pull each channel towards its mean over the image: ``(x - mean) * level + mean``.

    The mean is per image and channel over (H, W), as the references' ``np.mean(x, axis=(0, 1))``
    of an (H, W, 3) image.
    """
    wide = _exact_float64(x)
    means = wide.mean(dim=(2, 3), keepdim=True)
    return ((wide - means) * level + means).clamp_(0.0, 1.0).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Pillow's resampling

_PRECISION_BITS = 32 - 8 - 2  # Resample.c: fixed-point weights for 8-bit images


@functools.lru_cache(maxsize=64)
def _box_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 holding integers: Pillow's fixed-point BOX weights.

    Resample.c's ``precompute_coeffs`` with the box filter (support 0.5, 1 on (-1/2, 1/2]),
    scaled by ``max(in/out, 1)``, each row normalised to sum 1, then ``normalize_coeffs_8bpc``'s
    rounding to ``2**22``. Computed in Python floats, the C code's doubles, in its order.
    """
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    inverse = 1.0 / filterscale
    matrix = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        weights = []
        for index in range(low, high):
            position = (index - center + 0.5) * inverse
            weights.append(1.0 if -0.5 < position <= 0.5 else 0.0)
        total = sum(weights)
        for offset, weight in enumerate(weights):
            normal = weight / total if total != 0.0 else weight
            matrix[xx, low + offset] = int(0.5 + normal * (1 << _PRECISION_BITS))
    return matrix


@functools.lru_cache(maxsize=64)
def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """(out_size,) source indices of Pillow's NEAREST resize (``ImagingScaleAffine``): the source
    position starts at half a step and is accumulated step by step, then truncated; -1 marks a
    position outside the source (filled with 0 there)."""
    step = float(in_size) / out_size
    position = 0.0 + step * 0.5
    index = np.empty(out_size, dtype=np.int64)
    for x in range(out_size):
        source = -1 if position < 0.0 else int(position)
        index[x] = source if source < in_size else -1
        position += step
    return index


def _box_resize(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pillow's ``resize((width, height), Image.BOX)`` of int64 8-bit (N, C, H, W) levels.

    Each pass is exact integer arithmetic done in float64 (the sums stay below 2**31).
    """
    out = levels.to(torch.float64)
    half = float(1 << (_PRECISION_BITS - 1))
    unit = float(1 << _PRECISION_BITS)
    in_height, in_width = out.shape[-2:]
    # Pillow skips a pass whose size does not change. Pillow 13 runs the vertical pass first
    # when the height shrinks by more than twice as many pixels as the width (the rule that
    # reproduces its output for every size pair tried, up to 90 pixels); earlier Pillows always
    # start with the horizontal one. The order matters because the intermediate image is rounded
    # to 8 bits; square images shrink horizontally first under both.
    passes = ["horizontal", "vertical"]
    if in_height - height > 2 * (in_width - width):
        passes.reverse()
    for axis in passes:
        if axis == "horizontal" and width != in_width:
            cols = torch.as_tensor(_box_weights(in_width, width), device=out.device)
            out = torch.floor((out @ cols.T + half) / unit).clamp_(0.0, 255.0)
        elif axis == "vertical" and height != in_height:
            rows = torch.as_tensor(_box_weights(in_height, height), device=out.device)
            out = torch.floor((rows @ out + half) / unit).clamp_(0.0, 255.0)
    return out.to(torch.int64)


def _nearest_resize(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pillow's ``resize((width, height), Image.NEAREST)`` of (N, C, H, W) levels."""
    out = levels
    for dim, size in ((-2, height), (-1, width)):
        index = torch.as_tensor(_nearest_index(out.shape[dim], size), device=out.device)
        picked = out.index_select(dim, index.clamp(min=0))
        shape = [1] * out.dim()
        shape[dim] = size
        out = picked * (index >= 0).reshape(shape).to(out.dtype)
    return out


def pixelate(x: torch.Tensor, level: float, random: SampleRandom, variant: str) -> torch.Tensor:
    """Shrink to ``(int(W * level), int(H * level))`` with Pillow's BOX filter and enlarge back
    with NEAREST (``"imagenet"``, imagecorruptions) or BOX (``"cifar"``, ``make_cifar_c.py``,
    whose ``int(32 * c)`` is ``int(side * c)`` here for any size).

    Parameters
    ----------
    x : torch.Tensor
        (N, 3, H, W) in [0, 1], rounded to 8 bits as the references' PIL images are.

    Returns
    -------
    torch.Tensor
        (N, 3, H, W) float32 8-bit levels ``k / 255``.
    """
    height, width = x.shape[-2:]
    small = _box_resize(_to_levels(x), int(height * level), int(width * level))
    if variant == "cifar":
        return _from_levels(_box_resize(small, height, width))
    return _from_levels(_nearest_resize(small, height, width))


# ---------------------------------------------------------------------------------------------
# JPEG (libjpeg-turbo through Pillow, baseline, its default settings)

# The JPEG standard's Annex K tables, natural (row-major) order: rows are vertical frequencies.
_LUMINANCE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMINANCE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4

_SCALEBITS = 16  # jccolor.c / jdcolor.c fixed point
_HALF = 1 << (_SCALEBITS - 1)
_CONST_BITS, _PASS1_BITS = 13, 2  # jfdctint.c / jidctint.c


def _fix(value: float, bits: int = _SCALEBITS) -> int:
    """libjpeg's ``FIX(x)``: ``x`` in fixed point, rounded."""
    return int(value * (1 << bits) + 0.5)


# The islow DCT's constants, FIX(.) with 13 bits (the values jfdctint.c and jidctint.c list).
_F0298, _F0390, _F0541, _F0765 = 2446, 3196, 4433, 6270
_F0899, _F1175, _F1501, _F1847 = 7373, 9633, 12299, 15137
_F1961, _F2053, _F2562, _F3072 = 16069, 16819, 20995, 25172


def quality_table(base: tuple, quality: int) -> np.ndarray:
    """(8, 8) int64: libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` of one base
    table: ``jpeg_quality_scaling`` (5000 / q below 50, 200 - 2 q from 50), then
    ``(base * scale + 50) // 100`` clamped to [1, 255]."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - quality * 2
    table = (np.asarray(base, dtype=np.int64) * scale + 50) // 100
    return np.clip(table, 1, 255)


def _reciprocal(divisor: int) -> tuple[int, int, int]:
    """libjpeg-turbo's ``compute_reciprocal`` (jcdctmgr.c): quantisation of ``|c|`` by
    ``divisor`` is ``((|c| + correction) * reciprocal) >> shift``, a rounded division for the
    DCT's 16-bit range. Returns (reciprocal, correction, shift)."""
    bits = divisor.bit_length() - 1
    shift = 16 + bits
    reciprocal, remainder = divmod(1 << shift, divisor)
    correction = divisor // 2
    if remainder == 0:  # a power of two
        reciprocal >>= 1
        shift -= 1
    elif remainder <= divisor // 2:
        correction += 1
    else:
        reciprocal += 1
    return reciprocal, correction, shift


@functools.lru_cache(maxsize=32)
def _quantisers(
    quality: int, chroma: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(table, reciprocal, correction, shift), each (8, 8) int64, for one component."""
    table = quality_table(_CHROMINANCE if chroma else _LUMINANCE, quality)
    # islow's output is 8 times the DCT, so the divisors are the table entries times 8.
    parts = np.array([_reciprocal(int(q) * 8) for q in table.ravel()], dtype=np.int64)
    reciprocal, correction, shift = (parts[:, i].reshape(8, 8) for i in range(3))
    return table, reciprocal, correction, shift


def _descale(value: torch.Tensor, bits: int) -> torch.Tensor:
    """libjpeg's ``DESCALE``: divide by ``2**bits``, rounding half up (arithmetic shift)."""
    return (value + (1 << (bits - 1))) >> bits


def _fdct_pass(d: torch.Tensor, first: bool, axis: int) -> torch.Tensor:
    """One 1-D pass of ``jpeg_fdct_islow`` along ``axis`` (8 samples)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = d.unbind(axis)
    tmp0, tmp7 = d0 + d7, d0 - d7
    tmp1, tmp6 = d1 + d6, d1 - d6
    tmp2, tmp5 = d2 + d5, d2 - d5
    tmp3, tmp4 = d3 + d4, d3 - d4
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    if first:  # the row pass keeps PASS1_BITS extra bits of precision
        out0, out4 = (tmp10 + tmp11) << _PASS1_BITS, (tmp10 - tmp11) << _PASS1_BITS
        bits = _CONST_BITS - _PASS1_BITS
    else:
        out0, out4 = _descale(tmp10 + tmp11, _PASS1_BITS), _descale(tmp10 - tmp11, _PASS1_BITS)
        bits = _CONST_BITS + _PASS1_BITS
    z1 = (tmp12 + tmp13) * _F0541
    out2 = _descale(z1 + tmp13 * _F0765, bits)
    out6 = _descale(z1 - tmp12 * _F1847, bits)
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * _F1175
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    out7 = _descale(tmp4 * _F0298 + z1 + z3, bits)
    out5 = _descale(tmp5 * _F2053 + z2 + z4, bits)
    out3 = _descale(tmp6 * _F3072 + z2 + z3, bits)
    out1 = _descale(tmp7 * _F1501 + z1 + z4, bits)
    return torch.stack((out0, out1, out2, out3, out4, out5, out6, out7), dim=axis)


def _idct_pass(d: torch.Tensor, first: bool, axis: int) -> torch.Tensor:
    """One 1-D pass of ``jpeg_idct_islow`` along ``axis`` (8 coefficients)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = d.unbind(axis)
    z1 = (d2 + d6) * _F0541
    tmp2 = z1 - d6 * _F1847
    tmp3 = z1 + d2 * _F0765
    tmp0 = (d0 + d4) << _CONST_BITS
    tmp1 = (d0 - d4) << _CONST_BITS
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    z1, z2, z3, z4 = d7 + d1, d5 + d3, d7 + d3, d5 + d1
    z5 = (z3 + z4) * _F1175
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    odd0 = d7 * _F0298 + z1 + z3
    odd1 = d5 * _F2053 + z2 + z4
    odd2 = d3 * _F3072 + z2 + z3
    odd3 = d1 * _F1501 + z1 + z4
    # The column pass keeps PASS1_BITS; the row pass also removes the factor 8 of the transform.
    bits = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS + 3
    outs = (
        tmp10 + odd3,
        tmp11 + odd2,
        tmp12 + odd1,
        tmp13 + odd0,
        tmp13 - odd0,
        tmp12 - odd1,
        tmp11 - odd2,
        tmp10 - odd3,
    )
    return torch.stack([_descale(v, bits) for v in outs], dim=axis)


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """(N, 8 R, 8 C) -> (8, 8, N R C): a block's rows and columns first, so that each of the
    eight samples a 1-D DCT pass combines is one contiguous array over all blocks (3x faster
    than strided slices of the last axis)."""
    n, height, width = plane.shape
    blocks = plane.reshape(n, height // 8, 8, width // 8, 8).permute(2, 4, 0, 1, 3)
    return blocks.reshape(8, 8, -1)


def _unblocks(blocks: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`_blocks`."""
    grid = blocks.reshape(8, 8, n, height // 8, width // 8).permute(2, 3, 0, 4, 1)
    return grid.reshape(n, height, width)


def _code_plane(plane: torch.Tensor, quality: int, chroma: bool) -> torch.Tensor:
    """Encode and decode one component: (N, 8 R, 8 C) int64 samples -> the decoded samples.

    Level shift, islow forward DCT (rows then columns), quantisation as libjpeg-turbo's
    ``quantize`` (round half away from zero by reciprocal multiplication), dequantisation,
    islow inverse DCT (columns then rows), level shift back and clamping to 0..255.
    """
    table, reciprocal, correction, shift = (
        torch.as_tensor(a, device=plane.device)[:, :, None]
        for a in _quantisers(int(quality), chroma)
    )
    table = table.to(plane.dtype)
    data = _blocks(plane) - 128
    data = _fdct_pass(data, first=True, axis=1)  # along each block's rows
    data = _fdct_pass(data, first=False, axis=0)  # then its columns
    # libjpeg-turbo multiplies in unsigned 32 bits, past int32's range: this one step in int64.
    magnitude = ((data.abs().to(torch.int64) + correction) * reciprocal) >> shift
    coefficients = torch.where(data < 0, -magnitude, magnitude).to(data.dtype)
    data = coefficients * table
    data = _idct_pass(data, first=True, axis=0)
    data = _idct_pass(data, first=False, axis=1)
    # libjpeg-turbo's SIMD IDCT saturates (its C range-limit table only differs far outside
    # 0..255, where no natural image's coefficients lead).
    return _unblocks((data + 128).clamp_(0, 255), *plane.shape)


def _replicate(plane: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Extend (N, h, w) to (N, height, width) by repeating the last row and column."""
    if plane.shape[-2:] == (height, width):
        return plane
    rows = torch.arange(height, device=plane.device).clamp_(max=plane.shape[-2] - 1)
    cols = torch.arange(width, device=plane.device).clamp_(max=plane.shape[-1] - 1)
    return plane.index_select(-2, rows).index_select(-1, cols)


def _fancy_upsample(chroma: torch.Tensor) -> torch.Tensor:
    """libjpeg's ``h2v2_fancy_upsample``: (N, h, w) -> (N, 2 h, 2 w), each output sample
    9/16, 3/16, 3/16, 1/16 of its four nearest input samples (edges repeated), with libjpeg's
    alternating rounding (+8 on even columns, +7 on odd ones) after the 16x scaling."""
    above = torch.cat((chroma[:, :1], chroma[:, :-1]), dim=1)
    below = torch.cat((chroma[:, 1:], chroma[:, -1:]), dim=1)
    sums = torch.stack((3 * chroma + above, 3 * chroma + below), dim=2).flatten(1, 2)
    left = torch.cat((sums[..., :1], sums[..., :-1]), dim=-1)
    right = torch.cat((sums[..., 1:], sums[..., -1:]), dim=-1)
    even = (3 * sums + left + 8) >> 4
    odd = (3 * sums + right + 7) >> 4
    return torch.stack((even, odd), dim=-1).flatten(-2, -1)


def jpeg_code(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """A baseline JPEG round trip of 8-bit RGB as Pillow does it with libjpeg-turbo's defaults.

    Parameters
    ----------
    levels : torch.Tensor
        (N, 3, H, W) int64 in 0..255.
    quality : int
        1..100, Pillow's ``quality``.

    Returns
    -------
    torch.Tensor
        (N, 3, H, W) int64 in 0..255: ``Image.open(save(Image.fromarray(x), "JPEG", quality))``.
    """
    n, _, height, width = levels.shape
    # int32, as libjpeg's islow DCTs are designed for (IJG's INT32 temporaries: with 8-bit
    # samples no intermediate reaches 2**31); half the memory traffic of int64.
    red, green, blue = levels.to(torch.int32).unbind(1)
    # jccolor.c's rgb_ycc_convert: the chroma offsets use 0.5 - epsilon rounding.
    offset = (128 << _SCALEBITS) + _HALF - 1
    luma = (_fix(0.299) * red + _fix(0.587) * green + _fix(0.114) * blue + _HALF) >> _SCALEBITS
    cb = (-_fix(0.16874) * red - _fix(0.33126) * green + _fix(0.5) * blue + offset) >> _SCALEBITS
    cr = (_fix(0.5) * red - _fix(0.41869) * green - _fix(0.08131) * blue + offset) >> _SCALEBITS

    # Luma: blocks of 8, edges repeated (fullsize_downsample, expand_bottom_edge).
    luma_h, luma_w = 8 * math.ceil(height / 8), 8 * math.ceil(width / 8)
    luma = _code_plane(_replicate(luma, luma_h, luma_w), quality, chroma=False)[:, :height, :width]

    # Chroma, 4:2:0: the full-resolution plane is repeated to an even height and to twice the
    # chroma blocks' width, averaged 2x2 with the bias 1, 2, 1, 2, ... (h2v2_downsample), then
    # its rows are repeated to whole blocks.
    small_h, small_w = math.ceil(height / 2), math.ceil(width / 2)
    blocks_h, blocks_w = 8 * math.ceil(small_h / 8), 8 * math.ceil(small_w / 8)
    planes = torch.stack((cb, cr), dim=1).reshape(n * 2, height, width)
    full = _replicate(planes, 2 * small_h, 2 * blocks_w)
    pairs = full.reshape(n * 2, small_h, 2, blocks_w, 2).sum(dim=(2, 4), dtype=full.dtype)
    bias = torch.tensor([1, 2], dtype=pairs.dtype, device=levels.device).repeat(blocks_w // 2)
    small = (pairs + bias) >> 2
    small = _code_plane(_replicate(small, blocks_h, blocks_w), quality, chroma=True)
    # The decoder upsamples the chroma's real samples only (downsampled size), edges repeated.
    chroma = _fancy_upsample(small[:, :small_h, :small_w])[:, :height, :width]
    cb, cr = chroma.reshape(n, 2, height, width).unbind(1)

    # jdcolor.c's ycc_rgb_convert tables.
    cb, cr = cb - 128, cr - 128
    red = luma + ((_fix(1.402) * cr + _HALF) >> _SCALEBITS)
    green = luma + ((-_fix(0.34414) * cb + _HALF - _fix(0.71414) * cr) >> _SCALEBITS)
    blue = luma + ((_fix(1.772) * cb + _HALF) >> _SCALEBITS)
    return torch.stack((red, green, blue), dim=1).clamp_(0, 255).to(torch.int64)


def jpeg_compression(
    x: torch.Tensor, level: int, random: SampleRandom, variant: str
) -> torch.Tensor:
    """Save as JPEG with quality ``level`` and decode (both references, through Pillow).

    Parameters
    ----------
    x : torch.Tensor
        (N, 3, H, W) in [0, 1], rounded to 8 bits first as the references' PIL images are.
    level : int
        The JPEG quality.

    Returns
    -------
    torch.Tensor
        (N, 3, H, W) float32 8-bit levels ``k / 255``.
    """
    return _from_levels(jpeg_code(_to_levels(x), int(level)))


CORRUPTIONS: tuple[CommonCorruption, ...] = (
    CommonCorruption(
        name="brightness",
        kind="digital",
        function=brightness,
        levels={"imagenet": (0.1, 0.2, 0.3, 0.4, 0.5), "cifar": (0.05, 0.1, 0.15, 0.2, 0.3)},
        deterministic=True,
    ),
    CommonCorruption(
        name="contrast",
        kind="digital",
        function=contrast,
        levels={"imagenet": (0.4, 0.3, 0.2, 0.1, 0.05), "cifar": (0.75, 0.5, 0.4, 0.3, 0.15)},
        deterministic=True,
    ),
    CommonCorruption(
        name="pixelate",
        kind="digital",
        function=pixelate,
        levels={"imagenet": (0.6, 0.5, 0.4, 0.3, 0.25), "cifar": (0.95, 0.9, 0.85, 0.75, 0.65)},
        deterministic=True,
    ),
    CommonCorruption(
        name="jpeg_compression",
        kind="digital",
        function=jpeg_compression,
        levels={"imagenet": (25, 18, 15, 10, 7), "cifar": (80, 65, 58, 50, 40)},
        deterministic=True,
    ),
    CommonCorruption(
        name="saturate",
        kind="digital",
        function=saturate,
        levels={
            "imagenet": ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)),
            "cifar": ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
        },
        deterministic=True,
    ),
)
