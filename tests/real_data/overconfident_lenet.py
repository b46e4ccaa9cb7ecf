"""The example LeNet with its logits sharpened by 1.25 (a softmax temperature of 0.8): the same
predictions, a slightly worse OOD detector by maximum softmax probability (AUROC against
Fashion-MNIST 0.9923 -> 0.9913), the paired OOD gate's test case (issue #21). Every image's score
moves the same way, so DeLong's paired test sees the loss (z of about 14) that the two runs'
bootstrap intervals combined in quadrature do not (a difference of 0.0010 against a noise of
0.0015)."""

import torch

from example_models.lenet import safety_model as original_lenet

SHARPENING = 1.25


class Sharpened(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * SHARPENING


def safety_model() -> torch.nn.Module:
    model = Sharpened(original_lenet())
    model.name = "lenet"  # the release under test, compared with the baseline lenet's results
    return model.eval()
