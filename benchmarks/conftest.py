"""Fixtures of the benchmarks: the trained LeNet and a fixed slice of real MNIST.

Run them with ``pytest benchmarks`` (pytest-benchmark; not under xdist, which disables it), or
quickly with ``pytest benchmarks --benchmark-disable`` (one round each, fewer images).
"""

import os

import pytest
import torch

from safetycheck.io.data import load_split, resolve_data_root


@pytest.fixture(scope="session")
def mnist_test():
    if not os.environ.get("SAFETYCHECK_DATA"):
        pytest.skip(
            "real data unavailable: set SAFETYCHECK_DATA to a folder with the MNIST raw files"
        )
    return load_split("mnist", "test", root=resolve_data_root())


@pytest.fixture(scope="session")
def lenet():
    from example_models.lenet import safety_model

    return safety_model()


@pytest.fixture
def quick(request) -> bool:
    """True under --benchmark-disable: one round on fewer images, for a smoke run in CI."""
    return bool(request.config.getoption("benchmark_disable", False))


@pytest.fixture(scope="session", autouse=True)
def _threads():
    # Report the thread count the figures were taken with; torch's default is every core.
    return torch.get_num_threads()
