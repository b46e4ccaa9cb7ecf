"""Optional speed-ups for the attack loops: reduced-precision autocast, channels_last,
torch.compile.

They pay on a GPU (tensor cores want bf16/fp16 and NHWC; compile fuses the small LeNet kernels)
and mostly not on a CPU (docs/PERFORMANCE.md has both), so all are off by default. They apply to
the attacks only: clean accuracy, calibration and OOD scores are always read in fp32, since a
bf16 softmax moves the probabilities those metrics are made of.

Reduced precision can weaken an attack (rounded gradients, a flatter loss surface), so a run that
asks for any of these gets one more generated check, ``attack_acceleration``
(:mod:`safetycheck.checks.acceleration`), which attacks the same images with the accelerated
and the plain fp32 model and fails when the accelerated attack finds fewer adversarial examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from safetycheck.core.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Acceleration:
    """How the attacks call the model. ``precision``: ``"fp32"`` (default), ``"bf16"`` or
    ``"fp16"`` autocast; ``channels_last``: NHWC inputs and weights; ``compile``: ``torch.compile``
    with dynamic shapes (attack batches shrink as samples are broken)."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}."
            )

    @property
    def active(self) -> bool:
        return self.precision != "fp32" or self.channels_last or self.compile

    def describe(self) -> str:
        parts = [f"{self.precision} autocast" if self.precision != "fp32" else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("torch.compile")
        return ", ".join(parts)


class AcceleratedModel(nn.Module):
    """``model`` called under the requested autocast and memory format; returns fp32 logits, so
    losses and argmaxes downstream are computed in full precision."""

    def __init__(self, model: nn.Module, acceleration: Acceleration, device_type: str):
        super().__init__()
        self.model = model
        self.acceleration = acceleration
        self.device_type = device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.acceleration.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = PRECISIONS[self.acceleration.precision]
        if dtype is None:
            return self.model(x).float()
        with torch.autocast(self.device_type, dtype=dtype):
            return self.model(x).float()


def accelerate(
    model: nn.Module,
    acceleration: Acceleration,
    device: torch.device,
    option_prefix: str = "--safety-",
) -> nn.Module:
    """The model the attacks call: ``model`` itself when nothing is asked, else a wrapper.

    Runs one probe forward and backward pass at once, so that an autocast dtype the device does
    not support or a ``torch.compile`` that cannot build (no C++ compiler, an untraceable model)
    is a clear error before any attack starts, naming the option to drop.
    """
    if not acceleration.active:
        return model
    if acceleration.channels_last:
        model = model.to(memory_format=torch.channels_last)
    accelerated: nn.Module = AcceleratedModel(model, acceleration, device.type)
    if acceleration.compile:
        # torch.compile of a module returns a module (an OptimizedModule); its stub says Callable.
        accelerated = cast(nn.Module, torch.compile(accelerated, dynamic=True))
    probe = torch.rand(4, 1, 28, 28, device=device, requires_grad=True)
    try:
        logits = accelerated(probe)
        if logits.requires_grad:
            torch.autograd.grad(logits.sum(), probe, allow_unused=True)
    except Exception as exc:  # compile and autocast fail with many exception types
        options = (
            [f"{option_prefix}precision {acceleration.precision}"]
            if acceleration.precision != "fp32"
            else []
        )
        options += [f"{option_prefix}channels-last"] if acceleration.channels_last else []
        options += [f"{option_prefix}compile"] if acceleration.compile else []
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"the model cannot run the attacks with {acceleration.describe()} on {device}: "
            f"{type(exc).__name__}: {first_line}. Drop {' / '.join(options)}."
        ) from exc
    return accelerated


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, as under
    ``taskset`` or a container's cpuset), at least 1."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def share_cpu_threads(processes: int, requested: int | None = None) -> int:
    """Set torch's intra-op thread count for one of ``processes`` processes that share this
    machine (pytest-xdist workers, torchrun ranks) and return it.

    ``requested`` (``--safety-threads``) is used as given. Otherwise each process gets its share of
    :func:`available_cores` (at least one), and never more than torch already uses, so a limit the
    user set with ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` stands. One process alone keeps
    torch's own choice. Without this, N processes each start one thread per core and oversubscribe
    the machine (docs/PERFORMANCE.md measures it).
    """
    if processes < 1:
        raise ConfigError(
            f"the number of processes sharing the CPU must be at least 1, not {processes}."
        )
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--safety-threads must be at least 1, not {requested}.")
        threads = requested
    elif processes == 1:
        return torch.get_num_threads()
    else:
        threads = min(torch.get_num_threads(), max(1, available_cores() // processes))
    torch.set_num_threads(threads)
    return threads
