"""The generated attack_invariants checks: they pass on honest models and catch what they claim
to."""

import pytest
import torch
from torch import nn

from safetycheck.measures.attacks import invariants
from safetycheck.measures.attacks.invariants import PROPERTIES, check_invariant


def batch(n=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=generator), torch.randint(
        0, 10, (n,), generator=generator
    )


class PositionDependent(nn.Module):
    """Adds the sample's position in the batch to its logits: samples influence each other."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        logits = self.net(x)
        return logits + 5.0 * torch.arange(len(x), device=x.device).unsqueeze(1) * torch.eye(10)[0]


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        return self.net(x) + torch.randn(len(x), 10)


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_every_invariant_holds_on_an_honest_model(tiny_model, name):
    images, labels = batch()
    result = check_invariant(name, tiny_model, images, labels, max_examples=5)
    assert result.passed, result.message
    assert result.examples == 5


def test_permutation_catches_a_batch_dependent_model():
    torch.manual_seed(0)
    images, labels = batch()
    result = check_invariant("permutation", PositionDependent().eval(), images, labels)
    assert not result.passed and "permuted batch" in result.message


def test_seeded_catches_a_randomised_model():
    torch.manual_seed(0)
    images, labels = batch()
    result = check_invariant("seeded", Noisy().eval(), images, labels)
    assert not result.passed and "not deterministic" in result.message


def test_in_ball_catches_an_attack_that_forgets_to_project(tiny_model, monkeypatch):
    import safetycheck.measures.attacks.pgd as pgd

    monkeypatch.setattr(pgd, "project", lambda x, images, norm, eps: x)
    images, labels = batch()
    result = check_invariant("in_ball", tiny_model, images, labels)
    assert not result.passed and "left the eps-ball" in result.message


def test_generated_checks_on_the_trained_model(lenet, mnist_test):
    for name in PROPERTIES:
        result = check_invariant(
            name, lenet, mnist_test.images[:8], mnist_test.labels[:8], max_examples=4
        )
        assert result.passed, f"{name}: {result.message}"
    assert invariants.TOLERANCE < 1e-3
