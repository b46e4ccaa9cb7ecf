"""Speed of the certified bounds (issue #20):

    SAFETYCHECK_DATA=../shared/data pytest benchmarks/test_certified_speed.py -p no:randomly -s

IBP on 1,000 MNIST test images of the example LeNet (target: under 1 s), CROWN-IBP on the same
1,000, full CROWN on a few images (seconds each on the LeNet: the intermediate bounds of its
18,432 first-layer neurons) scaled to 1,000, and both on the IBP-trained small CNN of the zoo,
with the certified accuracy each method reaches. Quick mode (``--benchmark-disable``, in CI):
100 images for IBP, 2 for full CROWN on the LeNet.
"""

from __future__ import annotations

import time

import pytest
import torch

from safetycheck.measures.certified import certify

CASES = (  # model, method, eps, images (full run), images (quick mode)
    ("lenet", "ibp", 0.01, 1000, 100),
    ("lenet", "crown-ibp", 0.01, 1000, 100),
    ("lenet", "crown", 0.01, 20, 2),
    ("ibp_small_cnn", "ibp", 0.1, 1000, 100),
    ("ibp_small_cnn", "crown", 0.1, 1000, 20),
)


def _model(name: str):
    if name == "lenet":
        from example_models.lenet import safety_model

        return safety_model()
    from example_models.zoo import load

    return load(name)


@pytest.mark.parametrize("name, method, eps, full, small", CASES)
def test_certified_bounds_speed(
    benchmark, mnist_test, quick, capsys, name, method, eps, full, small
):
    count = small if quick else full
    images, labels = mnist_test.images[:count], mnist_test.labels[:count]
    model = _model(name)
    certify(model, images[:2], labels[:2], eps, method=method)  # warm-up: tracing, allocation
    results: dict = {}

    def run():
        started = time.perf_counter()
        results["result"] = certify(model, images, labels, eps, method=method)
        results["seconds"] = time.perf_counter() - started

    benchmark.pedantic(run, rounds=1, iterations=1)
    result, seconds = results["result"], results["seconds"]
    per_thousand = seconds / count * 1000
    benchmark.extra_info.update(
        images=count,
        seconds=round(seconds, 3),
        seconds_per_1000=round(per_thousand, 2),
        certified=result.certified_accuracy,
        method_used=result.method,
        threads=torch.get_num_threads(),
    )
    with capsys.disabled():
        print(
            f"\ncertified bounds, {name} {method} (used {result.method}) at eps {eps:g}: "
            f"{seconds:.2f} s for {count} images ({per_thousand:.2f} s per 1,000), certified "
            f"{result.certified_accuracy:.3f}"
        )
    assert result.n == count and 0.0 <= result.certified_accuracy <= 1.0
