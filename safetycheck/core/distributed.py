"""One evaluation split over the ranks of a ``torchrun`` job, with results identical to one process.

Under ``torchrun --nproc-per-node=N`` every rank runs the same pytest session: the same checks in
the same order, each asking for the same shared results (clean outputs, attack sweeps, corrupted
sets, OOD scores). A :class:`Shard` splits each such computation over the ranks by one fixed rule,
contiguous slices of the images in their seeded order (:meth:`Shard.part`), computes the rank's
slice locally and gathers the slices back in rank order, so that every rank then holds the whole
result and judges every check alike; rank 0 alone reports.

Why the result is the serial one: a plain forward pass (clean logits and features, OOD sets,
corrupted sets) is split in whole batches (``align``), so the model sees exactly the batches one
process would and returns the same floats bit for bit; every attack is seeded per image from the
image's own content (:func:`safetycheck.measures.attacks.base.per_sample_generators`) and a worst
case is decided per image, so an image's verdict does not depend on which rank attacked it.
Gathered per-image results are concatenated in rank order, which is the serial order. (An attacked
image does meet other neighbours in its batch than in one process; a verdict could only change
where the image's final margin is within float rounding of zero, the effect measured across CPU
kernels in docs/PERFORMANCE.md. No test run has shown one.)

A computation that raises on one rank must not leave the others waiting in a collective that rank
never reaches: :meth:`Shard.run` catches the local error, gathers every rank's outcome, and raises
the same :class:`RankFailed` on every rank, naming the rank and its message. The collectives use
Gloo on CPU tensors (only per-image results move, never images or models), whatever the device.

The single-process run is ``Shard()`` (rank 0 of 1): :meth:`Shard.run` then just computes.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from safetycheck.core.errors import ConfigError, SafetyCheckError

T = TypeVar("T")

# The environment torchrun sets for each worker process.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 1800.0


class RankFailed(SafetyCheckError):
    """A rank's share of a shared computation raised, or a rank left the job: every rank raises
    this, so that the whole run fails with that rank's message rather than hanging or reporting
    part of the images as if they were all."""


@dataclass(frozen=True)
class Shard:
    """This process's place in the job: ``rank`` of ``world_size``; ``local_rank`` its index on
    its machine (its GPU under ``--safety-device=cuda``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when there are several ranks to split over."""
        return self.world_size > 1

    @property
    def reports(self) -> bool:
        """Whether this rank writes the terminal summary and the report files (rank 0 only)."""
        return self.rank == 0

    def bounds(self, n: int, rank: int | None = None, align: int = 1) -> tuple[int, int]:
        """``[start, stop)`` of ``rank``'s (this rank's by default) contiguous slice of ``n``
        items: ``n * r // world_size`` to ``n * (r + 1) // world_size``, so slices differ in length
        by at most one and a rank may get none (more ranks than items). With ``align``, the same
        rule over whole runs of ``align`` items (the last one shorter), so that every slice starts
        where a batch of one process would."""
        if align < 1:
            raise ValueError(f"align must be a positive number of items, not {align}")
        r = self.rank if rank is None else rank
        units = -(-n // align)
        first, last = units * r // self.world_size, units * (r + 1) // self.world_size
        return min(first * align, n), min(last * align, n)

    def part(self, n: int, align: int = 1) -> slice:
        """This rank's slice of ``n`` items (see :meth:`bounds`), as a ``slice``."""
        return slice(*self.bounds(n, align=align))

    def run(self, what: str, compute: Callable[[], T]) -> list[T]:
        """Every rank's ``compute()``, in rank order, on every rank (``[compute()]`` alone when
        not :attr:`active`). ``what`` names the computation in the error when a rank fails."""
        if not self.active:
            return [compute()]
        try:
            outcome: tuple[str, Any] = ("ok", compute())
        except Exception as error:  # any rank's failure must reach every rank, see RankFailed
            outcome = ("error", f"{type(error).__name__}: {error}")
        outcomes = self.gather_objects(outcome, what)
        for rank, (status, value) in enumerate(outcomes):
            if status == "error":
                raise RankFailed(f"{what} failed on rank {rank} of {self.world_size}: {value}")
        return [value for _, value in outcomes]

    def gather_objects(self, local: Any, what: str) -> list[Any]:
        """``all_gather_object`` of ``local``; a rank that left the job (killed, or its
        collective timed out) raises :class:`RankFailed`."""
        if not self.active:
            return [local]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        try:
            dist.all_gather_object(gathered, local)
        except (RuntimeError, ValueError) as error:
            raise RankFailed(
                f"{what}: a rank of the {self.world_size} left the job or did not answer within "
                f"the collective timeout ({error}); no report is written from part of the ranks."
            ) from None
        return gathered

    def rows(self, what: str, n: int, compute: Callable[[slice], T], merge: Callable[[list[T]], T],
             align: int = 1) -> T:  # fmt: skip
        """The result over ``n`` rows computed in slices: this rank computes ``compute(part)``
        for its :meth:`part` of ``n`` (``align``: in whole batches), and ``merge`` joins the
        non-empty slices' results in rank order. A rank with no rows computes nothing (rank 0
        computes the empty slice when ``n`` is 0, so that the result has its usual type)."""
        if not self.active:
            return compute(slice(0, n))
        part = self.part(n, align)
        empty = part.start == part.stop and not (n == 0 and self.rank == 0)
        results = self.run(what, lambda: None if empty else compute(part))
        return merge([result for result in results if result is not None])

    def cat(self, what: str, n: int, compute: Callable[[slice], torch.Tensor], align: int = 1
            ) -> torch.Tensor:  # fmt: skip
        """:meth:`rows` for a per-row tensor (moved to the CPU), concatenated along dim 0."""
        return self.rows(
            what, n, lambda part: compute(part).cpu(), lambda parts: torch.cat(parts), align
        )

    def agree(self, what: str, facts: dict[str, str]) -> None:
        """Raise ConfigError on every rank unless every rank has the same ``facts`` (its options,
        each model's weights digest, its checks in order), naming the first rank and fact that
        differ from rank 0's."""
        if not self.active:
            return
        everyone = self.gather_objects(facts, what)
        reference = everyone[0]
        for rank, theirs in enumerate(everyone[1:], start=1):
            for key in sorted(set(reference) | set(theirs)):
                if reference.get(key) != theirs.get(key):
                    raise ConfigError(
                        f"{what}: rank {rank} differs from rank 0 in {key}: "
                        f"{_short(theirs.get(key))} != {_short(reference.get(key))}; every rank "
                        "of a torchrun job must run the same options on the same model weights."
                    )

    def all_max(self, value: int) -> int:
        """The largest ``value`` over the ranks (the job's exit status)."""
        if not self.active:
            return value
        return max(int(v) for v in self.gather_objects(int(value), "the exit status"))


def _short(value: object, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def torchrun_environment(environ: os._Environ[str] | dict[str, str] | None = None) -> dict | None:
    """The rank, world size and local rank torchrun gave this process, or None outside torchrun
    (or for a job of one process). Raises ConfigError for a half-set environment."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError(
            f"the torchrun environment is not numbers: RANK={env.get('RANK')!r}, "
            f"WORLD_SIZE={env.get('WORLD_SIZE')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r}."
        ) from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ConfigError(
            f"the torchrun environment is inconsistent: RANK={rank}, WORLD_SIZE={world_size}, "
            f"LOCAL_RANK={local_rank}."
        )
    if world_size == 1:
        return None
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in env]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} is not set; launch the ranks with "
            "torchrun, which sets them."
        )
    return {"rank": rank, "world_size": world_size, "local_rank": local_rank}


def check_timeout(timeout_s: float) -> None:
    """Raise ConfigError unless ``timeout_s`` is a positive number of seconds."""
    if not timeout_s > 0:
        raise ConfigError(
            f"--safety-dist-timeout must be a positive number of seconds, not {timeout_s:g}."
        )


def join(timeout_s: float = DEFAULT_TIMEOUT_S) -> Shard:
    """This process's :class:`Shard`: joins torchrun's process group (Gloo) when launched by
    torchrun with several ranks, else the single-process ``Shard()``. ``timeout_s`` bounds every
    collective: a rank that stops answering fails the job after that long."""
    check_timeout(timeout_s)
    place = torchrun_environment()
    if place is None:
        return Shard()
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError(
            f"torch {torch.__version__} was built without torch.distributed; run one process."
        )
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as error:
            raise ConfigError(
                f"rank {place['rank']} could not join the torchrun job's process group: {error}"
            ) from None
    return Shard(place["rank"], place["world_size"], place["local_rank"])


def leave() -> None:
    """Leave the process group, if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def weights_digest(module: torch.nn.Module) -> str:
    """A digest of a module's parameters and buffers (names, dtypes, shapes, bytes), to tell
    whether two ranks test the same weights."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def slices(n: int, world_size: int, align: int = 1) -> Sequence[tuple[int, int]]:
    """Every rank's ``[start, stop)`` of ``n`` items (for reports and tests)."""
    return [Shard(r, world_size).bounds(n, align=align) for r in range(world_size)]
