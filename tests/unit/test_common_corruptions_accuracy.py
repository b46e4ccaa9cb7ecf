"""The random corruptions are faithful where it matters to a gate: a small CNN's accuracy on our
corrupted set is within 1 point of its accuracy on the reference's (``imagecorruptions``) corrupted
set of the same images.

The CNN is trained here, in seconds, to tell which of scikit-image's eight sample photographs a
32x32 crop comes from (real RGB content); it is tested on other crops of them, corrupted by us and
by the reference at severity 3. Both sets are corrupted with independent randomness, so the two
accuracies differ by sampling as well: with the same clean images, only the images whose verdict
flips count, and 1,000 images keep that within a point (the figures are printed with -s).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_corruptions import SAMPLE_PHOTOS, photos, reference_corrupt, to_tensor
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


def _accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def test_the_classifier_has_learnt_the_photographs(classifier, test_crops):
    crops, labels = test_crops
    assert _accuracy(classifier, to_tensor(crops), labels) > 0.8


@pytest.mark.parametrize("name", RANDOM)
def test_accuracy_on_our_set_is_within_a_point_of_the_references(name, classifier, test_crops):
    if registry()[name].unavailable():
        pytest.skip(registry()[name].unavailable())
    crops, labels = test_crops
    ours = corrupt(to_tensor(crops), name, SEVERITY, seed=0)
    ours = (ours * 255).round() / 255  # stored as 8-bit, as the cached sets are
    theirs = to_tensor(reference_corrupt(crops, name, SEVERITY, seed=0))
    clean = _accuracy(classifier, to_tensor(crops), labels)
    on_ours, on_theirs = _accuracy(classifier, ours, labels), _accuracy(classifier, theirs, labels)
    print(f"\n{name}: clean {clean:.3f}, ours {on_ours:.3f}, imagecorruptions {on_theirs:.3f}")
    assert abs(on_ours - on_theirs) <= 0.01, (name, clean, on_ours, on_theirs)
    assert np.isfinite(on_ours)
