"""An undefended linear (softmax regression) classifier on raw pixels: the textbook non-robust
model (Goodfellow et al. 2014 traced adversarial examples to linearity). About 92% clean accuracy
and almost no robustness at MNIST's usual radii, which makes it the model on which an attack
cascade's savings show (docs/PERFORMANCE.md): ``pytest --safety-model=example_models/linear.py``.
"""

from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).with_name("weights") / "linear.pt"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class LinearClassifier(nn.Module):
    """Normalise, flatten, one Linear(784, 10); ``features`` is the normalised input (for OOD)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MNIST_MEAN))
        self.register_buffer("std", torch.tensor(MNIST_STD))
        self.head = nn.Linear(784, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def safety_model() -> nn.Module:
    model = LinearClassifier()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    model.name = "linear"
    return model.eval()
