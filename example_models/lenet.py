"""The modified LeNet-5 commonly used on MNIST, with weights trained by ``example_models/train.py``.

Use it as ``pytest --safety-model=example_models/lenet.py``. Modified from LeCun et al. (1998):
32 and 64 convolution channels, ReLU and max pooling instead of tanh and subsampling, and the
input normalisation inside the model, so that it takes raw pixels in [0, 1] as safetycheck's
contract demands (attacks then work in pixel space, where epsilons are meant).
"""

from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).with_name("weights") / "lenet.pt"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class LeNet5(nn.Module):
    """conv5x5(32) - pool - conv5x5(64) - pool - fc(120) - fc(84) - fc(10); about 186k
    parameters."""

    def __init__(self, width: int = 1, mean: float = MNIST_MEAN, std: float = MNIST_STD):
        # mean, std: the input normalisation, the training set's pixel statistics (MNIST's unless
        # the model is trained on another dataset: example_models/fashion_mnist.py)
        super().__init__()
        c1, c2 = 32 * width, 64 * width
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
        )
        self.head = nn.Linear(84, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, 84), for feature-based OOD scores."""
        return self.body(self.conv((x - self.mean) / self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def safety_model() -> nn.Module:
    """The trained baseline, as safetycheck loads it."""
    model = LeNet5()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    model.name = "lenet"
    return model.eval()
