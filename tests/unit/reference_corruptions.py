"""The reference implementation, ``imagecorruptions`` (Michaelis et al. 2019, the ImageNet-C
corruptions of Hendrycks & Dietterich 2019 for images of any size), made importable on this
project's numpy 2, scikit-image 0.26 and setuptools, and real photographs to corrupt.

imagecorruptions 1.1.2 (its last release) imports ``pkg_resources`` (gone from setuptools 81),
uses ``np.float_`` (gone in numpy 2) and passes ``multichannel=True`` to ``skimage.filters.
gaussian`` (renamed ``channel_axis=-1`` in scikit-image 0.19, removed in 0.21). The shims below
restore exactly those three names with their old meaning, nothing else; the corruption code runs
unchanged.

Not a test module: imported by the corruption tests (``tests/unit`` is on their path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import types
import warnings

import numpy as np
import pytest


def load_reference():
    """The ``imagecorruptions`` module, or skip the test when it is not installed (it is in the
    ``dev`` extra, so CI has it)."""
    if importlib.util.find_spec("imagecorruptions") is None:
        pytest.skip("imagecorruptions (the reference) is not installed: pip install -e '.[dev]'")
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, name: str) -> str:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.origin is not None
            return os.path.join(os.path.dirname(spec.origin), name)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        # pytest's monkeypatch.syspath_prepend calls this whenever pkg_resources is loaded; a later
        # test in the same process (tests/plugin/test_entry_points.py) must not trip on the shim.
        shim.fixup_namespace_packages = lambda path: None  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
    with warnings.catch_warnings():  # its scipy.ndimage.interpolation import is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        import imagecorruptions
        import imagecorruptions.corruptions as corruptions

    original = corruptions.gaussian
    if not getattr(original, "_multichannel_shim", False):

        def gaussian(image, *args, multichannel=None, **kwargs):
            if multichannel:
                kwargs.setdefault("channel_axis", -1)
            return original(image, *args, **kwargs)

        gaussian._multichannel_shim = True  # type: ignore[attr-defined]
        corruptions.gaussian = gaussian
    return imagecorruptions


def reference_corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """The reference on a batch: uint8 (N, H, W, 3) in, uint8 (N, H, W, 3) out, one image at a
    time as the package works, numpy's global generator seeded once."""
    reference = load_reference()
    np.random.seed(seed)
    return np.stack(
        [reference.corrupt(image, severity=severity, corruption_name=name) for image in images]
    )


@contextlib.contextmanager
def frost_photographs_read_once():
    """Inside the block, the reference's ``frost`` reads and resizes each frost photograph once
    instead of once per image (``cv2.imread`` and ``cv2.resize`` of those photographs memoised):
    the same outputs, several times faster, for tests that need many reference frost images.
    Never used where the reference is timed."""
    corruptions = load_reference().corruptions
    real = corruptions.cv2
    reads: dict = {}
    resized: dict = {}

    class _ReadOnce:
        def __getattr__(self, name):
            return getattr(real, name)

        def imread(self, filename, *args):
            key = (filename, args)
            if key not in reads:
                reads[key] = real.imread(filename, *args)
                reads[key].setflags(write=False)
            return reads[key]

        def resize(self, src, *args, **kwargs):
            if not any(src is photo for photo in reads.values()):
                return real.resize(src, *args, **kwargs)
            key = (id(src), repr(args), repr(sorted(kwargs.items())))
            if key not in resized:
                resized[key] = real.resize(src, *args, **kwargs)
                resized[key].setflags(write=False)
            return resized[key]

    corruptions.cv2 = _ReadOnce()
    try:
        yield
    finally:
        corruptions.cv2 = real


SAMPLE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "stereo_motorcycle",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
)


def photos(size: int, count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, size, size, 3): crops of scikit-image's sample photographs (real RGB
    content), the first ones centred on each photograph, the rest at seeded random places,
    resized with area averaging when the photograph is smaller than the crop."""
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    sources = []
    for name in SAMPLE_PHOTOS:
        photo = getattr(data, name)()
        if isinstance(photo, tuple):  # stereo_motorcycle: (left, right, disparity)
            photo = photo[0]
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        photo = photo[..., :3]
        short = min(photo.shape[:2])
        if short < size:
            scale = size / short
            shape = (math.ceil(photo.shape[0] * scale), math.ceil(photo.shape[1] * scale))
            photo = (resize(photo, shape, anti_aliasing=True) * 255).round().astype(np.uint8)
        sources.append(photo)
    crops = []
    for k in range(count):
        photo = sources[k % len(sources)]
        rows, cols = photo.shape[0] - size, photo.shape[1] - size
        if k < len(sources):
            top, left = rows // 2, cols // 2
        else:
            top, left = int(rng.integers(0, rows + 1)), int(rng.integers(0, cols + 1))
        crops.append(photo[top : top + size, left : left + size])
    return np.stack(crops).astype(np.uint8)


def to_tensor(images: np.ndarray):
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).contiguous()


def to_uint8(images) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C), truncating as the reference's final
    ``np.uint8`` does."""
    return (images.permute(0, 2, 3, 1).double() * 255).clamp(0, 255).floor().byte().numpy()


def psnr(ours: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 batches (inf when equal)."""
    error = np.mean((ours.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return math.inf if error == 0 else 10 * math.log10(255.0**2 / error)


def abs_change_stats(corrupted: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """The distribution comparison of the random corruptions: each image's mean |corrupted -
    clean| (8-bit units), then the mean and the standard deviation of that over the images."""
    change = np.abs(corrupted.astype(np.float64) - clean.astype(np.float64))
    per_image = change.reshape(len(change), -1).mean(axis=1)
    return float(per_image.mean()), float(per_image.std())
