"""The random corruptions are faithful where it matters to a gate: a small CNN's accuracy on our
corrupted set is within 1 point of its accuracy on the reference's (``imagecorruptions``) corrupted
set of the same images.

The CNN is trained here, in seconds, to tell which of scikit-image's eight sample photographs a
32x32 crop comes from (real RGB content); it is tested on other crops of them, corrupted by us and
by the reference at severity 3. Both sets are corrupted with independent randomness, so the two
accuracies differ by sampling as well, and by a lot for some corruptions: one set of 1,000 frost
images has a standard error of a point by itself (which of five photographs lies on an image
decides its verdict). So each comparison draws blocks of 1,000 corrupted images (the same crops,
another seed per block, on both sides) until the standard error of the difference is at most
0.3 points, and then asks for a difference of at most 1 point: more than three standard errors,
so a failure means a real difference, not bad luck (the figures are printed with -s).
"""

from __future__ import annotations

import pytest
import torch
from reference_corruptions import (
    SAMPLE_PHOTOS,
    frost_photographs_read_once,
    photos,
    reference_corrupt,
    to_tensor,
)
from torch import nn

from safetycheck import corrupt
from safetycheck.measures.common_corruptions import registry

RANDOM = [name for name, c in registry().items() if not c.deterministic]
SIDE, TRAIN, TEST, SEVERITY = 32, 4000, 1000, 3
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    images = to_tensor(photos(SIDE, TRAIN, seed=11))
    labels = torch.arange(TRAIN) % len(SAMPLE_PHOTOS)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 6 * 6, len(SAMPLE_PHOTOS)),
    )  # fmt: skip
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(6):
        order = torch.randperm(TRAIN)
        for start in range(0, TRAIN, 100):
            batch = order[start : start + 100]
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def test_crops():
    return photos(SIDE, TEST, seed=12), torch.arange(TEST) % len(SAMPLE_PHOTOS)


def _correct(model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) float: 1 where the model classifies the image right."""
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float()


def test_the_classifier_has_learnt_the_photographs(classifier, test_crops):
    crops, labels = test_crops
    assert float(_correct(classifier, to_tensor(crops), labels).mean()) > 0.8


TARGET_ERROR, TOLERANCE, MAX_BLOCKS = 0.003, 0.01, 30


@pytest.mark.parametrize("name", RANDOM)
def test_accuracy_on_our_set_is_within_a_point_of_the_references(name, classifier, test_crops):
    if registry()[name].unavailable():
        pytest.skip(registry()[name].unavailable())
    crops, labels = test_crops
    differences = []  # per image and block: ours correct - the reference's correct (-1, 0, 1)
    for block in range(MAX_BLOCKS):
        ours = corrupt(to_tensor(crops), name, SEVERITY, seed=block)
        ours = (ours * 255).round() / 255  # stored as 8-bit, as the cached sets are
        with frost_photographs_read_once():
            theirs = to_tensor(reference_corrupt(crops, name, SEVERITY, seed=block))
        difference = _correct(classifier, ours, labels) - _correct(classifier, theirs, labels)
        differences.append(difference)
        pooled = torch.cat(differences)
        error = float(pooled.std() / len(pooled) ** 0.5)
        if block >= 1 and error <= TARGET_ERROR:
            break
    gap = float(pooled.mean())
    clean = float(_correct(classifier, to_tensor(crops), labels).mean())
    print(
        f"\n{name}: clean {clean:.3f}, ours - imagecorruptions {gap * 100:+.2f} points "
        f"(standard error {error * 100:.2f}) over {len(pooled):,} images"
    )
    assert error <= TARGET_ERROR, f"{MAX_BLOCKS} blocks did not pin the difference down"
    assert abs(gap) <= TOLERANCE, (name, clean, gap, error)
