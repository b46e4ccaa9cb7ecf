"""Agreement with an independent implementation: on the trained LeNet and real MNIST, our attacks
must be at least as strong as torchattacks' with the same threat model and budget.

"At least as strong" up to sampling noise: both attacks start from random points, so on ``n``
images their robust accuracies differ by chance by about ``sqrt(p (1 - p) / n)``; we allow two of
those plus one sample. Our attacks count a sample as broken at any iterate (torchattacks' PGD only
looks at the last one), so in practice ours come out lower or equal.
"""

import math

import pytest
import torch

from safetycheck.measures.attacks import APGD, PGD

torchattacks = pytest.importorskip("torchattacks")

pytestmark = pytest.mark.real_data
N = 300  # images: enough to resolve a few points of accuracy, small enough for CPU CI


@pytest.fixture(scope="module")
def batch(mnist_test):
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(len(mnist_test.labels), generator=generator)[:N]
    return mnist_test.images[index], mnist_test.labels[index]


def _reference_accuracy(model, attack, images, labels) -> float:
    torch.manual_seed(0)  # torchattacks draws its random starts from the global generator
    adversarial = attack(images, labels)
    with torch.no_grad():
        return float((model(adversarial).argmax(dim=1) == labels).float().mean())


def _noise(accuracy: float, n: int) -> float:
    return 2 * math.sqrt(max(accuracy * (1 - accuracy), 0.01) / n) + 1 / n


def test_pgd_is_at_least_as_strong_as_torchattacks_pgd(lenet, batch):
    images, labels = batch
    eps, steps, step_size = (
        0.1,
        40,
        0.01,
    )  # Madry et al.'s MNIST schedule, at a radius where LeNet half survives
    ours = 1 - float(
        PGD(eps, steps=steps, step_size=step_size, seed=0)(lenet, images, labels)
        .fooled.float()
        .mean()
    )
    reference = _reference_accuracy(
        lenet,
        torchattacks.PGD(lenet, eps=eps, alpha=step_size, steps=steps, random_start=True),
        images,
        labels,
    )
    print(
        f"robust accuracy: ours {ours:.4f}, torchattacks {reference:.4f}, n={N}"
    )  # shown with -s or -rA
    print(f"PGD eps={eps}: ours {ours:.3f}, torchattacks {reference:.3f}, n={N}")
    assert 0.05 < reference < 0.95, (
        f"eps={eps} does not discriminate on this model: {reference:.3f}"
    )
    assert ours <= reference + _noise(reference, N), (
        f"our PGD leaves {ours:.3f} robust, torchattacks' {reference:.3f} "
        f"(n={N}, eps={eps}, {steps} steps of {step_size})"
    )


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_is_at_least_as_strong_as_torchattacks_apgd(lenet, batch, loss):
    images, labels = batch
    eps, steps = 0.1, 25
    ours = 1 - float(
        APGD(eps, loss=loss, steps=steps, seed=0)(lenet, images, labels).fooled.float().mean()
    )
    reference = _reference_accuracy(
        lenet,
        torchattacks.APGD(
            lenet, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss=loss, seed=0
        ),
        images,
        labels,
    )
    print(
        f"robust accuracy: ours {ours:.4f}, torchattacks {reference:.4f}, n={N}"
    )  # shown with -s or -rA
    print(f"APGD-{loss} eps={eps}: ours {ours:.3f}, torchattacks {reference:.3f}, n={N}")
    assert 0.05 < reference < 0.95
    assert ours <= reference + _noise(reference, N), (
        f"our APGD-{loss} leaves {ours:.3f} robust, torchattacks' {reference:.3f} "
        f"(n={N}, eps={eps}, {steps} steps)"
    )
