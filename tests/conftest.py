"""Shared fixtures of the project's own tests.

Real-data fixtures read ``$SAFETYCHECK_DATA``; without it they skip, and ``.ci/run`` (which sets
it) fails the run if any real-data test was skipped, so real-data tests always run in CI.
"""

import os

import pytest
import torch

# pytester's in-process runs drop the modules they imported when they end. torch imports
# torch._dynamo lazily (torch.manual_seed does), and a second import of it re-registers a torch
# operator library and fails; importing it here, before any run, keeps it loaded throughout.
# (This is torch's own state; safetycheck's registry has none: families are found, not registered.)
import torch._dynamo

from safetycheck.io.data import load_split, resolve_data_root

# The suite's one input from the environment: where the real data is (read once, here). Every other
# SAFETYCHECK_* variable is a user's setting that must not change a verdict: see `hermetic_env`.
DATA_ENV_VAR = "SAFETYCHECK_DATA"
REAL_DATA = os.environ.get(DATA_ENV_VAR)

REAL_DATA_SKIP = (
    "real data unavailable: set SAFETYCHECK_DATA to a folder with MNIST/FashionMNIST/KMNIST raw "
    "files"
)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch):
    """Clear every SAFETYCHECK_* variable (a user's SAFETYCHECK_CACHE, say) before each test, and
    put back only the real-data root; a test that needs one of them sets it itself."""
    for name in [name for name in os.environ if name.startswith("SAFETYCHECK_")]:
        monkeypatch.delenv(name)
    if REAL_DATA:
        monkeypatch.setenv(DATA_ENV_VAR, REAL_DATA)


@pytest.fixture(scope="session")
def data_root():
    if not REAL_DATA:
        pytest.skip(REAL_DATA_SKIP)
    return resolve_data_root()


@pytest.fixture(scope="session")
def mnist_test(data_root):
    """The real MNIST test set: images float32 (10000, 1, 28, 28) in [0, 1], labels int64."""
    return load_split("mnist", "test", root=data_root)


@pytest.fixture(scope="session")
def lenet():
    """The trained example LeNet-5 (0.9927 clean accuracy), in eval mode, on the CPU."""
    from example_models.lenet import safety_model

    return safety_model()


@pytest.fixture
def tiny_model():
    """A small untrained CNN honouring the contract, seeded, for fast unit and property tests."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 5, stride=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 12 * 12, 10),
    ).eval()
