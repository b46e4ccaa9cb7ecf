"""One model's evaluation in one run: every expensive result is computed once and shared.

A :class:`ModelEvaluation` is the single place where data meets a model. The clean logits on the
MNIST test set are computed once and serve clean accuracy (and, in later checks, OOD scores and
calibration); each attack sweep is computed once over all epsilons and serves every check that
reads one of its epsilons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar, cast

import torch
from torch import nn

from safetycheck.core.distributed import Shard
from safetycheck.core.per_example import PerExample, images_digest
from safetycheck.io.data import DataRoot, LabelledImages, resolve_data_root
from safetycheck.io.models import ModelUnderTest
from safetycheck.io.predict import predict
from safetycheck.io.profiles import DEFAULT_PROFILE, DatasetProfile
from safetycheck.measures.acceleration import Acceleration, accelerate
from safetycheck.measures.ood import OODSettings
from safetycheck.measures.robustness import SweepResult

T = TypeVar("T")


@dataclass(frozen=True)
class RunSettings:
    """Everything that shapes a run's numbers, recorded in its metadata."""

    device: torch.device = torch.device("cpu")
    seed: int = 0
    attack_samples: int = 1000  # MNIST test images attacked per sweep (a seeded random subset)
    # None: every family reads the whole MNIST test set (and whole OOD sets); N: a stratified,
    # seeded subset of N test images (and N images of each OOD set), for quick pull-request gating.
    samples: int | None = None
    epsilons: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    data_root: DataRoot = field(default_factory=resolve_data_root)
    download: bool = False
    allow_randomized: bool = False
    batch_size: int = 500
    ood: OODSettings = field(default_factory=OODSettings)
    checks: tuple[str, ...] = ()  # check families to run; empty: the default suite
    mnist_c_source: str = "generated"  # or "official": the static MNIST-C files under the data root
    acceleration: Acceleration = field(default_factory=Acceleration)  # how attacks call the model
    # What is tested: the contract, the test split and the families' defaults (MNIST's by
    # default). ``epsilons`` above is MNIST's default; build_settings gives another profile's.
    dataset: DatasetProfile = DEFAULT_PROFILE
    # The baseline model's errors that mCE normalises by (--safety-corruption-baseline), a
    # safetycheck.checks.common_corruptions.CorruptionBaseline; None: no mCE checks.
    corruption_baseline: Any = None
    # Attack sweeps stop once every epsilon's verdict is known at this level (--safety-early-stop;
    # safetycheck.core.sequential), attacking blocks of early_stop_block images; None: never.
    early_stop_alpha: float | None = None
    early_stop_block: int = 100


class ModelEvaluation:
    """Lazily computed, cached results for one model under one :class:`RunSettings`."""

    def __init__(
        self,
        mut: ModelUnderTest,
        settings: RunSettings,
        progress: Callable[[str, float | None], None] | None = None,
        shard: Shard | None = None,
    ):
        """``progress(what, seconds)``, if given, hears of each shared result as it starts
        (``seconds`` None) and when it is done, so that long computations are never silent.
        ``shard``: this process's place in a torchrun job; each shared result over images is then
        computed in slices over the ranks and gathered (:mod:`safetycheck.core.distributed`), so
        that every rank holds the serial result."""
        self.mut = mut
        self.settings = settings
        self.shard = Shard() if shard is None else shard
        self.model = mut.module.to(settings.device)
        self.progress = progress
        self._cache: dict[str, object] = {}
        # The gate's threshold of a check, ``threshold_of(family, check_id)`` (None: unknown), set
        # by whoever judges the checks; early stopping needs it, and stops nothing without it.
        self.threshold_of: Callable[[str, str], float | None] | None = None

    @cached_property
    def attack_model(self) -> nn.Module:
        """The model the attack sweeps call: :attr:`model` under the run's :class:`Acceleration`
        (itself when none is asked); every other family reads :attr:`model` in fp32."""
        return accelerate(self.model, self.settings.acceleration, self.settings.device)

    @cached_property
    def full_test_set(self) -> LabelledImages:
        return self.settings.dataset.load_test(self.settings.data_root, self.settings.download)

    @cached_property
    def test_indices(self) -> torch.Tensor | None:
        """Indices into the full MNIST test set of the evaluated images, or None for all of them."""
        if self.settings.samples is None or self.settings.samples >= len(self.full_test_set):
            return None
        return stratified_indices(
            self.full_test_set.labels, self.settings.samples, self.settings.seed
        )

    @cached_property
    def test_set(self) -> LabelledImages:
        """The MNIST test images every family evaluates: all 10000, or the stratified subset."""
        full, index = self.full_test_set, self.test_indices
        if index is None:
            return full
        return LabelledImages(
            full.images[index],
            full.labels[index],
            f"{full.name} (stratified subset of {len(index)})",
        )

    def describe_test_set(self) -> str:
        """How the evaluated MNIST test images were chosen, for a check's details."""
        n, title = len(self.test_set), self.settings.dataset.title
        if self.test_indices is None:
            return f"all {n} {title} test images"
        return (
            f"a stratified subset of {n} {title} test images (seed {self.settings.seed}; "
            "--safety-samples)"
        )

    @cached_property
    def clean_outputs(self) -> tuple[torch.Tensor, list] | None:
        """:func:`~safetycheck.measures.ood_scores.model_outputs` on the evaluated test images: the
        logits and each member's penultimate features from one pass, which serves clean accuracy,
        calibration and every OOD score. None where reading the features fails (a model whose
        last Linear changes between batches, say): the logits then come from a plain pass, and the
        OOD checks report the problem themselves."""
        from safetycheck.core.errors import ModelContractError

        try:
            return self.outputs_of(self.test_set.images, "the clean pass")
        except ModelContractError:
            return None

    def outputs_of(self, images: torch.Tensor, what: str, batch_size: int | None = None):
        """:func:`~safetycheck.measures.ood_scores.model_outputs` of :attr:`model` on ``images``
        (on the CPU) in batches of ``batch_size`` (four of the run's by default), each rank of a
        torchrun job computing its slice (see :attr:`shard`)."""
        from safetycheck.measures.ood_scores import join_outputs, model_outputs

        batch = batch_size or self.settings.batch_size * 4
        return self.shard.rows(
            what,
            len(images),
            lambda rows: model_outputs(self.model, images[rows], batch),
            join_outputs,
            align=batch,
        )

    def predictions(self, images: torch.Tensor, what: str, transform=None) -> torch.Tensor:
        """:meth:`predict_rows` over all of ``images``, each rank of a torchrun job predicting its
        slice (see :attr:`shard`)."""
        return self.shard.cat(
            what,
            len(images),
            lambda rows: self.predict_rows(images, rows, transform),
            align=self.settings.batch_size * 4,  # predict_rows's batches: the serial ones
        )

    def predict_rows(self, images: torch.Tensor, rows: slice, transform=None) -> torch.Tensor:
        """:func:`~safetycheck.io.predict.predict` of :attr:`model` on ``images[rows]`` (float in
        [0, 1], or uint8 scaled by 1/255 a batch at a time), on the CPU; ``transform`` of the
        logits, argmax by default."""
        step = self.settings.batch_size * 4
        transform = transform or (lambda logits: logits.argmax(dim=1))
        chunks = [
            predict(
                self.model,
                _as_float(images[start : min(start + step, rows.stop)]),
                batch_size=step,
                device=self.settings.device,
                transform=transform,
            )
            for start in range(rows.start, rows.stop, step)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.int64)

    @cached_property
    def clean_logits(self) -> torch.Tensor:
        """(N, 10) float32 logits on the evaluated MNIST test images, on the CPU."""
        if self.clean_outputs is not None:
            return self.clean_outputs[0]
        return self.predictions(
            self.test_set.images, "the clean logits", transform=lambda logits: logits.float()
        )

    @cached_property
    def clean_correct(self) -> torch.Tensor:
        return self.clean_logits.argmax(dim=1) == self.test_set.labels

    @cached_property
    def attack_indices(self) -> torch.Tensor:
        """The test images attacked: the first ``attack_samples`` of a seeded permutation."""
        generator = torch.Generator().manual_seed(self.settings.seed)
        order = torch.randperm(len(self.test_set), generator=generator)
        return order[: min(self.settings.attack_samples, len(order))]

    def select(self, values: torch.Tensor) -> torch.Tensor:
        """The rows of a per-test-image tensor (e.g. predictions on a corrupted test set) that
        belong to the evaluated images."""
        return values if self.test_indices is None else values[self.test_indices]

    def per_example(
        self,
        correct: torch.Tensor,
        what: str,
        subset: torch.Tensor | None = None,
        values: dict[str, torch.Tensor] | None = None,
    ) -> PerExample:
        """``correct`` (one verdict per scored image) with the digest of which images were
        scored: the evaluated test images (``subset`` None) or ``subset`` of them (the attacked
        ones), ``what`` naming how they were scored ("test", "attacked", "mnist_c:fog"...);
        ``values``: per-image quantities of a check that is not a share (calibration)."""
        index = self.test_indices
        if index is None:
            index = torch.arange(len(self.test_set))
        if subset is not None:
            index = index[subset]
        digest = images_digest(self.settings.dataset.name, what, self.settings.seed, index)
        return PerExample(correct.detach().cpu().bool(), digest, self.settings.seed, values)

    def cached(self, key: str, compute: Callable[[ModelEvaluation], T], announce: bool = True) -> T:
        """The result named ``key``, computed by ``compute(self)`` the first time it is asked for;
        every check family shares its expensive results through this one cache. ``announce``:
        tell ``progress`` (False for cheap steps, which would only be noise)."""
        if key not in self._cache:
            if self.progress is None or not announce:
                self._cache[key] = compute(self)
            else:
                what = f"{self.mut.name}: {key}"
                self.progress(what, None)
                started = time.perf_counter()
                self._cache[key] = compute(self)
                self.progress(what, time.perf_counter() - started)
        return cast(T, self._cache[key])

    def computed(self, prefix: str) -> dict[str, object]:
        """The results computed so far whose keys start with ``prefix`` (``"sweep:"``: every
        attack sweep this model has run), computing nothing."""
        return {key: value for key, value in self._cache.items() if key.startswith(prefix)}

    def sweep(self, key: str, run: Callable[[ModelEvaluation], SweepResult]) -> SweepResult:
        """An attack sweep, cached like any other result."""
        return self.cached(f"sweep:{key}", run)


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1]: uint8 ones (cached corrupted sets) scaled by 1/255."""
    return images.to(torch.float32).div_(255.0) if images.dtype == torch.uint8 else images


def stratified_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` indices into ``labels`` (N,) int64, drawn without replacement so that each class keeps
    its share of the whole (largest-remainder rounding), seeded; returned sorted.

    Raises ValueError unless 1 <= n <= N."""
    if not 1 <= n <= len(labels):
        raise ValueError(f"a stratified subset needs 1 <= n <= {len(labels)}; got {n}")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n / len(labels)
    quota = exact.floor().long()
    remainder = n - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:remainder]] += 1
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(labels == label).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.sort(torch.cat(chosen)).values
