"""The one batched forward pass: a model's outputs on many images, a batch at a time.

Clean logits, predictions on the corrupted test sets and the attacks' clean check all read the
model through :func:`predict`, so every one of them runs the model the same way: in eval mode
(:func:`~safetycheck.io.models.evaluation_mode`, which also restores each submodule's mode and
each parameter's ``requires_grad`` afterwards), without autograd, in consecutive batches in the
order of ``images``, each batch moved to the device, the outputs gathered on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from safetycheck.io.models import evaluation_mode, model_device

__all__ = ["predict"]


def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device | str | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    inference: bool = True,
) -> torch.Tensor:
    """``model`` on ``images`` in batches of ``batch_size``: the outputs, concatenated on the CPU.

    Args:
        model: called once per batch, in eval mode; its modes are restored on exit.
        images: (N, ...) on any device, N >= 1; batch ``i`` is ``images[i : i + batch_size]``.
        batch_size: images per forward pass (the last batch may be smaller).
        device: where each batch runs; None: the model's device (its first parameter or buffer).
        transform: applied to each batch's output on the device before it moves to the CPU, e.g.
            ``lambda out: out.argmax(dim=1)`` to bring back predictions rather than logits.
        inference: True runs under ``torch.inference_mode``; False under ``torch.no_grad``, for
            a caller whose model may later meet autograd (tensors made in inference mode, a lazy
            module's parameters say, cannot be used by autograd afterwards).

    Returns:
        The per-batch outputs (after ``transform``) concatenated along dim 0, on the CPU, in
        the dtype the model (or ``transform``) returns.
    """
    target = model_device(model) if device is None else torch.device(device)
    grad_mode = torch.inference_mode() if inference else torch.no_grad()
    with evaluation_mode(model), grad_mode:
        outputs = []
        for start in range(0, len(images), batch_size):
            output = model(images[start : start + batch_size].to(target))
            outputs.append((output if transform is None else transform(output)).cpu())
        return torch.cat(outputs)
