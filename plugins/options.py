"""Command-line options. Nothing here imports the engine: pytest loads this plugin in every run of
every project where safetycheck is installed, and a run that names no model must not pay for
importing torch (see :mod:`.settings` for turning options into run settings)."""

from __future__ import annotations

import pytest


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("safetycheck", "safety tests for image classifiers")
    group.addoption(
        "--safety-model",
        action="append",
        default=[],
        metavar="PATH",
        dest="safety_model",
        help="model to safety-test: a .py file with safety_model()/build_model()/model, or a "
        "TorchScript file; repeatable.",
    )
    group.addoption(
        "--safety-data",
        metavar="DIR",
        default=None,
        help="data root with MNIST/, FashionMNIST/, KMNIST/ in torchvision's raw layout "
        "(default: $SAFETYCHECK_DATA, then ~/.cache/safetycheck/data).",
    )
    group.addoption(
        "--safety-download",
        action="store_true",
        default=False,
        help="allow torchvision to download missing datasets into the data root.",
    )
    group.addoption(
        "--safety-device", default="cpu", metavar="DEVICE", help="cpu (default), cuda or cuda:N."
    )
    group.addoption(
        "--safety-precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="autocast precision of the attacks' forward and backward passes (default fp32); bf16/fp16 "
        "pay on GPUs, and add the attack_acceleration check against fp32.",
    )
    group.addoption(
        "--safety-channels-last",
        action="store_true",
        default=False,
        help="run the attacks with channels_last (NHWC) inputs and weights (pays on GPUs).",
    )
    group.addoption(
        "--safety-compile",
        action="store_true",
        default=False,
        help="torch.compile the model for the attacks (pays on GPUs for long sweeps; compiling costs "
        "tens of seconds).",
    )
    group.addoption(
        "--safety-threads",
        type=int,
        default=None,
        metavar="N",
        help="torch intra-op threads per process (default: torch's own choice in a serial run; under "
        "pytest-xdist each worker's share of the cores, capped by OMP_NUM_THREADS).",
    )
    group.addoption(
        "--safety-samples",
        type=int,
        default=None,
        metavar="N",
        help="evaluate every family on a stratified, seeded subset of N MNIST test images (and N "
        "images per OOD set), for quick pull-request gating; reports say so (default: whole sets).",
    )
    group.addoption(
        "--safety-attack-samples",
        type=int,
        default=None,
        metavar="N",
        help="MNIST test images attacked per sweep, a seeded random subset (default 1000, or the "
        "threshold file's attack_samples; under --safety-samples N, at most N/2 unless given here).",
    )
    group.addoption(
        "--safety-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="seed for the attacked subset and random starts (default 0).",
    )
    group.addoption(
        "--safety-eps",
        default=None,
        metavar="E1,E2,...",
        help="Linf epsilons to test, comma-separated (default 0.05,0.1,0.2,0.3).",
    )
    group.addoption(
        "--safety-checks",
        default=None,
        metavar="F1,F2,...",
        help="check families to run, comma-separated (default: the threshold file's checks, "
        "else the default suite).",
    )
    group.addoption(
        "--safety-thresholds",
        default=None,
        metavar="PATH",
        help="threshold file (TOML); default: [tool.safetycheck] in the rootdir's pyproject.toml, "
        "else the built-in profile.",
    )
    group.addoption(
        "--safety-json",
        default=None,
        metavar="PATH",
        help="write every measured check to PATH as JSON.",
    )
    group.addoption(
        "--safety-report",
        default=None,
        metavar="PATH",
        help="write a self-contained HTML report (pass/fail matrix, plots, run metadata) to PATH.",
    )
    group.addoption(
        "--safety-baseline",
        default=None,
        metavar="PATH",
        help="a previous run's --safety-json file: fail any check that regressed by more than its "
        "sampling noise.",
    )
    group.addoption(
        "--safety-update-thresholds",
        action="store_true",
        default=False,
        help="write the measured values (less --safety-threshold-margin) into the threshold file "
        "(--safety-thresholds, else pyproject.toml), keeping its comments; report the changes.",
    )
    group.addoption(
        "--safety-threshold-margin",
        type=float,
        default=0.01,
        metavar="M",
        help="margin left below (or above, for upper bounds) each measured value by "
        "--safety-update-thresholds (default 0.01).",
    )
    group.addoption(
        "--safety-mnist-c",
        choices=("generated", "official"),
        default="generated",
        help="MNIST-C images: generated here (seeded, cached; default) or the official static set "
        "under <data root>/mnist_c/.",
    )
    group.addoption(
        "--safety-allow-randomized",
        action="store_true",
        default=False,
        help="evaluate models whose eval-mode outputs are random (reports say so).",
    )
