"""Every command-line option, declared once: the pytest plugin (``--safety-samples``) and
``safetycheck study`` (``--samples``) both build their parsers from :data:`OPTIONS`, so a help text,
default, type or set of choices is written here and nowhere else.

Nothing here imports pytest, argparse or torch: pytest loads the plugin, and with it this table, in
every run of every project where safetycheck is installed.

A help text may name other options as ``{prefix}samples``; each front end fills in its own prefix
(``--safety-`` or ``--``), so the text names the option the user types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PYTEST = "pytest"  # `pytest --safety-NAME`
CLI = "cli"  # `safetycheck study --NAME`
PREFIXES = {PYTEST: "--safety-", CLI: "--"}
BOTH = (PYTEST, CLI)


@dataclass(frozen=True)
class Option:
    """One option. ``type`` None with ``flag`` is an on/off switch (default False); ``repeat``
    collects every occurrence in a list. ``engine`` options become fields of
    :class:`safetycheck.run.settings.Options` (the name with ``_`` for ``-``)."""

    name: str  # bare, with dashes: "attack-samples"
    help: str
    type: Callable | None = str
    default: Any = None  # its type is the option's: int, str, a list for ``repeat``...
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False
    repeat: bool = False
    front_ends: tuple[str, ...] = BOTH
    engine: bool = False
    notes: tuple[tuple[str, str], ...] = ()  # (front end, sentence added to its help text)

    @property
    def field(self) -> str:
        """The name in Python: the ``Options`` field, and the CLI's argparse ``dest``."""
        return self.name.replace("-", "_")

    def flag_name(self, front_end: str) -> str:
        return PREFIXES[front_end] + self.name

    def dest(self, front_end: str) -> str:
        """Where the parsed value lives: ``config.getoption(dest)`` or ``getattr(args, dest)``."""
        return self.flag_name(front_end).lstrip("-").replace("-", "_")

    def help_for(self, front_end: str) -> str:
        text = self.help.format(prefix=PREFIXES[front_end])
        extra = " ".join(note for where, note in self.notes if where == front_end)
        return f"{text} {extra}" if extra else text

    def add_arguments(self, front_end: str) -> dict:
        """The keyword arguments of ``addoption``/``add_argument`` (both take argparse's)."""
        kwargs: dict = {"dest": self.dest(front_end), "help": self.help_for(front_end)}
        if self.flag:
            kwargs.update(action="store_true", default=False)
            return kwargs
        kwargs["default"] = list(self.default or ()) if self.repeat else self.default
        if self.repeat:
            kwargs["action"] = "append"
        if self.type is not None and self.type is not str:
            kwargs["type"] = self.type
        if self.metavar is not None:
            kwargs["metavar"] = self.metavar
        if self.choices is not None:
            kwargs["choices"] = self.choices
        return kwargs


OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        "model to safety-test: a .py file with safety_model()/build_model()/model, or a "
        "TorchScript file; repeatable.",
        metavar="PATH",
        repeat=True,
        front_ends=(PYTEST,),
    ),
    Option(
        "out",
        "output folder (default: study/)",
        type=Path,
        default=Path("study"),
        front_ends=(CLI,),
    ),
    Option("only", "evaluate only these model names", metavar="NAME,...", front_ends=(CLI,)),
    Option(
        "dataset",
        "the dataset the models are tested on: a built-in profile (mnist, the default; "
        "fashion_mnist, kmnist, cifar10, svhn); it fixes the model contract, the test split and "
        "the defaults (epsilons, OOD sets, corruptions); else the threshold file's dataset.",
        metavar="NAME",
        engine=True,
    ),
    Option(
        "data",
        "data root with MNIST/, FashionMNIST/, KMNIST/ in torchvision's raw layout "
        "(default: $SAFETYCHECK_DATA, then ~/.cache/safetycheck/data).",
        metavar="DIR",
        engine=True,
    ),
    Option(
        "download",
        "allow torchvision to download missing datasets into the data root.",
        flag=True,
        engine=True,
    ),
    Option(
        "corruption-baseline",
        "results JSON (--safety-json) of a baseline model on the same dataset: adds the mean "
        "corruption error (corruptions_mce) and its relative form, the baseline's errors = 1.",
        metavar="PATH",
        engine=True,
    ),
    Option(
        "device",
        "cpu (default), cuda or cuda:N.",
        default="cpu",
        metavar="DEVICE",
        engine=True,
    ),
    Option(
        "precision",
        "autocast precision of the attacks' forward and backward passes (default fp32); bf16/fp16 "
        "pay on GPUs, and add the attack_acceleration check against fp32.",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        engine=True,
    ),
    Option(
        "channels-last",
        "run the attacks with channels_last (NHWC) inputs and weights (pays on GPUs).",
        flag=True,
        engine=True,
    ),
    Option(
        "compile",
        "torch.compile the model for the attacks (pays on GPUs for long sweeps; compiling costs "
        "tens of seconds).",
        flag=True,
        engine=True,
    ),
    Option(
        "dist-timeout",
        "under torchrun: seconds a rank waits for the others at each gather of results before the "
        "job fails (a rank that died or hangs); default 1800.",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        front_ends=(PYTEST,),
    ),
    Option(
        "threads",
        "torch intra-op threads per process (default: torch's own choice in a serial run; under "
        "pytest-xdist each worker's share of the cores, capped by OMP_NUM_THREADS).",
        type=int,
        metavar="N",
        front_ends=(PYTEST,),
    ),
    Option(
        "samples",
        "evaluate every family on a stratified, seeded subset of N MNIST test images (and N "
        "images per OOD set), for quick pull-request gating; reports say so (default: whole sets).",
        type=int,
        metavar="N",
        engine=True,
    ),
    Option(
        "early-stop",
        "stop an attack sweep once every epsilon's verdict is known: the images are attacked in "
        "blocks of 100, in the seeded order, until an anytime-valid confidence sequence of each "
        "robust accuracy lies wholly on one side of its threshold; on, off, or auto (the "
        "default: on under {prefix}samples, off for the full gate).",
        default="auto",
        choices=("auto", "on", "off"),
        front_ends=(PYTEST,),
        engine=True,
    ),
    Option(
        "early-stop-alpha",
        "error rate of {prefix}early-stop: the chance that a sweep stops with a verdict the "
        "whole sweep would reverse, per check; in (0, 1), default 0.01.",
        type=float,
        default=0.01,
        metavar="A",
        front_ends=(PYTEST,),
        engine=True,
    ),
    Option(
        "attack-samples",
        "MNIST test images attacked per sweep, a seeded random subset (default 1000, or the "
        "threshold file's attack_samples; under {prefix}samples N, at most N/2 unless given here).",
        type=int,
        metavar="N",
        engine=True,
    ),
    Option(
        "seed",
        "seed for the attacked subset and random starts (default 0).",
        type=int,
        metavar="SEED",
        engine=True,
    ),
    Option(
        "eps",
        "Linf epsilons to test, comma-separated (default 0.05,0.1,0.2,0.3).",
        metavar="E1,E2,...",
        engine=True,
    ),
    Option(
        "checks",
        "check families to run, comma-separated (default: the threshold file's checks, "
        "else the default suite).",
        metavar="F1,F2,...",
        engine=True,
        notes=((CLI, "'default' stands for the default suite (e.g. default,apgd)."),),
    ),
    Option(
        "thresholds",
        "threshold file (TOML);",
        metavar="PATH",
        notes=(
            (
                PYTEST,
                "default: [tool.safetycheck] in the rootdir's pyproject.toml, else the "
                "built-in profile.",
            ),
            (CLI, "default: the built-in profile."),
        ),
    ),
    Option(
        "manifest",
        "training manifest for the study's training table (default: weights/manifest.json "
        "beside the first model file, if present)",
        type=Path,
        metavar="PATH",
        front_ends=(CLI,),
    ),
    Option(
        "json",
        "write every measured check to PATH as JSON.",
        metavar="PATH",
        front_ends=(PYTEST,),
    ),
    Option(
        "report",
        "write a self-contained HTML report (pass/fail matrix, plots, run metadata) to PATH.",
        metavar="PATH",
        front_ends=(PYTEST,),
    ),
    Option(
        "baseline",
        "a previous run's {prefix}json file: fail any check that regressed by more than its "
        "sampling noise.",
        metavar="PATH",
        front_ends=(PYTEST,),
    ),
    Option(
        "baseline-alpha",
        "family-wise error rate of the paired regression tests against {prefix}baseline, per "
        "model (McNemar's exact test on the images both runs scored, Holm-corrected over the "
        "model's checks); in (0, 1), default 0.05.",
        type=float,
        default=0.05,
        metavar="A",
        front_ends=(PYTEST,),
    ),
    Option(
        "update-thresholds",
        "write the measured values (less {prefix}threshold-margin) into the threshold file "
        "({prefix}thresholds, else pyproject.toml), keeping its comments; report the changes.",
        flag=True,
        front_ends=(PYTEST,),
    ),
    Option(
        "threshold-margin",
        "margin left below (or above, for upper bounds) each measured value by "
        "{prefix}update-thresholds (default 0.01).",
        type=float,
        default=0.01,
        metavar="M",
        front_ends=(PYTEST,),
    ),
    Option(
        "mnist-c",
        "MNIST-C images: generated here (seeded, cached; default) or the official static set "
        "under <data root>/mnist_c/.",
        default="generated",
        choices=("generated", "official"),
        front_ends=(PYTEST,),
        engine=True,
    ),
    Option(
        "allow-randomized",
        "evaluate models whose eval-mode outputs are random (reports say so).",
        flag=True,
        front_ends=(PYTEST,),
        engine=True,
    ),
)

BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}


def options_for(front_end: str) -> tuple[Option, ...]:
    return tuple(option for option in OPTIONS if front_end in option.front_ends)


def default(name: str) -> Any:
    """An option's default (False for a switch): what ``Options`` falls back to."""
    option = BY_NAME[name.replace("_", "-")]
    return False if option.flag else option.default


def engine_values(front_end: str, value_of: Callable[[str], object]) -> dict:
    """The keyword arguments of ``safetycheck.run.settings.Options`` from one front end's parsed
    options: ``value_of(dest)`` is ``config.getoption`` or ``getattr(args, ...)``. Engine options
    that this front end lacks keep their defaults."""
    return {
        option.field: value_of(option.dest(front_end))
        for option in options_for(front_end)
        if option.engine
    }
