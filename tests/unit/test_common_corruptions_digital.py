"""The digital corruptions (brightness, contrast, saturate, pixelate, JPEG) against the references.

``params="imagenet"`` is compared with ``imagecorruptions`` 1.1.2 itself on real photographs;
``params="cifar"`` with a numpy / Pillow transcription of the formulas of Hendrycks'
``ImageNet-C/create_c/make_cifar_c.py`` written below (that script cannot be imported: it loads
CIFAR-10 and ImageMagick at import time). Agreement is measured as PSNR on the 8-bit outputs
(the references' own output type), at least 35 dB at every severity.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from reference_corruptions import photos, psnr, reference_corrupt, to_tensor, to_uint8

from safetycheck.measures.common_corruptions import corrupt
from safetycheck.measures.common_corruptions._filters import rgb_to_gray
from safetycheck.measures.common_corruptions.digital import CORRUPTIONS

DIGITAL = ("brightness", "contrast", "saturate", "pixelate", "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)
MIN_PSNR = 35.0

# make_cifar_c.py's levels, transcribed here independently of the module under test.
CIFAR_LEVELS = {
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}
# imagecorruptions' levels, for the sizes its corrupt() refuses (under 32 pixels).
IMAGENET_LEVELS = {"pixelate": (0.6, 0.5, 0.4, 0.3, 0.25), "jpeg_compression": (25, 18, 15, 10, 7)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these are small element-wise tensors that gain nothing from more,
    and on shared CI cores OpenMP's waiting threads make each op many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def transcription(images: np.ndarray, name: str, level, upscale=Image.BOX) -> np.ndarray:
    """make_cifar_c.py's formulas on uint8 (N, H, W, 3), one image at a time, uint8 out.

    The script hard-codes 32 for pixelate's sizes; ``int(side * c)`` is the same on 32x32 images.
    ``upscale`` is pixelate's enlarging filter (BOX there, NEAREST in imagecorruptions).
    """
    from skimage.color import hsv2rgb, rgb2hsv

    out = []
    for image in images:
        x = np.array(image) / 255.0
        if name == "brightness":
            hsv = rgb2hsv(x)
            hsv[:, :, 2] = np.clip(hsv[:, :, 2] + level, 0, 1)
            result = np.clip(hsv2rgb(hsv), 0, 1) * 255
        elif name == "saturate":
            hsv = rgb2hsv(x)
            hsv[:, :, 1] = np.clip(hsv[:, :, 1] * level[0] + level[1], 0, 1)
            result = np.clip(hsv2rgb(hsv), 0, 1) * 255
        elif name == "contrast":
            means = np.mean(x, axis=(0, 1), keepdims=True)
            result = np.clip((x - means) * level + means, 0, 1) * 255
        elif name == "jpeg_compression":
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=level)
            result = np.array(Image.open(buffer))
        elif name == "pixelate":
            height, width = image.shape[:2]
            small = Image.fromarray(image).resize(
                (int(width * level), int(height * level)), Image.BOX
            )
            result = np.array(small.resize((width, height), upscale))
        else:
            raise ValueError(name)
        out.append(np.uint8(result))
    return np.stack(out)


def non_square(height: int, width: int, count: int) -> np.ndarray:
    """uint8 (count, height, width, 3) crops of the photographs."""
    side = max(height, width)
    return np.ascontiguousarray(photos(side, count)[:, :height, :width])


@pytest.fixture(scope="module")
def imagenet_photos() -> dict[str, np.ndarray]:
    return {
        "64x64": photos(64, 8),
        "224x224": photos(224, 4),
        "40x56": non_square(40, 56, 4),
        "37x45": non_square(37, 45, 4),  # odd sizes: JPEG's padding to 8 and 16, chroma edges
    }


@pytest.fixture(scope="module")
def cifar_photos() -> np.ndarray:
    return photos(32, 16)


def severity_psnrs(ours_of, reference_of) -> list[float]:
    return [psnr(ours_of(severity), reference_of(severity)) for severity in SEVERITIES]


@pytest.mark.parametrize("shape", ["64x64", "224x224", "40x56", "37x45"])
@pytest.mark.parametrize("name", DIGITAL)
def test_imagenet_parameters_match_imagecorruptions(name, shape, imagenet_photos):
    images = imagenet_photos[shape]
    x = to_tensor(images)
    values = severity_psnrs(
        lambda severity: to_uint8(corrupt(x, name, severity)),
        lambda severity: reference_corrupt(images, name, severity),
    )
    assert min(values) >= MIN_PSNR, f"{name} {shape}: PSNR by severity {values}"


@pytest.mark.parametrize("name", DIGITAL)
def test_cifar_parameters_match_make_cifar_c(name, cifar_photos):
    x = to_tensor(cifar_photos)
    values = severity_psnrs(
        lambda severity: to_uint8(corrupt(x, name, severity, params="cifar")),
        lambda severity: transcription(cifar_photos, name, CIFAR_LEVELS[name][severity - 1]),
    )
    assert min(values) >= MIN_PSNR, f"{name}: PSNR by severity {values}"


@pytest.mark.parametrize("params", ["imagenet", "cifar"])
@pytest.mark.parametrize("shape", [(16, 16), (17, 23), (29, 18)])
@pytest.mark.parametrize("name", ["pixelate", "jpeg_compression"])
def test_small_images_match_pillow(name, shape, params):
    """Below imagecorruptions' 32-pixel minimum, pixelate and JPEG against Pillow directly."""
    images = non_square(*shape, 3)
    x = to_tensor(images)
    levels = IMAGENET_LEVELS[name] if params == "imagenet" else CIFAR_LEVELS[name]
    upscale = Image.NEAREST if params == "imagenet" else Image.BOX
    values = severity_psnrs(
        lambda severity: to_uint8(corrupt(x, name, severity, params=params)),
        lambda severity: transcription(images, name, levels[severity - 1], upscale),
    )
    assert min(values) >= MIN_PSNR, f"{name} {params} {shape}: PSNR by severity {values}"


def test_declarations():
    assert [c.name for c in CORRUPTIONS] == [
        "brightness",
        "contrast",
        "pixelate",
        "jpeg_compression",
        "saturate",
    ]
    for corruption in CORRUPTIONS:
        assert corruption.kind == "digital" and corruption.deterministic
        assert set(corruption.levels) == {"imagenet", "cifar"}
        assert all(len(levels) == 5 for levels in corruption.levels.values())
        np.testing.assert_allclose(corruption.levels["cifar"], CIFAR_LEVELS[corruption.name])


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """float32 (3, 3, 40, 56): non-square photographs, plus off-grid values (not 8-bit levels)."""
    x = to_tensor(non_square(40, 56, 3))
    x[1] = (x[1] * 0.9 + 0.05).clamp(0, 1)
    return x


@pytest.mark.parametrize("params", ["imagenet", "cifar"])
@pytest.mark.parametrize("name", DIGITAL)
def test_shape_dtype_range_and_batch_independence(name, params, batch):
    for severity in (1, 5):
        out = corrupt(batch, name, severity, params=params)
        assert out.shape == batch.shape and out.dtype == batch.dtype
        assert out.device == batch.device
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        # The digital corruptions are deterministic: the same images, whatever the seed.
        assert torch.equal(out, corrupt(batch, name, severity, seed=7, params=params))
        for k in range(len(batch)):
            alone = corrupt(
                batch[k : k + 1], name, severity, params=params, indices=torch.tensor([k])
            )
            assert torch.equal(out[k : k + 1], alone), f"image {k} depends on its batch"
    wide = corrupt(batch.double(), name, 3, params=params)
    assert wide.dtype == torch.float64 and wide.shape == batch.shape


@pytest.mark.parametrize("name", DIGITAL)
def test_grayscale_images(name, batch):
    gray = rgb_to_gray(batch).clamp(0, 1)
    out = corrupt(gray, name, 4)
    assert out.shape == gray.shape and out.dtype == gray.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # Treated as the reference treats them: three equal channels, corrupted, back to gray.
    rgb = corrupt(gray.expand(-1, 3, -1, -1).contiguous(), name, 4)
    assert torch.equal(out, rgb_to_gray(rgb).clamp(0, 1))


@pytest.mark.parametrize("shape", [(32, 32), (37, 45), (64, 64), (17, 23)])
def test_jpeg_code_is_pillows_bit_for_bit(shape):
    """The integer islow JPEG round trip equals Pillow's (libjpeg-turbo) on every sample, at the
    qualities of both parameter sets and the extremes (the int32 DCTs never overflow there)."""
    from safetycheck.measures.common_corruptions.digital import jpeg_code

    images = non_square(*shape, 3) if shape[0] != shape[1] else photos(shape[0], 6, seed=3)
    levels = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.int64)
    for quality in (1, 7, 25, 50, 80, 95, 100):
        ours = jpeg_code(levels, quality).permute(0, 2, 3, 1).numpy()
        for image, our in zip(images, ours, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=quality)
            assert np.array_equal(np.array(Image.open(buffer)), our), (shape, quality)
