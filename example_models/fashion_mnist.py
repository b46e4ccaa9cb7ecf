"""A LeNet-5 trained on Fashion-MNIST, with weights trained by ``example_models/train.py``.

Use it as ``pytest --safety-model=example_models/fashion_mnist.py`` against the Fashion-MNIST
data (Xiao et al. 2017, arXiv:1708.07747). It is the zoo's baseline recipe, unchanged, on another
dataset: the modified LeNet-5 of :mod:`example_models.lenet` (same layers, about 186k parameters)
with the input normalisation set to Fashion-MNIST's training-set pixel mean and standard deviation,
trained by ``python -m example_models.train --model fashion_mnist`` (Adam, cosine decay, batch 128,
6 epochs, seed 0; the recipe and its training log are in ``weights/manifest.json``).

- input: float32 (N, 1, 28, 28), raw pixels in [0, 1], as safetycheck's contract demands;
- output: logits (N, 10) over Fashion-MNIST's ten classes, in torchvision's order (:data:`CLASSES`):
  0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
  9 Ankle boot;
- clean accuracy on the real Fashion-MNIST test set (all 10,000 images): 0.9091
  (``tests/real_data/test_fashion_mnist_example.py`` checks it against the manifest).
"""

from pathlib import Path

import torch
from torch import nn

try:
    from example_models.lenet import LeNet5
except ImportError:  # loaded by file path: safetycheck puts this folder on sys.path
    from lenet import LeNet5

from safetycheck.io.profiles import FASHION_MNIST_CLASSES

WEIGHTS = Path(__file__).with_name("weights") / "fashion_mnist.pt"
# The Fashion-MNIST training set's pixel mean and standard deviation (60,000 images, in [0, 1]).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
CLASSES = FASHION_MNIST_CLASSES  # torchvision's order, as the dataset profile names them


def build() -> LeNet5:
    """The untrained architecture (what the training script trains)."""
    return LeNet5(mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)


def safety_model() -> nn.Module:
    """The trained Fashion-MNIST model, as safetycheck loads it."""
    model = build()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    model.name = "fashion_mnist"
    return model.eval()
