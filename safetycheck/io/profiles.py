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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
# The common corruptions need images of at least this side (their blur and zoom kernels).
COMMON_MIN_SIDE = 16
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

# (root, split, download) -> the split; root is a DataRoot, a path or None (the default root).
Loader = Callable[[Any, str, bool], "LabelledImages"]


@dataclass(frozen=True)
class DatasetProfile:
    """One dataset's contract and defaults.

    ``epsilons`` maps a norm (``"linf"``, ``"l2"``) to its radii, ascending; ``headline`` is the
    Linf radius a report leads with. ``ood_sets`` names the default OOD sets (other datasets'
    test splits and the noise sets, generated at this profile's shape). ``corruptions`` names the
    corruption set that applies: ``"mnist_c"`` (28x28 grayscale), ``"common"`` (the 19 common
    corruptions with the ``corruption_params`` parameter set), None where none does.
    ``corrupted`` is where a published corrupted set may be (a folder relative to the data root,
    or an absolute path): used instead of generating when present.
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
    corruption_params: str = "imagenet"
    corrupted: str | None = None
    note: str = ""  # what was done to the pixels (a user's uint8 file: divided by 255)
    # The normalisation the model applies inside itself, as the user states it: reports only.
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = field(
        default=None, compare=False
    )

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


def _format_loader(function: str, dataset: str) -> Loader:
    """A loader of :mod:`safetycheck.io.formats`, imported when first used; with ``download``, a
    missing file is fetched with torchvision into the layout the loader reads, then read."""

    def load(root: Any, split: str, download: bool) -> LabelledImages:
        from safetycheck.core.errors import DataError
        from safetycheck.io.data import resolve_data_root

        formats = importlib.import_module("safetycheck.io.formats")
        folder = root.path if hasattr(root, "path") else resolve_data_root(root).path
        try:
            loaded: LabelledImages = getattr(formats, function)(folder, split)
        except DataError as missing:
            if not download or "not found" not in str(missing):
                raise DataError(f"{missing} Or pass --safety-download to fetch it.") from None
            download_with_torchvision(dataset, Path(folder), split)
            loaded = getattr(formats, function)(folder, split)
        return loaded

    return load


def download_with_torchvision(dataset: str, folder: Path, split: str) -> None:
    """Fetch CIFAR-10's python batches (into ``folder/cifar-10-batches-py``) or SVHN's
    ``<split>_32x32.mat`` (into ``folder/svhn``) with torchvision's own downloaders, which verify
    the published checksums."""
    import torchvision

    try:
        if dataset == "cifar10":
            torchvision.datasets.CIFAR10(str(folder), train=split == "train", download=True)
        elif dataset == "svhn":
            torchvision.datasets.SVHN(str(folder / "svhn"), split=split, download=True)
        else:
            raise ConfigError(f"no download is known for the {dataset} dataset.")
    except (OSError, RuntimeError) as error:  # urllib's URLError is an OSError
        raise ConfigError(
            f"could not download {dataset} ({split}) into {folder}: {error}. Fetch the files by "
            "hand into that layout, or check the network."
        ) from None


def _mnist_like(
    name: str, title: str, classes: tuple[str, ...], headline: float, ood
) -> DatasetProfile:
    """A 28x28 grayscale IDX set of torchvision's raw layout, with MNIST's radii and MNIST-C."""
    return DatasetProfile(
        name,
        title,
        channels=1,
        height=28,
        width=28,
        classes=classes,
        loader=_idx_loader(name),
        epsilons={"linf": MNIST_LINF, "l2": MNIST_L2},
        headline=headline,
        ood_sets=(*ood, *NOISE_SETS),
        corruptions="mnist_c",
    )


def _cifar_like(name: str, title: str, classes: tuple[str, ...], function: str, ood: str):
    """A 3x32x32 set read by :mod:`safetycheck.io.formats`, with CIFAR's radii (8/255 headline)."""
    return DatasetProfile(
        name,
        title,
        channels=3,
        height=32,
        width=32,
        classes=classes,
        loader=_format_loader(function, name),
        epsilons={"linf": CIFAR_LINF, "l2": CIFAR_L2},
        headline=8 / 255,
        ood_sets=(ood, *NOISE_SETS),
        corruptions="common",
        corruption_params="cifar",  # Hendrycks' make_cifar_c.py, made for 32x32 images
        corrupted="CIFAR-10-C" if name == "cifar10" else None,
    )


PROFILES: Mapping[str, DatasetProfile] = MappingProxyType(
    {
        profile.name: profile
        for profile in (
            _mnist_like("mnist", "MNIST", DIGITS, 0.3, ("fmnist", "kmnist")),
            _mnist_like(
                "fashion_mnist", "Fashion-MNIST", FASHION_MNIST_CLASSES, 0.1, ("mnist", "kmnist")
            ),
            _mnist_like("kmnist", "Kuzushiji-MNIST", KMNIST_CLASSES, 0.1, ("mnist", "fmnist")),
            _cifar_like("cifar10", "CIFAR-10", CIFAR10_CLASSES, "load_cifar10", "svhn"),
            _cifar_like("svhn", "SVHN", DIGITS, "load_svhn", "cifar10"),
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


class MissingSplit(ConfigError):
    """A split the dataset does not have (a user's file holds the test images only)."""


def _user_radii(channels: int, height: int, width: int) -> dict[str, tuple[float, ...]]:
    """Default radii for a user's images: MNIST's Linf radii for grayscale, CIFAR's for colour;
    L2 radii scaled from theirs by the square root of the pixel count, so that an L2 ball holds
    comparable per-pixel changes at any size."""
    pixels = channels * height * width
    if channels == 1:
        linf, l2, reference = MNIST_LINF, MNIST_L2, 784
    else:
        linf, l2, reference = CIFAR_LINF, CIFAR_L2, 3072
    scale = (pixels / reference) ** 0.5
    return {"linf": linf, "l2": tuple(round(r * scale, 4) for r in l2)}


def user_profile(
    path: str | Path, classes: tuple[str, ...] | None = None, epsilons: tuple[float, ...] = ()
) -> DatasetProfile:
    """The profile of a user's test images: an ``.npz`` file or an ImageFolder directory (see
    :mod:`safetycheck.io.formats`). The images are read once, here, so that a bad file is a
    usage error before any model runs. ``classes`` (names by label) and ``epsilons`` (Linf)
    override what the file implies; the OOD sets are the noise sets at the images' shape; no
    corruption set applies yet; the feature-based OOD scores need a training split and skip."""
    from safetycheck.io.formats import load_image_folder, load_npz

    folder = Path(path)
    if folder.is_dir():
        data = load_image_folder(folder)
    elif folder.suffix == ".npz" and folder.is_file():
        data = load_npz(folder)
    else:
        raise ConfigError(
            f"dataset {str(path)!r} is neither a built-in profile ({', '.join(PROFILES)}), an "
            ".npz file nor an image folder (one sub-folder per class); check the path."
        )
    return profile_from_data(data, folder.stem, f"{folder.name} ({data.format})", classes, epsilons)


def profile_from_data(
    data: LabelledImages,
    name: str,
    title: str,
    classes: tuple[str, ...] | None = None,
    epsilons: tuple[float, ...] = (),
) -> DatasetProfile:
    """The profile of test images already in memory (validated: float32 (N, C, H, W) in [0, 1],
    int64 labels, at least 2 classes present); ``data.classes`` and ``data.note`` are read when
    the object has them (:class:`~safetycheck.io.formats.LoadedImages`)."""
    from safetycheck.io.formats import require_classes_present, validate_labelled

    validate_labelled(data.images, data.labels, title)
    require_classes_present(data.labels, title)
    own = tuple(getattr(data, "classes", ()) or ())
    found = max(int(data.labels.max()) + 1, len(own))
    names = tuple(classes) if classes else (own or tuple(str(k) for k in range(found)))
    if len(names) < found:
        raise ConfigError(
            f"{title}: labels go up to {found - 1} but {len(names)} class names are given."
        )
    _, channels, height, width = data.images.shape
    radii = _user_radii(channels, height, width)
    if epsilons:
        radii["linf"] = tuple(sorted(epsilons))
    slug = dataset_slug(name)

    def load(root: Any, split: str, download: bool) -> LabelledImages:
        if split != "test":
            raise MissingSplit(f"{title} holds test images only (no {split} split)")
        return data

    return DatasetProfile(
        slug,
        title,
        channels=channels,
        height=height,
        width=width,
        classes=names,
        loader=load,
        epsilons=radii,
        headline=radii["linf"][-1],
        ood_sets=NOISE_SETS,
        corruptions=(
            "common" if channels in (1, 3) and min(height, width) >= COMMON_MIN_SIDE else None
        ),
        note=str(getattr(data, "note", "") or ""),
    )


def dataset_slug(name: str) -> str:
    """The name results records and threshold tables give a user's dataset: ``name`` (its file or
    folder name without the suffix) lower-case, runs of other characters turned into ``_``
    (``"My Defects"`` -> ``"my_defects"``)."""
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "user"


def dataset_name(name_or_path: str) -> str:
    """The name a run on ``name_or_path`` (a built-in profile or a path) records, without reading
    the data."""
    return name_or_path if name_or_path in PROFILES else dataset_slug(Path(name_or_path).stem)


def resolve_profile(
    name_or_path: str,
    base: Path | None = None,
    classes: tuple[str, ...] | None = None,
    epsilons: tuple[float, ...] = (),
) -> DatasetProfile:
    """A built-in profile by name, else a user's ``.npz`` file or image folder (a relative path
    resolves against ``base``, the folder of the file that names it)."""
    if name_or_path in PROFILES:
        return PROFILES[name_or_path]
    path = Path(name_or_path).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.suffix == ".npz" or path.is_dir() or "/" in name_or_path or "\\" in name_or_path:
        return user_profile(path, classes, epsilons)
    return profile(name_or_path)
