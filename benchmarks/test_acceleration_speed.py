"""What the attack accelerations buy, and whether they weaken the attack, in one run.

For each :class:`~safetycheck.measures.acceleration.Acceleration` (plain fp32, bf16 autocast, fp16
on CUDA, channels_last, torch.compile) on the example LeNet: PGD image-steps per second (ratio to
plain fp32 in the same run) and robust accuracy at Linf eps 0.1 (PGD-40, the same images and seed)
against plain fp32's, the comparison the ``attack_acceleration`` check makes in a user's run.
``torch.compile`` also reports its one-off compile time; it is left out of the quick mode (tens of
seconds of compiling on a CPU). Commands::

    SAFETYCHECK_DATA=... pytest benchmarks/test_acceleration_speed.py -p no:randomly -s   # full
    SAFETYCHECK_DATA=... pytest benchmarks/test_acceleration_speed.py --benchmark-disable  # quick
"""

import copy
import time

import pytest
import torch

from safetycheck.measures.acceleration import Acceleration, accelerate
from safetycheck.measures.attacks import PGD
from safetycheck.measures.robustness import robust_accuracy_sweep

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
VARIANTS = {
    "fp32": Acceleration(),
    "bf16": Acceleration("bf16"),
    "fp16": Acceleration("fp16"),
    "channels_last": Acceleration(channels_last=True),
    "bf16+channels_last": Acceleration("bf16", channels_last=True),
    "compile": Acceleration(compile=True),
}
STEPS = 10
RESULTS: dict = {}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_acceleration(benchmark, lenet, mnist_test, quick, variant, device):
    if variant == "fp16" and device == "cpu":
        pytest.skip("fp16 autocast is a GPU format; on the CPU bf16 is the reduced precision")
    if quick and variant in ("compile", "bf16+channels_last"):
        pytest.skip(
            "full mode only: compiling costs tens of seconds on a CPU, and the pair adds little to "
            "a smoke run"
        )
    model = copy.deepcopy(lenet).to(device).eval()  # channels_last converts the weights in place
    n = 32 if quick else (200 if device == "cpu" else 4096)
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(len(mnist_test.labels), generator=generator)[:n]
    images, labels = mnist_test.images[index].to(device), mnist_test.labels[index].to(device)

    start = time.perf_counter()
    attacked = accelerate(model, VARIANTS[variant], torch.device(device))
    _sync()
    setup_seconds = time.perf_counter() - start
    # eps 0.01: almost no image leaves the batch, so every round does images x steps of work
    attack = PGD(0.01, steps=STEPS, step_size=0.0025)
    attack(attacked, images[:8], labels[:8])  # warm-up (and compile for the shrinking shapes)
    times = []

    def run():
        _sync()
        begin = time.perf_counter()
        attack(attacked, images, labels)
        _sync()
        times.append(time.perf_counter() - begin)

    benchmark.pedantic(run, rounds=1 if quick else 3, iterations=1)
    rate = n * STEPS / min(times)
    with torch.no_grad():
        clean = model(images).argmax(1) == labels
    sweep = robust_accuracy_sweep(
        attacked,
        images,
        labels,
        (0.1,),
        [("pgd_linf", lambda eps: PGD(eps=eps, seed=0))],
        clean_correct=clean.cpu(),
    )
    RESULTS.setdefault(device, {})[variant] = {
        "rate": rate,
        "robust": sweep.accuracy(0.1),
        "setup": setup_seconds,
        "n": n,
    }
    benchmark.extra_info.update(
        image_steps_per_second=rate, robust_accuracy_eps_0_1=sweep.accuracy(0.1)
    )
    assert rate > 0 and 0.0 <= sweep.accuracy(0.1) <= clean.float().mean().item()


def test_report(quick, capsys):
    """Ratios to plain fp32 in the same run; an acceleration that weakens the attack fails here."""
    if not RESULTS:
        pytest.skip("no acceleration measured in this run (deselected)")
    for device, rows in RESULTS.items():
        reference = rows.get("fp32")
        lines = [
            f"[{device}, {torch.get_num_threads()} threads{', quick' if quick else ''}] PGD "
            "image-steps/s, robust accuracy at eps 0.1 (PGD-40):"
        ]
        for name, row in rows.items():
            ratio = f"{row['rate'] / reference['rate']:.2f}x fp32" if reference else ""
            lines.append(
                f"  {name:19s} {row['rate']:10.0f} ({ratio}); robust {row['robust']:.4f} on "
                f"{row['n']}; set-up {row['setup']:.1f} s"
            )
        with capsys.disabled():
            print("\n" + "\n".join(lines))
        if reference:
            for name, row in rows.items():
                # the attack_acceleration check's bound: at most 2 points above fp32
                assert row["robust"] <= reference["robust"] + 0.02, (device, name, row, reference)
