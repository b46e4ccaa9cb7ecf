"""Speed of the common corruptions (issue #19) against the reference, ``imagecorruptions``, measured
side by side in one run:

    pytest benchmarks/test_common_corruption_speed.py -p no:randomly -s

Target: all 19 corruptions x 5 severities of 10,000 32x32 RGB images at least 20x faster than
``imagecorruptions`` on the same machine. The reference works one image at a time and would take
hours on the whole set, so it is timed on a few images per corruption and severity and scaled to
10,000 (said so in the output); ours is timed on the whole set (quick mode, ``--benchmark-disable``
in CI: 500 images). 224x224 is reported the same way. The images are crops of scikit-image's
sample photographs (real content: the blurs' and JPEG's cost does not depend on it, but the noise
corruptions' clipping does a little).

Both sides use the CIFAR-10 sized images with imagecorruptions' (ImageNet-C) parameters, the
reference's only parameter set; the ``cifar`` parameters cost the same in our code. Frost is
included on both sides (its photographs come from the installed imagecorruptions package).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from safetycheck.measures.common_corruptions import NAMES, SEVERITIES
from safetycheck.measures.common_corruptions.dataset import generate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))
from reference_corruptions import load_reference, photos, reference_corrupt, to_tensor

SETS = {  # side: (images ours, images ours in quick mode, reference images per corruption/severity)
    32: (10_000, 500, 4),
    224: (100, 10, 1),
}
FULL_SET = 10_000
SECONDS: dict = {}


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def _images(side: int, count: int) -> np.ndarray:
    base = photos(side, min(count, 400), seed=side)
    return np.resize(base, (count, *base.shape[1:]))  # repeats the crops: the cost is the same


@pytest.mark.parametrize("side", sorted(SETS))
def test_ours_all_19_by_5(benchmark, side, quick):
    full, small, _ = SETS[side]
    count = small if quick else full
    images = to_tensor(_images(side, count))
    per_corruption: dict[str, float] = {}

    def run():
        for name in NAMES:
            start = time.perf_counter()
            for severity in SEVERITIES:
                generate(images, name, severity, seed=0, params="imagenet")
            per_corruption[name] = time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1)
    total = sum(per_corruption.values())
    SECONDS[("ours", side)] = total / count
    benchmark.extra_info.update({f"{name}_s": round(s, 2) for name, s in per_corruption.items()})
    benchmark.extra_info.update(images=count, torch_threads=torch.get_num_threads())
    assert np.isfinite(total)


@pytest.mark.parametrize("side", sorted(SETS))
def test_reference_all_19_by_5(benchmark, side, reference, capsys):
    _, _, few = SETS[side]
    images = _images(side, few)
    per_corruption: dict[str, float] = {}

    def run():
        for name in NAMES:
            start = time.perf_counter()
            for severity in SEVERITIES:
                reference_corrupt(images, name, severity)
            per_corruption[name] = time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1)
    per_image = sum(per_corruption.values()) / few
    SECONDS[("reference", side)] = per_image
    benchmark.extra_info.update(
        {f"{name}_s_per_image": round(s / few, 3) for name, s in per_corruption.items()}
    )
    benchmark.extra_info["measured_images_per_corruption_and_severity"] = few
    ours = SECONDS.get(("ours", side))
    if ours is not None:
        slowest = sorted(per_corruption, key=per_corruption.get, reverse=True)[:3]
        with capsys.disabled():
            print(
                f"\ncommon corruptions, all 19 x 5 at {side}x{side}: ours {ours * 1e3:.1f} "
                f"ms/image, imagecorruptions {per_image * 1e3:.0f} ms/image (timed on {few} "
                f"per corruption and severity): {per_image / ours:.0f}x faster; 10,000 images: "
                f"ours {ours * FULL_SET / 60:.1f} min, reference {per_image * FULL_SET / 3600:.1f} "
                f"h (scaled); slowest in the reference: {', '.join(slowest)}"
            )
    assert np.isfinite(per_image)
