"""A small CNN of the kind certified training works with, trained with interval bound propagation
(IBP; Gowal et al. 2018, "On the Effectiveness of Interval Bound Propagation for Training
Verifiably Robust Models", arXiv:1810.12715) by ``example_models/train.py``.

Use it as ``pytest --safety-model=example_models/small_cnn.py --safety-checks=certified,pgd_linf``.
Wong & Kolter's "small" MNIST network (2018): two strided 4x4 convolutions (16, 32 channels),
ReLU, a hidden layer of 100 and the 10 logits, with MNIST's normalisation inside (pixels in
[0, 1] in, as safetycheck's contract asks). No max pooling: every layer has a tight linear
relaxation, so IBP and CROWN bounds stay useful and the ``certified`` family shows non-trivial
numbers.
"""

from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).with_name("weights") / "ibp_small_cnn.pt"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class SmallCNN(nn.Module):
    """conv4x4/2(16) - ReLU - conv4x4/2(32) - ReLU - fc(100) - ReLU - fc(10); about 166k
    parameters."""

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 100),
            nn.ReLU(),
        )
        self.head = nn.Linear(100, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, 100), for feature-based OOD scores."""
        return self.body((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def safety_model() -> nn.Module:
    """The IBP-trained small CNN, as safetycheck loads it."""
    model = SmallCNN()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    model.name = "ibp_small_cnn"
    model.family = "certified training"
    return model.eval()
