"""The four weather corruptions: snow, frost, fog and spatter (held out).

Hendrycks & Dietterich 2019 ("Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR). ``params="imagenet"`` follows ``imagecorruptions`` 1.1.2
(``corruptions.py``: ``snow``, ``frost``, ``fog``, ``spatter`` and their helpers
``plasma_fractal``, ``clipped_zoom``, ``_motion_blur``), ``params="cifar"`` Hendrycks'
``make_cifar_c.py`` (ImageNet-C/create_c in github.com/hendrycks/robustness), which differs in its
levels and in three details: its ``clipped_zoom`` keeps the centre, its snow layer goes through
8 bits before ImageMagick's motion blur (here imagecorruptions' re-implementation of it, as
:func:`~safetycheck.measures.common_corruptions._filters.shift_blur`), and its frost photographs
are shrunk to a fifth rather than fitted to the image.

The reference works on one image with numpy's global generator; here every draw comes from
:class:`~safetycheck.measures.common_corruptions._random.SampleRandom` (one key per image, one
stream per draw), so the same formulas run batched and an image's corruption does not depend on
its batch. The corruptions match the reference in distribution, not draw for draw; fed the same
draws, the reference's functions give our output to one 8-bit level (the unit tests check it).

Frost's photographs are not part of this project: they are read at run time from the installed
``imagecorruptions`` package (Apache-2.0 per its metadata; they come from Hendrycks' ImageNet-C
repository, which states no separate source or licence for them).

All functions take float32 (N, 3, H, W) in [0, 1] (RGB) and return float32 (N, 3, H, W), not
clipped (:func:`~safetycheck.measures.common_corruptions.catalogue.corrupt` clips to [0, 1], as the
reference's final ``np.clip`` does).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from safetycheck.measures.common_corruptions._filters import (
    _zoom_matrix,
    clipped_zoom,
    gaussian_kernel,
    pad,
    rgb_to_gray,
    shift_blur,
)
from safetycheck.measures.common_corruptions._random import SampleRandom
from safetycheck.measures.common_corruptions._types import CommonCorruption

# Streams of SampleRandom, one per draw of a corruption (normal() also uses the next one).
_LAYER_STREAM = 0  # snow's and spatter's (H, W) normal layer: streams 0 and 1
_ANGLE_STREAM = 2  # snow's motion-blur angle
_FROST_INDEX_STREAM = 0  # which photograph
_FROST_OFFSET_STREAM = 1  # where to crop it: (row, column)
# fog: step k of the diamond-square algorithm draws on streams 3k (squares), 3k + 1 and 3k + 2
# (the two sets of diamonds).

# The photographs imagecorruptions' frost picks from (``np.random.randint(5)``: frost6.jpg ships
# but is never chosen, in either reference).
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
FROST_MISSING = (
    "the frost photographs ship with the imagecorruptions package, which is not installed "
    "(pip install imagecorruptions)"
)


# ---------------------------------------------------------------------------------------------
# Snow
# ---------------------------------------------------------------------------------------------


def _full_zoom(layer: torch.Tensor, zoom: float) -> torch.Tensor:
    """imagecorruptions' ``clipped_zoom`` without its final cut: the centred ``ceil(size / zoom)``
    of each axis magnified by SciPy's linear zoom to ``round(ceil(size / zoom) * zoom)`` samples
    (one or a few more than ``size``). (N, H, W) -> (N, H', W'), H' >= H, W' >= W."""
    axes = []
    for size in layer.shape[-2:]:
        crop = int(math.ceil(size / zoom))
        out = int(round(crop * zoom))
        matrix = _zoom_matrix(int(size), zoom, (int(size) - crop) // 2, crop, out, 0)
        axes.append(torch.as_tensor(matrix, dtype=layer.dtype, device=layer.device))
    return axes[0] @ layer @ axes[1].T


def snow(x: torch.Tensor, level: tuple, random: SampleRandom, variant: str) -> torch.Tensor:
    """Falling snow: a zoomed, thresholded and motion-blurred noise layer added twice (once
    rotated by 180 degrees) to the image, whitened towards its brightened gray.

    imagecorruptions' ``snow`` and make_cifar_c.py's: ``layer = N(mean, std)`` of shape (H, W);
    ``clipped_zoom(layer, zoom)``; zero below ``threshold``; clip to [0, 1]; motion blur along an
    angle uniform in [-135, -45] degrees; round to 8 bits; then ``x = keep * x + (1 - keep) *
    max(x, 1.5 * gray(x) + 0.5)`` and ``x + layer + rot180(layer)``.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    level : tuple
        ``(mean, std, zoom, threshold, radius, sigma, keep)``: the layer's normal parameters, its
        zoom, the threshold, the motion blur's radius and sigma, and the share of the image kept.
    random : SampleRandom
        One key per image; streams 0-1 (the layer) and 2 (the angle).
    variant : {"imagenet", "cifar"}
        ``"cifar"``: the centred ``clipped_zoom`` of make_cifar_c.py, and the layer truncated to
        8 bits before the blur, as its conversion to a PIL image for ImageMagick does.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W), not clipped.
    """
    mean, std, zoom, threshold, radius, sigma, keep = level
    height, width = x.shape[-2:]
    layer = random.normal((height, width), _LAYER_STREAM, float(mean), float(std))
    if variant == "cifar":
        layer = clipped_zoom(layer, float(zoom), "cifar")
    else:
        # imagecorruptions' clipped_zoom returns all round(ceil(H / zoom) * zoom) rows (and
        # columns), which the motion blur reads, before the layer is cut to (H, W).
        layer = _full_zoom(layer, float(zoom))
    layer = torch.where(layer < threshold, 0.0, layer).clamp(0.0, 1.0)
    if variant == "cifar":
        # make_cifar_c.py: (np.clip(layer, 0, 1) * 255).astype(np.uint8), a truncation.
        layer = torch.floor(layer * 255.0) / 255.0
    angles = random.uniform((1,), _ANGLE_STREAM, -135.0, -45.0)[:, 0]
    layer = shift_blur(layer[:, None], int(radius), float(sigma), angles)[..., :height, :width]
    # Both references round the blurred layer to 8 bits (imagecorruptions explicitly,
    # make_cifar_c.py by ImageMagick's 8-bit PNG).
    layer = (torch.round(layer * 255.0) / 255.0).to(torch.float32)
    gray = rgb_to_gray(x)
    x = keep * x + (1.0 - keep) * torch.maximum(x, gray * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(-2, -1))


# ---------------------------------------------------------------------------------------------
# Frost
# ---------------------------------------------------------------------------------------------


def _frost_folder() -> Path | None:
    """The folder of imagecorruptions' frost photographs, found without importing the package
    (its import needs ``pkg_resources``, gone from recent setuptools); None when absent."""
    try:
        spec = importlib.util.find_spec("imagecorruptions")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "frost"
        if all((folder / name).is_file() for name in FROST_FILES):
            return folder
    return None


def frost_needs() -> str | None:
    """None when frost's photographs can be found, else why not."""
    return None if _frost_folder() is not None else FROST_MISSING


@functools.lru_cache(maxsize=len(FROST_FILES))
def _read_frost(folder: Path, name: str) -> torch.Tensor:
    """float32 (1, 3, h, w), values 0..255: a photograph as ``cv2.imread`` reads it (colour,
    alpha dropped), in RGB (the references' ``[..., [2, 1, 0]]`` undoes OpenCV's BGR)."""
    with Image.open(folder / name) as photo:
        array = np.asarray(photo.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].to(torch.float32)


def _frost_scale(variant: str, photo: tuple[int, int], image: tuple[int, int]) -> float | None:
    """make_cifar_c.py's factor 0.2 when the shrunk photograph is larger than the image (as a
    CIFAR image always is), else None: fit it as imagecorruptions does."""
    if variant == "cifar":
        # The sizes torch's interpolate gives (floored; OpenCV rounds, the same on these photos).
        rows, cols = int(photo[0] * 0.2), int(photo[1] * 0.2)
        if rows > image[0] and cols > image[1]:
            return 0.2
    return None


def _fitted_size(photo: tuple[int, int], image: tuple[int, int]) -> tuple[int, int]:
    """imagecorruptions' frost resizing: a factor 1 when the photograph covers the image, else
    the larger of the factors that make a side fit; times 1.1; sizes rounded up."""
    (ph, pw), (h, w) = photo, image
    factor = 1.0
    if ph < h and pw >= w:
        factor = h / ph
    elif ph >= h and pw < w:
        factor = w / pw
    elif ph < h and pw < w:
        factor = max(h / ph, w / pw)
    factor *= 1.1
    return int(math.ceil(ph * factor)), int(math.ceil(pw * factor))


# A few image sizes at a time: a stack for a large image takes 5 * 3 * 1.21 * H * W bytes.
@functools.lru_cache(maxsize=4)
def _frost_photos(folder: str, height: int, width: int, variant: str):
    """The five photographs resized for (height, width) images, padded to one stack.

    Returns
    -------
    photos : torch.Tensor
        uint8 (5, 3, rows, cols) on the CPU, each photograph at its top left.
    sizes : torch.Tensor
        int64 (5, 2): each photograph's (rows, columns) after resizing.
    """
    resized = []
    for name in FROST_FILES:
        photo = _read_frost(Path(folder), name)
        size = (int(photo.shape[-2]), int(photo.shape[-1]))
        scale = _frost_scale(variant, size, (height, width))
        if scale is not None:
            # cv2.resize(frost, (0, 0), fx=0.2, fy=0.2), INTER_LINEAR: half-pixel centres at the
            # given scale (not the size ratio); OpenCV rounds the size and torch floors it, equal
            # for these photographs.
            photo = F.interpolate(
                photo, scale_factor=scale, mode="bilinear", align_corners=False,
                recompute_scale_factor=False,
            )  # fmt: skip
        else:
            # cv2.resize(..., INTER_CUBIC): Keys' cubic with a = -0.75 and half-pixel centres at
            # the size ratio, as torch's bicubic; OpenCV saturates to uint8 with rounding.
            photo = F.interpolate(
                photo, size=_fitted_size(size, (height, width)), mode="bicubic",
                align_corners=False,
            )  # fmt: skip
        resized.append(photo[0].round().clamp(0, 255).to(torch.uint8))
    rows = max(p.shape[1] for p in resized)
    cols = max(p.shape[2] for p in resized)
    photos = torch.zeros((len(resized), 3, rows, cols), dtype=torch.uint8)
    for k, photo in enumerate(resized):
        photos[k, :, : photo.shape[1], : photo.shape[2]] = photo
    sizes = torch.tensor([tuple(p.shape[1:]) for p in resized], dtype=torch.int64)
    return photos, sizes


def frost(x: torch.Tensor, level: tuple, random: SampleRandom, variant: str) -> torch.Tensor:
    """Frost on a window: ``keep * x + amount * photo``, with one of five frost photographs
    (imagecorruptions' ``frost/frost1.png`` ... ``frost5.jpg``) resized and cropped at random.

    imagecorruptions' ``frost``: the photograph (``np.random.randint(5)``) is enlarged by 1.1
    (after fitting it to the image when it is smaller) with OpenCV's bicubic ``cv2.resize``, and
    cropped at ``(randint(0, rows - H), randint(0, cols - W))``. make_cifar_c.py's shrinks it to a
    fifth (``fx=fy=0.2``, bilinear) instead; for images larger than that (which CIFAR's never
    are) it fits the photograph as imagecorruptions does.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    level : tuple
        ``(keep, amount)``: the weights of the image and of the photograph.
    random : SampleRandom
        One key per image; streams 0 (the photograph) and 1 (the crop's row and column).
    variant : {"imagenet", "cifar"}
        How the photographs are resized.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W), not clipped.

    Raises
    ------
    RuntimeError
        When the photographs cannot be found (``corrupt`` checks first, through
        :func:`frost_needs`, and raises ``CorruptionUnavailable``).
    """
    keep, amount = level
    height, width = x.shape[-2:]
    folder = _frost_folder()
    if folder is None:
        raise RuntimeError(FROST_MISSING)
    photos, sizes = _frost_photos(str(folder), int(height), int(width), variant)
    index = random.integers(0, len(FROST_FILES), (1,), _FROST_INDEX_STREAM)[:, 0].cpu()
    # randint(0, rows - H) per image, the range depending on the photograph drawn.
    spans = sizes[index] - torch.tensor([height, width])  # (N, 2), >= 1
    draws = random.uniform((2,), _FROST_OFFSET_STREAM).cpu()
    offsets = torch.minimum(torch.floor(draws * spans).to(torch.int64), spans - 1)
    rows = offsets[:, :1] + torch.arange(height)  # (N, H)
    cols = offsets[:, 1:] + torch.arange(width)  # (N, W)
    crops = photos[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, 3)
    crops = crops.permute(0, 3, 1, 2).to(device=x.device, dtype=torch.float32)
    return keep * x + amount * (crops / 255.0)


# ---------------------------------------------------------------------------------------------
# Fog
# ---------------------------------------------------------------------------------------------


def _wibbled(total: torch.Tensor, random: SampleRandom, wibble: float, stream: int) -> torch.Tensor:
    """The mean of four points plus ``wibble * U(-wibble, wibble)`` (``wibbledmean``)."""
    noise = random.uniform(tuple(total.shape[1:]), stream, -wibble, wibble)
    return total / 4 + wibble * noise


def plasma_fractal(
    random: SampleRandom, mapsize: int, decay: float, first_stream: int = 0
) -> torch.Tensor:
    """Diamond-square height maps, one per image: the references' ``plasma_fractal``.

    From a zero corner, each step of ``stepsize`` (mapsize, mapsize / 2, ..., 2) sets the centres
    of the squares to the mean of their four corners and then the centres of the diamonds to the
    mean of their four points (wrapping around), each plus ``wibble * U(-wibble, wibble)``;
    ``wibble`` starts at 100 and is divided by ``decay`` after each step. The map is then scaled
    to [0, 1].

    Parameters
    ----------
    random : SampleRandom
        One key per image; step k draws on streams ``first_stream + 3k``, ``+ 3k + 1`` and
        ``+ 3k + 2``.
    mapsize : int
        A power of two.
    decay : float
        ``wibbledecay``: larger is smoother.

    Returns
    -------
    torch.Tensor
        float64 (N, mapsize, mapsize) in [0, 1].
    """
    if mapsize < 1 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two; got {mapsize}")
    count = len(random)
    maps = torch.zeros((count, mapsize, mapsize), dtype=torch.float64, device=random.device)
    step, wibble, stream = mapsize, 100.0, first_stream
    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + torch.roll(corners, -1, dims=1)
        squares = squares + torch.roll(squares, -1, dims=2)
        maps[:, half::step, half::step] = _wibbled(squares, random, wibble, stream)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        across = centres + torch.roll(centres, 1, dims=1) + corners + torch.roll(corners, -1, 2)
        maps[:, 0::step, half::step] = _wibbled(across, random, wibble, stream + 1)
        down = centres + torch.roll(centres, 1, dims=2) + corners + torch.roll(corners, -1, 1)
        maps[:, half::step, 0::step] = _wibbled(down, random, wibble, stream + 2)
        step //= 2
        wibble /= decay
        stream += 3
    flat = maps.reshape(count, -1)
    low = flat.min(dim=1).values[:, None, None]
    maps = maps - low
    high = maps.reshape(count, -1).max(dim=1).values[:, None, None]
    return maps / high


def next_power_of_two(value: int) -> int:
    """The smallest power of two >= ``value`` (imagecorruptions' ``next_power_of_2``)."""
    return 1 if value <= 1 else 1 << (int(value) - 1).bit_length()


def fog(x: torch.Tensor, level: tuple, random: SampleRandom, variant: str) -> torch.Tensor:
    """Fog: a plasma fractal added to every channel, then the image rescaled so that its former
    maximum stays the maximum: ``(x + amount * plasma) * max(x) / (max(x) + amount)``.

    imagecorruptions' ``fog``, whose fractal has the side of the next power of two of the image's
    larger side, cropped to the image's top left; make_cifar_c.py's is 32x32, the same on CIFAR's
    images and generalised in the same way here.

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    level : tuple
        ``(amount, decay)``: the fractal's weight and its ``wibbledecay``.
    random : SampleRandom
        One key per image; streams 0 to 3 * log2(mapsize) - 1.
    variant : {"imagenet", "cifar"}
        Unused: both parameter sets use the same formula.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W), not clipped.
    """
    amount, decay = float(level[0]), float(level[1])
    height, width = x.shape[-2:]
    mapsize = next_power_of_two(max(height, width))
    plasma = plasma_fractal(random, mapsize, decay)[:, None, :height, :width]
    x = x.to(torch.float64)
    top = x.reshape(len(x), -1).max(dim=1).values.reshape(-1, 1, 1, 1)
    return ((x + amount * plasma) * top / (top + amount)).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Spatter
# ---------------------------------------------------------------------------------------------

_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)  # OpenCV's tan(22.5) << 15
# cv2.distanceTransform(DIST_L2, 5)'s mask weights (axis, diagonal, knight's move), added in
# float32 as OpenCV 5 does.
_CHAMFER_WEIGHTS = (1.0, 1.4, 2.1969)
_EMBOSS = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
_ONES = np.ones((3, 3))
_WATER = (175 / 255.0, 238 / 255.0, 238 / 255.0)  # pale turquoise, RGB
_MUD = (63 / 255.0, 42 / 255.0, 20 / 255.0)  # mud brown, RGB


def correlate(x: torch.Tensor, kernel: np.ndarray, mode: str = "mirror") -> torch.Tensor:
    """:func:`~safetycheck.measures.common_corruptions._filters.filter2d` (``cv2.filter2D``'s
    correlation, border ``mode``) as a sum of shifted copies, one per non-zero weight.

    torch's CPU convolution is slow in float64 and, in float32, may round differently with the
    batch size; the shifted sums are exact on the 8-bit images filtered here, and the same for an
    image alone as in any batch. A 1-D kernel (shape (k, 1) or (1, k)) filters along that axis.

    Parameters
    ----------
    x : torch.Tensor
        (..., H, W), any float dtype (kept).
    kernel : numpy.ndarray
        (kh, kw), odd sizes.

    Returns
    -------
    torch.Tensor
        (..., H, W).
    """
    height, width = x.shape[-2:]
    kh, kw = kernel.shape
    padded = pad(x, kh // 2, kh // 2, kw // 2, kw // 2, mode)
    out = torch.zeros_like(x)
    for (row, col), weight in np.ndenumerate(kernel):
        if weight != 0:
            out.add_(padded[..., row : row + height, col : col + width], alpha=float(weight))
    return out


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``skimage.filters.gaussian`` (``scipy.ndimage.gaussian_filter``, border ``"nearest"``,
    truncated at 4 sigma) on (..., H, W), by :func:`correlate` along each axis: the same sums as
    :func:`~safetycheck.measures.common_corruptions._filters.gaussian_filter`, several times
    faster than torch's float64 convolution."""
    weights = gaussian_kernel(sigma)
    rows = correlate(x, weights[:, None], mode="nearest")
    return correlate(rows, weights[None, :], mode="nearest")


def canny(image: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``cv2.Canny(image, low, high)`` with its defaults (3x3 Sobel, L1 gradient magnitude).

    Sobel derivatives with the edge repeated; non-maximum suppression along the gradient's
    direction quantised to 0, 45, 90 or 135 degrees with OpenCV's fixed-point tan(22.5) test and
    its tie rules (the magnitude is 0 outside the image); pixels above ``high`` are edges, and
    pixels above ``low`` joined to them through 8-connected pixels above ``low``, found by
    repeated 3x3 dilation rather than OpenCV's stack (the same set).

    Parameters
    ----------
    image : torch.Tensor
        (N, H, W), integer values 0..255 (an 8-bit image).
    low, high : float
        The hysteresis thresholds.

    Returns
    -------
    torch.Tensor
        bool (N, H, W): the edges.
    """
    image = image.to(torch.float32)
    dx = correlate(image, _SOBEL_X, mode="nearest").round().to(torch.int64)
    dy = correlate(image, _SOBEL_X.T.copy(), mode="nearest").round().to(torch.int64)
    magnitude = dx.abs() + dy.abs()
    padded = F.pad(magnitude, (1, 1, 1, 1))  # zeros outside, as OpenCV's magnitude buffer
    height, width = image.shape[-2:]

    def at(row: int, col: int) -> torch.Tensor:  # the magnitude of the neighbour (row, col)
        return padded[..., 1 + row : 1 + row + height, 1 + col : 1 + col + width]

    ax, ay = dx.abs(), dy.abs() << 15
    tg22 = ax * _TG22
    horizontal = ay < tg22
    vertical = ~horizontal & (ay > tg22 + (ax << 16))
    opposite = (dx ^ dy) < 0  # the derivatives' signs differ: the 45-degree diagonal
    m = magnitude
    peak_h = (m > at(0, -1)) & (m >= at(0, 1))
    peak_v = (m > at(-1, 0)) & (m >= at(1, 0))
    peak_d = torch.where(
        opposite, (m > at(-1, 1)) & (m > at(1, -1)), (m > at(-1, -1)) & (m > at(1, 1))
    )
    peak = torch.where(horizontal, peak_h, torch.where(vertical, peak_v, peak_d))
    weak = peak & (m > low)
    edges = weak & (m > high)
    flat_weak = weak.reshape(-1, 1, height, width).to(torch.float32)
    grown = edges.reshape(-1, 1, height, width).to(torch.float32)
    # Only the images whose edges still grow are dilated again: most settle in a few rounds,
    # and one long chain of weak pixels would otherwise keep the whole batch busy.
    active = torch.arange(len(grown), device=grown.device)
    while len(active):
        before = grown.index_select(0, active)
        within = flat_weak.index_select(0, active)
        after = before
        for _ in range(4):  # a few dilations between checks for convergence
            after = F.max_pool2d(after, 3, stride=1, padding=1).mul_(within)
        after = torch.maximum(after, before)
        grown.index_copy_(0, active, after)
        active = active[(after != before).flatten(1).any(1)]
    return grown.reshape(image.shape) > 0


def chamfer_distance(zero: torch.Tensor, limit: float) -> torch.Tensor:
    """``cv2.distanceTransform(mask, cv2.DIST_L2, 5)`` truncated at ``limit``: each pixel's
    distance to the nearest ``zero`` pixel along paths of the 5x5 chamfer mask (steps of 1
    along an axis, 1.4 diagonally and 2.1969 for a knight's move), the image's outside never
    near.

    OpenCV's two raster passes are sequential; here every round relaxes ``d = min(d, d[q] + w)``
    over the whole mask at once, until nothing changes (the same minimal path lengths, in at most
    about ``limit`` rounds since every step is at least 1), summed in float32 as OpenCV does.

    Parameters
    ----------
    zero : torch.Tensor
        bool (N, H, W): the pixels at distance 0.
    limit : float
        Distances above it are returned as ``limit`` (``cv2.threshold(..., THRESH_TRUNC)``).

    Returns
    -------
    torch.Tensor
        float32 (N, H, W) in [0, limit].
    """
    height, width = zero.shape[-2:]
    axial, diagonal, knight = _CHAMFER_WEIGHTS
    cap = float(limit)
    # The distances live in the middle of a frame of two pixels at ``limit`` (never nearer), and
    # every round writes into preallocated buffers: the rounds are memory-bound.
    padded = torch.full((*zero.shape[:-2], height + 4, width + 4), cap, device=zero.device)
    inner = padded[..., 2 : 2 + height, 2 : 2 + width]
    inner.masked_fill_(zero, 0.0)
    near = torch.empty((*zero.shape[:-2], height + 4, width), device=zero.device)
    far, centre = torch.empty_like(near), padded[..., 2 : 2 + width]
    steps, corners, jumps = (torch.empty_like(inner) for _ in range(3))
    rows, up1, down1 = slice(2, 2 + height), slice(1, 1 + height), slice(3, 3 + height)
    up2, down2 = slice(0, height), slice(4, 4 + height)
    for _ in range(int(math.ceil(limit)) + 2):
        # The mask's 16 offsets, grouped: minima over column offsets +-1 and +-2 first (on every
        # padded row), then over row offsets; then the one weight of each group added.
        torch.minimum(padded[..., 1 : 1 + width], padded[..., 3 : 3 + width], out=near)
        torch.minimum(padded[..., 0:width], padded[..., 4 : 4 + width], out=far)
        torch.minimum(centre[..., up1, :], centre[..., down1, :], out=steps)
        torch.minimum(steps, near[..., rows, :], out=steps)
        torch.minimum(near[..., up1, :], near[..., down1, :], out=corners)
        torch.minimum(near[..., up2, :], near[..., down2, :], out=jumps)
        torch.minimum(jumps, far[..., up1, :], out=jumps)
        torch.minimum(jumps, far[..., down1, :], out=jumps)
        steps.add_(axial)
        corners.add_(diagonal)
        jumps.add_(knight)
        torch.minimum(steps, corners, out=steps)
        torch.minimum(steps, jumps, out=steps)
        if not bool((steps < inner).any()):
            break
        torch.minimum(inner, steps, out=inner)
    return inner.clone()


def box_blur(image: torch.Tensor, eight_bit: bool) -> torch.Tensor:
    """``cv2.blur(image, (3, 3))``: the 3x3 mean with OpenCV's reflected border, summed in
    float64 as OpenCV does; on an 8-bit image (``eight_bit``) rounded to an integer as OpenCV
    saturates, else rounded to float32.

    Parameters
    ----------
    image : torch.Tensor
        (N, H, W).

    Returns
    -------
    torch.Tensor
        float32 (N, H, W).
    """
    total = correlate(correlate(image.to(torch.float64), _ONES[:, :1]), _ONES[:1, :])
    mean = total * (1.0 / 9.0)
    return torch.round(mean).to(torch.float32) if eight_bit else mean.to(torch.float32)


def equalize_hist(image: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image: the lookup table ``round(255 * (cdf(v) - cdf(v_min)) /
    (pixels - count(v_min)))`` from each image's own histogram (a constant image is kept).

    Parameters
    ----------
    image : torch.Tensor
        (N, H, W), integer values 0..255.

    Returns
    -------
    torch.Tensor
        float32 (N, H, W), integer values 0..255.
    """
    count = image.shape[0]
    levels = image.reshape(count, -1).to(torch.int64).clamp(0, 255)
    hist = torch.zeros((count, 256), dtype=torch.int64, device=image.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    total = levels.shape[1]
    lowest = levels.min(dim=1, keepdim=True).values
    first = hist.gather(1, lowest)  # the count of the lowest level
    cdf = torch.cumsum(hist, dim=1) - first
    scale = (255.0 / (total - first).clamp(min=1).to(torch.float32)).to(torch.float32)
    lut = torch.round(cdf.to(torch.float32) * scale).clamp(0, 255)
    lut = torch.where(first == total, torch.arange(256, device=image.device), lut)
    return lut.gather(1, levels).to(torch.float32).reshape(image.shape)


def spatter(x: torch.Tensor, level: tuple, random: SampleRandom, variant: str) -> torch.Tensor:
    """Liquid spattered on the lens: blurred, thresholded noise that becomes drops of water
    (lightened, with embossed rims) or of mud (brown, opaque).

    imagecorruptions' ``spatter`` and make_cifar_c.py's (the same code): ``liquid = N(mean,
    std)`` of shape (H, W), Gaussian-blurred by ``sigma``, zero below ``threshold``. Water
    (``mud == 0``): the liquid in 8 bits, its Canny edges (50, 150), the distance to them
    (truncated at 20), a 3x3 box blur, histogram equalisation, an emboss filter and a box blur
    again, all in 8 bits; ``m = liquid * dist``, scaled to a maximum of ``amount``; ``x + m *
    turquoise``. Mud (``mud == 1``): ``m`` = the liquid's support blurred by ``amount`` and zero
    below 0.8; ``x * (1 - m) + m * brown``.

    OpenCV's steps are re-implemented in torch (:func:`canny`, :func:`chamfer_distance`,
    :func:`equalize_hist`, :func:`box_blur` and the emboss filter, with its borders and 8-bit
    rounding); on the same liquid they give OpenCV's result pixel for pixel in the tests (the
    float32 distances may differ from OpenCV's in the last bit, from another order of additions
    along equally short paths). Simplifications: hysteresis by repeated dilation instead of
    OpenCV's stack, the chamfer distance by parallel relaxation instead of two raster passes (the
    same sets and minima). The 8-bit liquid wraps around above 255, as the reference's
    ``astype(np.uint8)`` does on x86 (a liquid above 1, seen in image corners).

    Parameters
    ----------
    x : torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    level : tuple
        ``(mean, std, sigma, threshold, amount, mud)``.
    random : SampleRandom
        One key per image; streams 0-1 (the liquid).
    variant : {"imagenet", "cifar"}
        Unused: both parameter sets use the same formula.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W), not clipped.
    """
    mean, std, sigma, threshold, amount, mud = level
    height, width = x.shape[-2:]
    liquid = random.normal((height, width), _LAYER_STREAM, float(mean), float(std))
    liquid = gaussian(liquid, float(sigma))
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    if mud:
        # Blurred in float64 (SciPy's accumulator), then float32 as skimage returns.
        mask = (liquid > threshold).to(torch.float64)
        m = gaussian(mask, float(amount)).to(torch.float32)
        m = torch.where(m < 0.8, 0.0, m)[:, None]
        color = torch.tensor(_MUD, dtype=torch.float32, device=x.device).reshape(1, 3, 1, 1)
        return x * (1.0 - m) + color * m
    # The reference's astype(np.uint8) wraps a liquid above 1 around (the Gaussian blur with
    # repeated borders leaves a corner nearly unaveraged, so it does happen there): so do we.
    liquid8 = torch.floor(liquid * 255.0).remainder_(256).to(torch.float32)
    edges = canny(liquid8, 50, 150)
    dist = chamfer_distance(edges, 20.0)
    dist = torch.floor(box_blur(dist, eight_bit=False))  # then astype(np.uint8) truncates
    dist = equalize_hist(dist)
    dist = correlate(dist, _EMBOSS).clamp(0, 255)  # filter2D to CV_8U saturates
    dist = box_blur(dist, eight_bit=True)
    m = liquid8 * dist
    top = m.reshape(len(m), -1).max(dim=1).values.reshape(-1, 1, 1)
    # No liquid at all leaves m = 0 (the reference divides 0 by 0 and ends with 0 too, by
    # np.uint8 of NaN; here the image is just kept).
    m = (m / top.clamp(min=1e-12) * float(amount))[:, None]
    color = torch.tensor(_WATER, dtype=torch.float32, device=x.device).reshape(1, 3, 1, 1)
    return x + m * color


# ---------------------------------------------------------------------------------------------
# The catalogue's entries
# ---------------------------------------------------------------------------------------------

CORRUPTIONS: tuple[CommonCorruption, ...] = (
    CommonCorruption(
        name="snow",
        kind="weather",
        function=snow,
        levels={
            "imagenet": (
                (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
                (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
            ),
            "cifar": (
                (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
                (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
            ),
        },
    ),
    CommonCorruption(
        name="frost",
        kind="weather",
        function=frost,
        levels={
            "imagenet": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
            "cifar": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        },
        needs=frost_needs,
    ),
    CommonCorruption(
        name="fog",
        kind="weather",
        function=fog,
        levels={
            "imagenet": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
            "cifar": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        },
    ),
    CommonCorruption(
        name="spatter",
        kind="weather",
        function=spatter,
        levels={
            "imagenet": (
                (0.65, 0.3, 4, 0.69, 0.6, 0),
                (0.65, 0.3, 3, 0.68, 0.6, 0),
                (0.65, 0.3, 2, 0.68, 0.5, 0),
                (0.65, 0.3, 1, 0.65, 1.5, 1),
                (0.67, 0.4, 1, 0.65, 1.5, 1),
            ),
            "cifar": (
                (0.62, 0.1, 0.7, 0.7, 0.5, 0),
                (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1),
            ),
        },
    ),
)
