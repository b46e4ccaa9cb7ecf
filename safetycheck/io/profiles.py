"""Dataset profiles: the unit that fixes the model contract and every family's defaults.

A :class:`DatasetProfile` says what a model tested on one dataset takes and returns (float32
images (N, C, H, W) in [0, 1] in, (N, K) logits out), where its test split comes from, the
radii its attacks are measured at, which sets its OOD checks compare against, and which
corruption set applies. ``mnist`` is the default and gives every result of the MNIST main job
unchanged.

Built in: ``mnist``, ``fashion_mnist`` and ``kmnist`` (torchvision's raw IDX layout), ``cifar10``
(the official python batches, ``cifar-10-batches-py/``) and ``svhn`` (``test_32x32.mat``).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from safetycheck.core.errors import ConfigError

if TYPE_CHECKING:
    from safetycheck.io.data import LabelledImages

# Linf radii in pixel units of [0, 1] images; the L2 radii of the MNIST family are PGD-L2's
# (Madry et al.'s L2 challenge uses 2.0), CIFAR's RobustBench's 0.5 and its neighbours.
MNIST_LINF = (0.05, 0.1, 0.2, 0.3)
MNIST_L2 = (0.5, 1.0, 1.5, 2.0)
CIFAR_LINF = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
CIFAR_L2 = (0.125, 0.25, 0.5, 1.0)
NOISE_SETS = ("uniform", "gaussian")

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DIGITS = tuple(str(digit) for digit in range(10))
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

# (root, split, download) -> the split; root is a DataRoot, a path or None (the default root).
Loader = Callable[[Any, str, bool], "LabelledImages"]


@dataclass(frozen=True)
class DatasetProfile:
    """One dataset's contract and defaults.

    ``epsilons`` maps a norm (``"linf"``, ``"l2"``) to its radii, ascending; ``headline`` is the
    Linf radius a report leads with. ``ood_sets`` names the default OOD sets (other datasets'
    test splits and the noise sets, generated at this profile's shape). ``corruptions`` names the
    corruption set that applies (``"mnist_c"``), None where none does yet.
    """

    name: str
    title: str
    channels: int
    height: int
    width: int
    classes: tuple[str, ...]
    loader: Loader = field(repr=False, compare=False)
    epsilons: Mapping[str, tuple[float, ...]] = field(default_factory=dict, compare=False)
    headline: float | None = None
    ood_sets: tuple[str, ...] = NOISE_SETS
    corruptions: str | None = None

    def __post_init__(self) -> None:
        where = f"dataset profile {self.name!r}"
        if not 1 <= self.channels <= 4 or self.height < 1 or self.width < 1:
            raise ConfigError(
                f"{where}: images must have 1 to 4 channels and a positive size, not "
                f"{self.channels}x{self.height}x{self.width}."
            )
        if len(self.classes) < 2:
            raise ConfigError(f"{where}: a classifier needs at least 2 classes.")
        for norm, radii in self.epsilons.items():
            if list(radii) != sorted(set(radii)) or any(r <= 0 for r in radii):
                raise ConfigError(f"{where}: {norm} epsilons must be positive and ascending.")
        object.__setattr__(self, "epsilons", MappingProxyType(dict(self.epsilons)))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.channels, self.height, self.width)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def contract(self) -> str:
        """The model contract in words, for error messages."""
        c, h, w = self.input_shape
        return f"float32 images (N, {c}, {h}, {w}) in [0, 1] in, logits (N, {self.num_classes}) out"

    def load_test(self, root: Any = None, download: bool = False) -> LabelledImages:
        """The profile's test split."""
        return self.loader(root, "test", download)


def _idx_loader(dataset: str) -> Loader:
    def load(root: Any, split: str, download: bool) -> LabelledImages:
        from safetycheck.io.data import load_split

        return load_split(dataset, split, root=root, download=download)

    return load


def _format_loader(function: str) -> Loader:
    """A loader of :mod:`safetycheck.io.formats`, imported when first used."""

    def load(root: Any, split: str, download: bool) -> LabelledImages:
        from safetycheck.io.data import resolve_data_root

        formats = importlib.import_module("safetycheck.io.formats")
        folder = root.path if hasattr(root, "path") else resolve_data_root(root).path
        loaded: LabelledImages = getattr(formats, function)(folder, split)
        return loaded

    return load


PROFILES: Mapping[str, DatasetProfile] = MappingProxyType(
    {
        profile.name: profile
        for profile in (
            DatasetProfile(
                "mnist",
                "MNIST",
                classes=DIGITS,
                loader=_idx_loader("mnist"),
                epsilons={"linf": MNIST_LINF, "l2": MNIST_L2},
                headline=0.3,
                ood_sets=("fmnist", "kmnist", *NOISE_SETS),
                corruptions="mnist_c",
                channels=1,
                height=28,
                width=28,
            ),
            DatasetProfile(
                "fashion_mnist",
                "Fashion-MNIST",
                classes=FASHION_MNIST_CLASSES,
                loader=_idx_loader("fashion_mnist"),
                epsilons={"linf": MNIST_LINF, "l2": MNIST_L2},
                headline=0.1,
                ood_sets=("mnist", "kmnist", *NOISE_SETS),
                corruptions="mnist_c",
                channels=1,
                height=28,
                width=28,
            ),
            DatasetProfile(
                "kmnist",
                "Kuzushiji-MNIST",
                classes=KMNIST_CLASSES,
                loader=_idx_loader("kmnist"),
                epsilons={"linf": MNIST_LINF, "l2": MNIST_L2},
                headline=0.1,
                ood_sets=("mnist", "fmnist", *NOISE_SETS),
                corruptions="mnist_c",
                channels=1,
                height=28,
                width=28,
            ),
            DatasetProfile(
                "cifar10",
                "CIFAR-10",
                classes=CIFAR10_CLASSES,
                loader=_format_loader("load_cifar10"),
                epsilons={"linf": CIFAR_LINF, "l2": CIFAR_L2},
                headline=8 / 255,
                ood_sets=("svhn", *NOISE_SETS),
                channels=3,
                height=32,
                width=32,
            ),
            DatasetProfile(
                "svhn",
                "SVHN",
                classes=DIGITS,
                loader=_format_loader("load_svhn"),
                epsilons={"linf": CIFAR_LINF, "l2": CIFAR_L2},
                headline=8 / 255,
                ood_sets=("cifar10", *NOISE_SETS),
                channels=3,
                height=32,
                width=32,
            ),
        )
    }
)

DEFAULT_PROFILE = PROFILES["mnist"]


def profile(name: str) -> DatasetProfile:
    """The built-in profile called ``name``; :class:`ConfigError` naming the nearest otherwise."""
    if isinstance(name, str) and name in PROFILES:
        return PROFILES[name]
    nearest = difflib.get_close_matches(str(name), list(PROFILES), n=1, cutoff=0.5)
    hint = f"did you mean {nearest[0]!r}? " if nearest else ""
    raise ConfigError(
        f"unknown dataset {name!r}; {hint}built-in profiles: {', '.join(PROFILES)}; or give an "
        ".npz file or an image folder."
    )
