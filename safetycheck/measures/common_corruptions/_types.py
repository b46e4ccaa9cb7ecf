"""What a common corruption is (:class:`CommonCorruption`), apart from the catalogue that gathers
them, so that the modules declaring corruptions need not import the catalogue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from safetycheck.core.errors import ConfigError
from safetycheck.measures.common_corruptions._random import SampleRandom


class CorruptionUnavailable(ConfigError):
    """A corruption that needs a resource this machine lacks (frost's photographs)."""


@dataclass(frozen=True)
class CommonCorruption:
    """One corruption.

    Attributes
    ----------
    name : str
        As in imagecorruptions, e.g. ``"gaussian_noise"``.
    kind : {"noise", "blur", "weather", "digital"}
    function : callable
        ``function(images, level, random, variant) -> images``: float32 (N, 3, H, W) in [0, 1]
        in (RGB; grayscale is handled by :func:`corrupt`), the level's parameters, a
        :class:`~safetycheck.measures.common_corruptions._random.SampleRandom` with one key per
        image, and ``"imagenet"`` or ``"cifar"``; out (N, 3, H, W) in the input's units, not yet
        clipped.
    levels : dict
        ``{"imagenet": (5 parameter values), "cifar": (5 parameter values)}``, severities 1..5.
    deterministic : bool
        No randomness: the output depends on the image and severity only.
    needs : callable or None
        Returns None when the corruption can run here, else the reason it cannot.
    """

    name: str
    kind: str
    function: Callable[[torch.Tensor, Any, SampleRandom, str], torch.Tensor]
    levels: dict[str, tuple]
    deterministic: bool = False
    needs: Callable[[], str | None] | None = None

    def level(self, severity: int, params: str) -> Any:
        return self.levels[params][severity - 1]

    def unavailable(self) -> str | None:
        """Why this corruption cannot run here, or None."""
        return self.needs() if self.needs is not None else None
