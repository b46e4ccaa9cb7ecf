"""The trustworthiness diagnostics on real models: the trained LeNet passes every one, and the
same LeNet behind a hard input binarisation (example_models/masked.py) is flagged."""

import pytest
import torch

from safetycheck.core.errors import ConfigError
from safetycheck.measures.attacks import diagnostics

pytestmark = pytest.mark.real_data
N = 64


@pytest.fixture(scope="module")
def batch(mnist_test):
    return mnist_test.images[:N], mnist_test.labels[:N]


@pytest.fixture(scope="module")
def masked():
    from example_models.masked import safety_model

    return safety_model()


def _cheap(name, model, images, labels):
    """Each diagnostic with a CPU-CI budget."""
    return {
        "gradient_health": lambda: diagnostics.gradient_health(model, images, labels),
        "iterative_vs_single_step": lambda: diagnostics.iterative_vs_single_step(
            model, images, labels, steps=20
        ),
        "more_budget_not_weaker": lambda: diagnostics.more_budget_not_weaker(
            model, images, labels, steps=(5, 20), restarts=(1, 2)
        ),
        "large_eps_accuracy": lambda: diagnostics.large_eps_accuracy(
            model, images, labels, steps=20
        ),
        "black_box_vs_white_box": lambda: diagnostics.black_box_vs_white_box(
            model, images, labels, eps=0.4, n_queries=100, steps=20
        ),
    }[name]()


ALL = [
    "gradient_health",
    "iterative_vs_single_step",
    "more_budget_not_weaker",
    "large_eps_accuracy",
    "black_box_vs_white_box",
]


@pytest.mark.parametrize("name", ALL)
def test_the_trained_lenet_passes(name, lenet, batch):
    result = _cheap(name, lenet, *batch)
    assert result.passed, result.message
    assert result.measured["n"] == N


@pytest.mark.parametrize(
    "name", ["gradient_health", "large_eps_accuracy", "black_box_vs_white_box"]
)
def test_the_masked_model_is_flagged(name, masked, batch):
    result = _cheap(name, masked, *batch)
    assert not result.passed, result.message
    assert str(N) in result.message


def test_masked_model_numbers_say_why(masked, batch):
    health = diagnostics.gradient_health(masked, *batch)
    assert health.measured["zero_share"] == 1.0 and "zero on 100.0%" in health.message
    grey = _cheap("large_eps_accuracy", masked, *batch)
    assert (
        grey.measured["pgd_accuracy"] > 0.5
    )  # PGD is blind; a grey image would fool any honest model


def test_nan_gradients_are_reported_as_non_finite(batch):
    class Sqrt(torch.nn.Module):  # sqrt'(0) is infinite, and every MNIST digit has black pixels
        def forward(self, x):
            return x.sqrt().flatten(1).sum(1, keepdim=True) * torch.linspace(-1, 1, 10)

    result = diagnostics.gradient_health(Sqrt(), *batch)
    assert not result.passed and result.measured["non_finite_share"] == 1.0


def test_bad_arguments_raise_config_error(lenet, batch):
    with pytest.raises(ConfigError, match=r"max_share=1.5 is outside its valid range \[0.0, 1.0\]"):
        diagnostics.gradient_health(lenet, *batch, max_share=1.5)
    with pytest.raises(ConfigError, match=r"eps=-0.1"):
        diagnostics.large_eps_accuracy(lenet, *batch, eps=-0.1)
    with pytest.raises(ConfigError, match="fewer < more"):
        diagnostics.more_budget_not_weaker(lenet, *batch, steps=(40, 10))
