"""Out-of-distribution detection: how well a model's scores separate MNIST test (in-distribution,
the positive class) from Fashion-MNIST, KMNIST, user-given image sets and noise.

Every score follows one convention: higher = more in-distribution (see
:mod:`safetycheck.measures.ood_scores` for each score's paper). Metrics
(:mod:`safetycheck.measures.ood_metrics`) are computed on the raw scores.

:class:`ModelOOD` holds one model's OOD work for a run: each image set passes through the model
once (logits and penultimate features together), the feature-based detectors are fitted once on
the MNIST training set, and every (set, score) result is computed once. A score a model cannot
support (no feature layer, no linear head) comes back *skipped* with the reason, not as an error.

Sets, by name: ``fmnist`` (Fashion-MNIST test, 10000), ``kmnist`` (Kuzushiji-MNIST test, 10000),
``uniform`` (i.i.d. U[0, 1] pixels) and ``gaussian`` (i.i.d. N(0.5, 1) pixels clipped to [0, 1],
as in Hendrycks et al.'s Outlier Exposure, ICLR 2019): the noise sets are sanity checks, seeded.
Users add their own sets by name: a folder of 28x28 greyscale PNG/JPEG images or an ``.npy`` array.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import nn

from safetycheck.core.errors import ConfigError, DataError
from safetycheck.core.stats import BOOTSTRAP_RESAMPLES, CONFIDENCE
from safetycheck.io.data import DataRoot, LabelledImages
from safetycheck.io.models import Ensemble
from safetycheck.io.profiles import DEFAULT_PROFILE, DatasetProfile, MissingSplit
from safetycheck.io.profiles import profile as dataset_profile
from safetycheck.measures.ood_metrics import (
    OODMetrics,
    ood_metrics,
    roc_curve_data,
)
from safetycheck.measures.ood_scores import (
    KNN,
    Detector,
    Mahalanobis,
    MemberOutputs,
    ViM,
    energy,
    max_logit,
    model_outputs,
    msp,
    odin,
)

T = TypeVar("T")

# The in-distribution side's key among a ModelOOD's sets (not a valid OOD set name).
IN_DISTRIBUTION = "in_distribution"


@dataclass(frozen=True)
class ScoreInfo:
    name: str
    # "logits": from logits alone; "features": fitted on MNIST train features; "gradient": needs
    # input gradients
    kind: str
    title: str
    reference: str


SCORES: dict[str, ScoreInfo] = {
    info.name: info
    for info in (
        ScoreInfo("msp", "logits", "maximum softmax probability", "Hendrycks & Gimpel, ICLR 2017"),
        ScoreInfo("max_logit", "logits", "maximum logit", "Hendrycks et al., ICML 2022"),
        ScoreInfo(
            "energy",
            "logits",
            "negative energy T*logsumexp(logits/T), T=1",
            "Liu et al., NeurIPS 2020",
        ),
        ScoreInfo(
            "odin",
            "gradient",
            "ODIN: temperature scaling with input perturbation",
            "Liang et al., ICLR 2018",
        ),
        ScoreInfo(
            "mahalanobis",
            "features",
            "Mahalanobis distance, class means, shared covariance",
            "Lee et al., NeurIPS 2018",
        ),
        ScoreInfo("vim", "features", "virtual-logit matching", "Wang et al., CVPR 2022"),
        ScoreInfo(
            "knn",
            "features",
            "k-th nearest neighbour of normalised features",
            "Sun et al., ICML 2022",
        ),
    )
}
DEFAULT_SCORES = ("msp", "max_logit", "energy", "mahalanobis", "vim", "knn")  # ODIN is opt-in
BUILTIN_SETS = {
    "fmnist": "Fashion-MNIST test",
    "kmnist": "Kuzushiji-MNIST test",
    "mnist": "MNIST test",
    "cifar10": "CIFAR-10 test",
    "svhn": "SVHN test",
    "uniform": "uniform noise U[0,1]",
    "gaussian": "Gaussian noise N(0.5,1) clipped to [0,1]",
}
# OOD sets that are another dataset's test split, by its profile name.
_DATASET_OF = {
    "fmnist": "fashion_mnist",
    "kmnist": "kmnist",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "svhn": "svhn",
}
DEFAULT_SETS = ("fmnist", "kmnist", "uniform", "gaussian")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SET_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class OODSettings:
    """What the OOD checks measure and how. ``user_sets``: (name, path) pairs."""

    sets: tuple[str, ...] = DEFAULT_SETS
    scores: tuple[str, ...] = DEFAULT_SCORES
    user_sets: tuple[tuple[str, str], ...] = ()
    # MNIST training images (a seeded subset) the detectors are fitted on; None: all 60000. The
    # class means and the 84x84 covariance of LeNet's features move AUROC by about 0.001 between
    # 20000 and 60000.
    fit_samples: int | None = 20_000
    knn_k: int = 50
    knn_bank: int = 10_000  # training features kept for the KNN search (a seeded subset)
    noise_samples: int = 2_000
    bootstrap: int = BOOTSTRAP_RESAMPLES
    confidence: float = CONFIDENCE
    odin_temperature: float = 1000.0
    odin_epsilon: float = 0.0014

    def __post_init__(self):
        for name in self.scores:
            validate_score_name(name)
        user_names = [name for name, _ in self.user_sets]
        for name in user_names:
            if name in BUILTIN_SETS or name == IN_DISTRIBUTION or not _SET_NAME.fullmatch(name):
                raise ConfigError(
                    f"OOD set name {name!r} is taken or unusable in test ids; use lower-case "
                    "letters, digits and '_', starting with a letter, and none of "
                    f"{', '.join([IN_DISTRIBUTION, *BUILTIN_SETS])}."
                )
        for name in self.sets:
            if name not in BUILTIN_SETS and name not in user_names:
                raise ConfigError(
                    f"unknown OOD set {name!r}; choose one of "
                    f"{', '.join([*BUILTIN_SETS, *user_names])}, or add a user set with that name "
                    "(a folder of images or an .npy file)."
                )
        for name, value, low in (
            ("knn_k", self.knn_k, 1),
            ("knn_bank", self.knn_bank, 1),
            ("noise_samples", self.noise_samples, 1),
            ("bootstrap", self.bootstrap, 1),
            ("fit_samples", 60_000 if self.fit_samples is None else self.fit_samples, 10),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"OOD setting {name}={value!r} must be an integer of at least {low}."
                )
        if self.knn_k > min(
            self.knn_bank, 60_000 if self.fit_samples is None else self.fit_samples
        ):
            raise ConfigError(
                f"OOD setting knn_k={self.knn_k} exceeds the KNN bank; lower knn_k or "
                "raise knn_bank."
            )

    @property
    def all_sets(self) -> tuple[str, ...]:
        """The sets measured: ``sets`` then every user set not already listed."""
        return tuple(dict.fromkeys([*self.sets, *(name for name, _ in self.user_sets)]))


def validate_score_name(name: str) -> ScoreInfo:
    if name not in SCORES:
        raise ConfigError(f"unknown OOD score {name!r}; choose one of {', '.join(SCORES)}.")
    return SCORES[name]


# ---------------------------------------------------------------------------------------------
# Image sets


@dataclass(frozen=True)
class OODSet:
    """``images`` float32 (N, 1, 28, 28) in [0, 1], N >= 1; ``description`` for reports."""

    name: str
    images: torch.Tensor
    description: str


def as_ood_images(array, source: str) -> torch.Tensor:
    """Validate user images and return float32 (N, 1, 28, 28) in [0, 1].

    Accepts a numpy array or tensor of shape (N, 28, 28) or (N, 1, 28, 28), either uint8 in
    0..255 or floating point in [0, 1]. Anything else is a :class:`DataError` naming ``source``.
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    shape = tuple(array.shape)
    if array.ndim == 3 and shape[1:] == (28, 28):
        array = array[:, None]
    elif not (array.ndim == 4 and shape[1:] == (1, 28, 28)):
        hint = (
            " (one image: add a leading batch axis)"
            if shape == (28, 28)
            else " (channels last: move the channel axis to position 1)"
            if array.ndim == 4 and shape[1:] == (28, 28, 1)
            else " (colour images: convert them to greyscale)"
            if array.ndim == 4 and 3 in shape[1:2] + shape[3:]
            else ""
        )
        raise DataError(
            f"{source} holds an array of shape {shape}; OOD images must be (N, 28, 28) or "
            f"(N, 1, 28, 28), greyscale 28x28{hint}."
        )
    if array.shape[0] == 0:
        raise DataError(
            f"{source} holds no images (shape {shape}); an OOD set needs at least one image."
        )
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(
            f"{source} holds {array.dtype} values; give uint8 pixels in 0..255 or floats in [0, 1]."
        )
    finite = np.isfinite(array)
    if not finite.all():
        raise DataError(
            f"{source} holds {int((~finite).sum())} NaN or infinite pixel values; "
            f"pixels must lie in [0, 1]."
        )
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        hint = (
            " (it looks like 0..255 data stored as floats: divide by 255)"
            if low >= 0.0 and high <= 255.0
            else ""
        )
        raise DataError(
            f"{source} holds pixel values in [{low:g}, {high:g}]; float images must lie "
            f"in [0, 1]{hint}."
        )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def load_user_set(path: str | Path) -> torch.Tensor:
    """Images from a folder of 28x28 greyscale PNG/JPEG files (sorted by name) or an ``.npy``
    array (see :func:`as_ood_images`), as float32 (N, 1, 28, 28) in [0, 1]."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"OOD set {path} not found (working directory {Path.cwd()}).")
    if path.is_dir():
        return as_ood_images(_read_image_folder(path), f"image folder {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(
                f"{path} cannot be read as a .npy array ({exc}); save it with numpy.save."
            ) from exc
        return as_ood_images(array, str(path))
    raise DataError(f"OOD set {path} is neither a folder of PNG/JPEG images nor an .npy file.")


def _read_image_folder(folder: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DataError(
            f"OOD image folder {folder} holds no PNG or JPEG files; an OOD set needs at "
            "least one image."
        )
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                mode, size = image.mode, image.size
                pixels = np.asarray(image.convert("L") if mode == "1" else image)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(
                f"{file} cannot be read as an image ({exc}); remove or replace it."
            ) from exc
        if size != (28, 28):
            raise DataError(
                f"{file} is {size[0]}x{size[1]} pixels; OOD images must be 28x28 "
                "(resize them first)."
            )
        if mode == "RGB" and (pixels == pixels[..., :1]).all():
            pixels = pixels[..., 0]  # greyscale saved as RGB: three equal channels
        elif mode not in ("L", "1"):
            raise DataError(
                f"{file} is a {mode} image; OOD images must be 8-bit greyscale "
                "(mode L): convert it."
            )
        images.append(pixels.astype(np.uint8))
    return np.stack(images)


def load_ood_set(
    name: str,
    settings: OODSettings = OODSettings(),
    root: DataRoot | str | None = None,
    download: bool = False,
    seed: int = 0,
    profile: DatasetProfile = DEFAULT_PROFILE,
) -> OODSet:
    """The OOD set called ``name``: a built-in one or one of ``settings.user_sets``, for models of
    ``profile`` (noise is drawn at its image shape; another dataset must have that shape)."""
    user_sets = dict(settings.user_sets)
    if name in _DATASET_OF:
        other = dataset_profile(_DATASET_OF[name])
        if other.input_shape != profile.input_shape:
            raise ConfigError(
                f"OOD set {name!r} holds {'x'.join(map(str, other.input_shape))} images but "
                f"{profile.title} models take {'x'.join(map(str, profile.input_shape))}; choose "
                f"sets of that shape (the {profile.name} defaults: {', '.join(profile.ood_sets)})."
            )
        split = other.load_test(root, download)
        return OODSet(name, split.images, f"{BUILTIN_SETS[name]} ({len(split)} images)")
    if name in ("uniform", "gaussian"):
        # A seed per set, so that adding a set never changes another's images.
        generator = torch.Generator().manual_seed(seed * 1000 + (1 if name == "uniform" else 2))
        shape = (settings.noise_samples, *profile.input_shape)
        images = (
            torch.rand(shape, generator=generator)
            if name == "uniform"
            else (0.5 + torch.randn(shape, generator=generator)).clamp_(0.0, 1.0)
        )
        return OODSet(
            name, images, f"{BUILTIN_SETS[name]} ({settings.noise_samples} images, seed {seed})"
        )
    if name in user_sets:
        images = load_user_set(user_sets[name])
        return OODSet(name, images, f"user set {user_sets[name]} ({images.shape[0]} images)")
    raise ConfigError(
        f"unknown OOD set {name!r}; choose one of {', '.join([*BUILTIN_SETS, *user_sets])}."
    )


# ---------------------------------------------------------------------------------------------
# One model's OOD evaluation


@dataclass(frozen=True)
class ScoreResult:
    """Scores (N,) float64 of one score on one set, or None with ``skipped`` saying why."""

    values: torch.Tensor | None
    skipped: str | None = None


@dataclass(frozen=True)
class OODResult:
    """One score on one OOD set against MNIST test: metrics and ROC curve, or a skip reason."""

    set: str
    score: str
    description: str
    metrics: OODMetrics | None = None
    roc: dict | None = None
    skipped: str | None = None

    def as_dict(self) -> dict:
        return {
            "set": self.set,
            "score": self.score,
            "description": self.description,
            "skipped": self.skipped,
            "metrics": self.metrics.as_dict() if self.metrics else None,
            "roc": self.roc,
        }


@dataclass
class ModelOOD:
    """Lazily computed, cached OOD results for one model.

    Args:
        model: a logits model (or :class:`~safetycheck.io.models.Ensemble`) on its device.
        settings: what to measure.
        root, download: where the datasets are (see :func:`safetycheck.io.data.load_split`).
        seed: seeds the noise sets, the fitting subsets and the bootstrap.
        batch_size: images per forward pass.
        in_outputs: :func:`~safetycheck.measures.ood_scores.model_outputs` on the in-distribution
            set, if already computed (logits and features from one pass); the feature scores then
            need no pass of their own over it.
        in_logits: the model's logits on the whole MNIST test set, if already computed; the
            logit scores of a plain model then need no forward pass of their own.
        train: the in-distribution training set the detectors are fitted on (default: MNIST train).
        image_sets: sets given directly, by name; they take precedence over the built-in and user
            sets, and :data:`IN_DISTRIBUTION` replaces the profile's test set as the
            in-distribution set.
    """

    model: nn.Module
    settings: OODSettings = field(default_factory=OODSettings)
    root: DataRoot | str | None = None
    download: bool = False
    seed: int = 0
    batch_size: int = 500
    in_logits: torch.Tensor | None = None
    in_outputs: tuple | None = (
        None  # model_outputs(...) on the in-distribution set, if already computed
    )
    train: LabelledImages | None = None
    image_sets: dict[str, OODSet] = field(default_factory=dict)
    profile: DatasetProfile = DEFAULT_PROFILE  # the in-distribution dataset
    # Where the intermediate results live: ``store(key, compute, announce)`` returns the result
    # named ``key``, computing ``compute()`` once. A run's ModelEvaluation passes its own cache, so
    # that a model's OOD work sits with its other shared results (one cache per model); used on
    # its own, a ModelOOD keeps them in a private dict.
    store: Callable[[str, Callable[[], Any], bool], Any] | None = field(default=None, repr=False)
    # How a set's outputs are computed: ``outputs_of(images, what)``, model_outputs by default; a
    # torchrun job's evaluation passes its sharded one (ModelEvaluation.outputs_of).
    outputs_of: Callable[[torch.Tensor, str], tuple] | None = field(default=None, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _measured: list[tuple[str, str]] = field(default_factory=list, repr=False)  # result()s asked

    def _once(self, key: str, compute: Callable[[], T], announce: bool = False) -> T:
        if self.store is not None:
            return cast(T, self.store(f"ood:{key}", compute, announce))
        if key not in self._memo:
            self._memo[key] = compute()
        return cast(T, self._memo[key])

    def _outputs(self, images: torch.Tensor, what: str) -> tuple:
        if self.outputs_of is not None:
            return self.outputs_of(images, what)
        return model_outputs(self.model, images, self.batch_size)

    def images(self, set_name: str) -> OODSet:
        def load() -> OODSet:
            if set_name in self.image_sets:
                return self.image_sets[set_name]
            if set_name == IN_DISTRIBUTION:
                split = self.profile.load_test(self.root, self.download)
                return OODSet(
                    set_name, split.images, f"{self.profile.title} test ({len(split)} images)"
                )
            return load_ood_set(
                set_name, self.settings, self.root, self.download, self.seed, self.profile
            )

        return self._once(f"images:{set_name}", load)

    def outputs(self, set_name: str) -> tuple[torch.Tensor, list[MemberOutputs]]:
        """(model logits, per-member outputs) on a set; one pass per set."""
        if set_name == IN_DISTRIBUTION and self.in_outputs is not None:
            return self.in_outputs
        return self._once(
            f"outputs:{set_name}",
            lambda: self._outputs(self.images(set_name).images, f"the OOD set {set_name}"),
            announce=True,
        )

    def detectors(self) -> list[dict[str, Detector | str]]:
        """Per member: score name -> fitted :class:`~safetycheck.measures.ood_scores.Detector`, or
        a string saying why it is unavailable."""

        def fit_all() -> list[dict[str, Detector | str]]:
            train = self.train
            if train is None:
                try:
                    train = self.profile.loader(self.root, "train", self.download)
                except MissingSplit as missing:
                    # One entry per member, each saying why: the feature scores then skip.
                    _, members = self.outputs(IN_DISTRIBUTION)
                    why = f"it is fitted on training images, and {missing}"
                    return [dict.fromkeys(("mahalanobis", "vim", "knn"), why) for _ in members]
            generator = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(len(train), generator=generator)
            fit = order[: self.settings.fit_samples] if self.settings.fit_samples else order
            _, members = self._outputs(train.images[fit], "the OOD detectors' training features")
            return [self._fit_member(m, train.labels[fit]) for m in members]

        return self._once("detectors", fit_all, announce=True)

    def _fit_member(self, member: MemberOutputs, labels: torch.Tensor) -> dict[str, Detector | str]:
        if member.features is None:
            why = member.features_missing or "the model exposes no features"
            return dict.fromkeys(("mahalanobis", "vim", "knn"), why)
        bank = member.features[: self.settings.knn_bank]  # rows are already in seeded random order
        fitted: dict[str, Detector | str] = {
            "mahalanobis": Mahalanobis.fit(member.features, labels),
            "knn": KNN.fit(bank, self.settings.knn_k),
        }
        if member.head is None:
            fitted["vim"] = f"ViM needs the linear classification head: {member.head_missing}"
        elif member.features.shape[1] < 2:
            fitted["vim"] = "ViM needs features of at least 2 dimensions"
        else:
            fitted["vim"] = ViM.fit(member.features, member.logits, *member.head)
        return fitted

    def scores(self, set_name: str, score: str) -> ScoreResult:
        """``score`` on every image of a set (:data:`IN_DISTRIBUTION`: the profile's test set);
        cached."""
        info = validate_score_name(score)
        return self._once(
            f"scores:{set_name}:{score}", lambda: self._compute_scores(set_name, info)
        )

    def _compute_scores(self, set_name: str, info: ScoreInfo) -> ScoreResult:
        plain = not isinstance(self.model, Ensemble)
        if info.name == "odin":
            return ScoreResult(
                odin(
                    self.model,
                    self.images(set_name).images,
                    self.settings.odin_temperature,
                    self.settings.odin_epsilon,
                    self.batch_size,
                )
            )
        if info.name == "msp" or (info.kind == "logits" and plain):
            # MSP of an ensemble is that of its averaged probabilities, which its logits encode.
            if set_name == IN_DISTRIBUTION and self.in_logits is not None:
                logits = self.in_logits
                if logits.shape[0] != self.images(set_name).images.shape[0]:
                    raise ConfigError(
                        f"in_logits has {logits.shape[0]} rows but the in-distribution set holds "
                        f"{self.images(set_name).images.shape[0]} images; pass the "
                        "logits of that set."
                    )
            else:
                logits = self.outputs(set_name)[0]
            return ScoreResult(
                {"msp": msp, "max_logit": max_logit, "energy": energy}[info.name](logits)
            )
        _, members = self.outputs(set_name)
        if info.kind == "logits":
            # An ensemble's logits are log-probabilities (energy identically 0), so average the
            # members' raw-logit scores instead.
            function = {"max_logit": max_logit, "energy": energy}[info.name]
            return ScoreResult(torch.stack([function(m.logits) for m in members]).mean(dim=0))
        per_member = []
        for index, (member, fitted) in enumerate(zip(members, self.detectors(), strict=True)):
            detector = fitted[info.name]
            if isinstance(detector, str):
                where = f"ensemble member {index}: " if not plain else ""
                return ScoreResult(None, skipped=f"{info.name} skipped: {where}{detector}.")
            assert member.features is not None, "a fitted detector implies the member has features"
            per_member.append(detector.score(member.features, member.logits))
        return ScoreResult(torch.stack(per_member).mean(dim=0))

    def result(self, set_name: str, score: str) -> OODResult:
        """``score`` on MNIST test (positive) against ``set_name``: metrics and ROC data; cached."""
        validate_score_name(score)
        if (set_name, score) not in self._measured:
            self._measured.append((set_name, score))
        return self._once(
            f"result:{set_name}:{score}", lambda: self._compute_result(set_name, score)
        )

    def _compute_result(self, set_name: str, score: str) -> OODResult:
        info, inside_set = SCORES[score], self.images(IN_DISTRIBUTION).description
        description = (
            f"{info.title} ({info.reference}); {inside_set} vs {self.images(set_name).description}"
        )
        inside, outside = self.scores(IN_DISTRIBUTION, score), self.scores(set_name, score)
        if inside.skipped or outside.skipped:
            return OODResult(
                set_name, score, description, skipped=inside.skipped or outside.skipped
            )
        assert inside.values is not None and outside.values is not None
        metrics = ood_metrics(
            inside.values,
            outside.values,
            self.settings.confidence,
            self.settings.bootstrap,
            self.seed,
        )
        return OODResult(
            set_name, score, description, metrics, roc_curve_data(inside.values, outside.values)
        )

    def report(self) -> list[dict]:
        """Every result computed so far, JSON-serialisable, for the HTML and JSON reports."""
        return [self.result(set_name, score).as_dict() for set_name, score in self._measured]
