"""A gradient-masking model: the trained LeNet-5 behind a hard binarisation of its input.

``x > 0.5`` has a zero gradient almost everywhere (and no gradient at all in autograd), so every
gradient attack sees a flat loss and reports near-perfect robust accuracy, which is false: at Linf
eps 0.5 any stroke pixel can be pushed to 0.5 and erased. It exists to show that safetycheck's
trustworthiness diagnostics flag such a model instead of reporting it robust
(``pytest --safety-model=example_models/masked.py``).
"""

import torch
from torch import nn

try:
    from example_models.lenet import safety_model as _trained_lenet
except ImportError:  # loaded by file path: safetycheck puts this folder on sys.path
    from lenet import safety_model as _trained_lenet

THRESHOLD = 0.5


class Binarised(nn.Module):
    """``net((x > THRESHOLD).float())``: a non-differentiable step in front of ``net``."""

    def __init__(self, net: nn.Module, threshold: float = THRESHOLD):
        super().__init__()
        self.net = net
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x > self.threshold).to(x.dtype))


def safety_model() -> nn.Module:
    model = Binarised(_trained_lenet())
    model.name = "lenet_masked"
    return model.eval()
