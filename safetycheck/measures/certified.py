"""Certified robustness bounds: interval bound propagation (IBP) and CROWN.

Both give sound lower and upper bounds on a classifier's logits (or on linear functions of them,
``spec @ logits``) over every input of the *threat set* of an image ``x``: the ball of radius
``eps`` around ``x`` in the Linf or L2 norm, intersected with the pixel box [0, 1]. A class margin
``z_y - z_j`` whose lower bound is positive for every ``j != y`` proves that no perturbation in the
set changes the decision: the image is *certified* at ``eps``.

* IBP (Gowal et al. 2018, "On the Effectiveness of Interval Bound Propagation for Training
  Verifiably Robust Models", arXiv:1810.12715) pushes one interval per neuron forward through the
  network; it costs about two forward passes.
* CROWN (Zhang et al. NeurIPS 2018, "Efficient Neural Network Robustness Certification with
  General Activation Functions", arXiv:1811.00866) bounds every ReLU between two lines and
  propagates the specification backward as a linear function of the input, which is then
  minimised over the threat set in closed form. It needs bounds on every ReLU's input
  ("intermediate bounds"): full CROWN computes them by one backward pass per ReLU layer, from
  the neurons of that layer that IBP leaves unstable (a stable neuron relaxes exactly whatever
  its bounds), and intersects them with IBP; CROWN-IBP (Zhang et al. ICLR 2020, "Towards Stable
  and Efficient Training of Verifiably Robust Neural Networks", arXiv:1906.06316) takes them
  from IBP and runs only the final backward pass. The first ReLU layer keeps its IBP bounds when
  at most one affine layer mixing coordinates precedes it: IBP is then exact over a box.
  Neither method is always the tighter: CROWN usually is, but IBP can win on a margin, e.g. where
  max pooling's upper line is a constant, or on IBP-trained nets.

The relaxations, for a ReLU whose input lies in [l, u] with l < 0 < u (an *unstable* neuron):
upper line ``u / (u - l) * (z - l)``; lower line ``z`` if ``u > -l`` else ``0`` (CROWN's adaptive
choice, the slope with the smaller area). A stable neuron is exact (identity or zero). A max
pooling window with inputs in [l_i, u_i]: if one input ``i`` has ``l_i >= u_j`` for every other
``j`` the maximum *is* ``x_i`` (both lines are ``x_i``); otherwise the lower line is the input with
the largest lower bound (the maximum is at least any of its inputs) and the upper "line" is the
constant ``max_i u_i``.

The model is traced with ``torch.fx`` (as ``symbolic_trace`` does: nested modules and methods
called from ``forward`` are inlined, ``torch.nn`` layers stay whole) into a graph of supported
operations:
``nn.Linear``; ``nn.Conv2d`` (zero padding, any stride, dilation and groups); ``nn.ReLU``,
``F.relu``, ``torch.relu``; ``nn.Flatten``, ``torch.flatten``, ``.view``/``.reshape`` that keep
the batch dimension; ``nn.BatchNorm1d``/``nn.BatchNorm2d`` in eval mode (an affine map per
channel); ``nn.AvgPool2d``/``F.avg_pool2d``; ``nn.MaxPool2d``/``F.max_pool2d``; ``nn.Identity`` and
dropout (the identity in eval mode); addition, subtraction, multiplication and division of a
traced tensor by a constant or a buffer (an inline normalisation ``(x - self.mean) / self.std``);
the sum or difference of two traced tensors (a residual ``x + block(x)``). Anything else raises
:class:`~safetycheck.core.errors.NotCertifiable` naming the layer. The bounds are computed in eval
mode (each submodule's mode is restored afterwards), without autograd, on the model's device.

"Sound" is meant in exact arithmetic: the bounds are computed in the model's floating-point type
without directed rounding, so they can be off by rounding error (about 1e-6 relative in float32).
"""

from __future__ import annotations

import contextlib
import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from safetycheck.core.errors import ConfigError, NotCertifiable
from safetycheck.io.models import evaluation_mode, model_device

__all__ = [
    "BUDGET_ELEMENTS",
    "CertificationResult",
    "certify",
    "crown_bounds",
    "crown_elements",
    "interval_bounds",
    "margin_spec",
]

METHODS = ("ibp", "crown", "crown-ibp")
NORMS = ("Linf", "L2")
INTERMEDIATE = ("crown", "ibp")
# The largest backward coefficient tensor CROWN may hold for one chunk of images, in elements (512
# MiB in float32; the peak is a few times that: lower and upper coefficients and temporaries). Full
# CROWN's intermediate passes hold (neurons of a layer) x (size of an earlier layer) coefficients
# per image, quadratic in the width of a conv net: 75.5M for the example LeNet, so it runs one
# image per chunk. Past the budget for a single image, certify() falls back to CROWN-IBP, whose
# one backward pass holds only (classes - 1) x (size of a layer) per image.
BUDGET_ELEMENTS = 2**27
# Elements per chunk of the identity basis pushed through the first affine layers for L2 IBP.
_BASIS_CHUNK_ELEMENTS = 2**24


# ---------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class CertificationResult:
    """What :func:`certify` proved, per image.

    ``certified`` (N,) bool: the lower bound of ``z_y - z_j`` is > 0 for every ``j != y`` over the
    whole threat set; ``margin_lower`` (N,) float: the smallest of those lower bounds, never above
    the clean margin; ``clean_margin`` (N,) float: ``z_y - max_{j != y} z_j`` at the image itself
    (> 0 when the model is right without a tie); ``method``: the method actually used ("crown"
    becomes "crown-ibp" when full CROWN would exceed the memory budget); ``eps`` and ``norm``: the
    threat set; ``seconds``: wall-clock time of the bounds. Tensors are on the CPU.
    """

    certified: torch.Tensor
    margin_lower: torch.Tensor
    clean_margin: torch.Tensor
    method: str
    eps: float
    norm: str
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(self.certified.numel())

    @property
    def certified_accuracy(self) -> float:
        """Fraction of images certified, in [0, 1]; NaN for an empty batch."""
        return int(self.certified.sum()) / self.n if self.n else float("nan")


def interval_bounds(
    model: nn.Module,
    images: torch.Tensor,
    eps: float,
    norm: str = "Linf",
    spec: torch.Tensor | None = None,
    differentiable: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bound propagation (Gowal et al. 2018) of the threat set through ``model``.

    Args:
        model: a logits model built from the supported layers (module docstring).
        images: (N, C, H, W) float in [0, 1], on any device.
        eps: radius of the threat ball, in pixel units (pixels in [0, 1]), finite and >= 0.
        norm: "Linf" (the box [max(x - eps, 0), min(x + eps, 1)]) or "L2" (the L2 ball intersected
            with that box: every affine function of the input computed before the first
            nonlinearity is bounded exactly over the ball, ``f(x) +- eps * ||row||_2``, and its
            interval intersected with the box interval; later layers use intervals).
        spec: optional (N, S, K) float specification; the bounds are then of ``spec @ logits``,
            with the affine layers after the last nonlinearity merged into the specification
            before intervals are applied (never looser than ``spec`` times the logit intervals).
        differentiable: for certified training (Gowal et al.'s loss): the bounds keep their
            graph to the model's parameters, and the model's modes and ``requires_grad`` flags
            are left as they are (so use it on a model without batch norm or dropout, or in
            eval mode). By default the bounds are computed without gradients, in eval mode.

    Returns:
        ``(lower, upper)``: (N, K) logit bounds, or (N, S) bounds of ``spec @ logits``, on the
        model's device. At ``eps == 0`` both equal the logits up to rounding.
    """
    images, eps = _validate_common(images, eps, norm)
    gradients = contextlib.nullcontext() if differentiable else torch.no_grad()
    modes = contextlib.nullcontext() if differentiable else evaluation_mode(model)
    with gradients, modes:
        images = _to_model(model, images)
        net = _lower(model, images)
        spec = _validate_spec(spec, len(images), net.num_classes, images)
        threat = _Threat(images, float(eps), norm)
        bounds = _ibp(net, threat)
        if spec is None:
            return bounds[net.output]
        return _backward(net, bounds, threat, net.output, spec, relax=False)


def crown_bounds(
    model: nn.Module,
    images: torch.Tensor,
    eps: float,
    norm: str = "Linf",
    spec: torch.Tensor | None = None,
    intermediate: str = "crown",
    budget: int = BUDGET_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds (Zhang et al. 2018) of the logits, or of ``spec @ logits``.

    Args:
        model, images, eps, norm, spec: as in :func:`interval_bounds`. For "L2", the linear
            function of the input at the end of each backward pass is bounded over the ball by the
            dual norm, ``a @ x - eps * ||a||_2``, and over the box by ``a @ mid - |a| @ rad``; the
            larger lower bound (smaller upper bound) is kept, both being sound.
        intermediate: "crown" (full CROWN: a backward pass from every ReLU layer's unstable
            neurons, intersected with IBP) or "ibp" (CROWN-IBP, Zhang et al. 2020: IBP
            intermediate bounds, one backward pass for the specification).
        budget: the most elements one backward coefficient tensor may hold; images are processed
            in chunks that keep to it (:func:`crown_elements`).

    Returns:
        ``(lower, upper)``: (N, K) or (N, S) bounds, on the model's device.

    Raises:
        ConfigError: full CROWN needs more than ``budget`` elements for a single image; use
            ``intermediate="ibp"`` or a larger budget.
    """
    images, eps = _validate_common(images, eps, norm)
    _validate_choice("intermediate", intermediate, INTERMEDIATE)
    _validate_positive_int("budget", budget)
    with torch.no_grad(), evaluation_mode(model):
        images = _to_model(model, images)
        net = _lower(model, images)
        spec = _validate_spec(spec, len(images), net.num_classes, images)
        rows = net.num_classes if spec is None else spec.shape[1]
        per_image = _coefficient_elements(net, rows, intermediate)
        if per_image > budget:
            hint = "use intermediate='ibp' (CROWN-IBP) or" if intermediate == "crown" else "use"
            raise ConfigError(
                f"{'full CROWN' if intermediate == 'crown' else 'CROWN-IBP'} needs {per_image} "
                f"coefficient elements per image on this model, over the budget of {budget}; "
                f"{hint} a larger budget."
            )
        chunk = max(1, budget // max(per_image, 1))
        lowers, uppers = [], []
        for start in range(0, len(images), chunk):
            part = slice(start, start + chunk)
            threat = _Threat(images[part], float(eps), norm)
            lower, upper = _crown(
                net, threat, None if spec is None else spec[part], intermediate == "crown"
            )
            lowers.append(lower)
            uppers.append(upper)
        if not lowers:
            empty = images.new_zeros((0, rows))
            return empty, empty.clone()
        return torch.cat(lowers), torch.cat(uppers)


def crown_elements(
    model: nn.Module, images: torch.Tensor, rows: int, intermediate: str = "crown"
) -> int:
    """Elements of the largest backward coefficient tensor CROWN holds for *one* image.

    A backward pass from a layer of P neurons (a ReLU's input for full CROWN, or the ``rows``
    specification rows at the output) holds a (P, size of node) coefficient matrix at every node
    it crosses, except where it is still a scaled identity (elementwise layers next to the start,
    kept lazy). The count is taken with every neuron unstable, the worst case; a batch of B images
    holds B times as many. ``images`` (N, C, H, W) only give the input shape.
    """
    _validate_choice("intermediate", intermediate, INTERMEDIATE)
    _validate_positive_int("rows", rows)
    images, _ = _validate_common(images, 0.0, "Linf")
    with torch.no_grad(), evaluation_mode(model):
        net = _lower(model, _to_model(model, images))
        return _coefficient_elements(net, rows, intermediate)


def margin_spec(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The margin specification (N, K-1, K): row j of sample n is ``e_y - e_j`` for each class
    ``j != y`` (in increasing order of j), so ``spec @ logits`` are the margins ``z_y - z_j``."""
    labels = labels.long()
    n = len(labels)
    eye = torch.eye(num_classes, device=labels.device)
    rows = eye[labels].unsqueeze(1) - eye.unsqueeze(0)  # (N, K, K): e_y - e_j for every j
    keep = ~F.one_hot(labels, num_classes).bool()
    return rows[keep].view(n, num_classes - 1, num_classes)


def certify(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    method: str = "crown",
    norm: str = "Linf",
    batch_size: int = 256,
    budget: int = BUDGET_ELEMENTS,
) -> CertificationResult:
    """Certify each image: prove ``z_y > z_j`` for every ``j != y`` over the whole threat set.

    The margins ``z_y - z_j`` are bounded through the margin specification (:func:`margin_spec`),
    which for CROWN is much tighter than subtracting logit bounds (the correlations between logits
    are kept); for IBP the last affine layers are merged into it. The margin lower bound is
    capped by the clean margin (the clean image lies in the set), so a misclassified image is
    never certified. At ``eps == 0`` the threat set is the image alone and its exact margin, the
    model's own, is the bound: ``certified`` is then exactly ``clean_margin > 0``.

    Ties: a margin of exactly 0 (``z_y`` equal to another logit) is not certified at any eps,
    although ``argmax`` would call the image right when ``y`` is the lower index; certification
    asks for a strict inequality.

    Args:
        model: logits model built from the supported layers (module docstring).
        images: (N, C, H, W) float in [0, 1]; labels: (N,) int in ``0..K-1``.
        eps: threat radius in pixel units, finite and >= 0.
        method: "ibp", "crown" (full CROWN; falls back to "crown-ibp" when one image's largest
            backward coefficient tensor, :func:`crown_elements`, exceeds ``budget``) or
            "crown-ibp".
        norm: "Linf" or "L2".
        batch_size: images per chunk; CROWN chunks are further capped at ``budget`` elements.
        budget: the most elements one backward coefficient tensor may hold (``BUDGET_ELEMENTS``).
    """
    images, eps = _validate_common(images, eps, norm)
    _validate_choice("method", method, METHODS)
    _validate_positive_int("batch_size", batch_size)
    _validate_positive_int("budget", budget)
    _validate_labels(labels, len(images))
    started = time.perf_counter()
    with torch.no_grad(), evaluation_mode(model):
        images = _to_model(model, images)
        labels = labels.to(device=images.device, dtype=torch.long)
        net = _lower(model, images)
        num_classes = net.num_classes
        if len(labels) and int(labels.max()) >= num_classes:
            raise ConfigError(
                f"labels must lie in 0..{num_classes - 1} (the model has {num_classes} logits); "
                f"got a label {int(labels.max())}."
            )
        rows = max(num_classes - 1, 1)
        used, chunk = method, batch_size
        if method != "ibp":
            full = method == "crown" and _coefficient_elements(net, rows, "crown") <= budget
            used = "crown" if full else "crown-ibp"
            per_image = _coefficient_elements(net, rows, "crown" if full else "ibp")
            chunk = max(1, min(batch_size, budget // max(per_image, 1)))
        margins, clean = [], []
        for start in range(0, len(images), chunk):
            part = slice(start, start + chunk)
            x, y = images[part], labels[part]
            clean_margin = _clean_margin(model(x), y)
            margin = clean_margin
            if eps > 0 and num_classes > 1:
                spec = margin_spec(y, num_classes).to(x.dtype)
                threat = _Threat(x, eps, norm)
                if used == "ibp":
                    lower, _ = _backward(
                        net, _ibp(net, threat), threat, net.output, spec, relax=False
                    )
                else:
                    lower, _ = _crown(net, threat, spec, used == "crown", upper=False)
                margin = torch.minimum(lower.min(dim=1).values, clean_margin)
            margins.append(margin.cpu())
            clean.append(clean_margin.cpu())
    margin_lower = torch.cat(margins) if margins else torch.zeros(0)
    clean_margin = torch.cat(clean) if clean else torch.zeros(0)
    return CertificationResult(
        certified=margin_lower > 0,
        margin_lower=margin_lower,
        clean_margin=clean_margin,
        method=used,
        eps=eps,
        norm=norm,
        seconds=time.perf_counter() - started,
    )


def _clean_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{j != y} z_j`` (N,); +inf for a one-class model (nothing to beat)."""
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, labels.unsqueeze(1), float("-inf"))
    return true - others.max(dim=1).values


# ---------------------------------------------------------------------------------------------
# Validation


def _validate_common(images: Any, eps: Any, norm: Any) -> tuple[torch.Tensor, float]:
    _validate_choice("norm", norm, NORMS)
    if (
        isinstance(eps, bool)
        or not isinstance(eps, (int, float))
        or not math.isfinite(eps)
        or eps < 0
    ):
        raise ConfigError(
            f"eps={eps!r} must be a finite number >= 0 (a radius in pixel units, pixels in [0, 1])."
        )
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        got = (
            f"{tuple(images.shape)} {images.dtype}"
            if isinstance(images, torch.Tensor)
            else type(images).__name__
        )
        raise ConfigError(f"images must be a float tensor (N, C, H, W) in [0, 1]; got {got}.")
    if images.numel() and (
        not bool(torch.isfinite(images).all())
        or float(images.min()) < 0.0
        or float(images.max()) > 1.0
    ):
        raise ConfigError(
            "images must hold finite pixel values in [0, 1]; got values outside it "
            "(normalisation belongs inside the model)."
        )
    return images, float(eps)


def _validate_labels(labels: Any, n: int) -> None:
    if (
        not isinstance(labels, torch.Tensor)
        or labels.dim() != 1
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
        or len(labels) != n
    ):
        got = (
            f"{tuple(labels.shape)} {labels.dtype}"
            if isinstance(labels, torch.Tensor)
            else type(labels).__name__
        )
        raise ConfigError(f"labels must be an integer tensor of shape ({n},); got {got}.")
    if len(labels) and int(labels.min()) < 0:
        raise ConfigError(f"labels must be class indices >= 0; got {int(labels.min())}.")


def _validate_spec(
    spec: Any, n: int, num_classes: int, images: torch.Tensor
) -> torch.Tensor | None:
    if spec is None:
        return None
    if (
        not isinstance(spec, torch.Tensor)
        or spec.dim() != 3
        or not spec.is_floating_point()
        or spec.shape[0] != n
        or spec.shape[2] != num_classes
        or spec.shape[1] < 1
        or not bool(torch.isfinite(spec).all())
    ):
        got = (
            f"{tuple(spec.shape)} {spec.dtype}"
            if isinstance(spec, torch.Tensor)
            else type(spec).__name__
        )
        raise ConfigError(
            f"spec must be a finite float tensor (N, S, K) = ({n}, S >= 1, {num_classes}); "
            f"got {got}."
        )
    return spec.to(device=images.device, dtype=images.dtype)


def _validate_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; valid values are {', '.join(choices)}.")


def _validate_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer (1 or more).")


def _to_model(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    tensors = [*model.parameters(), *model.buffers()]
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), images.dtype)
    return images.to(device=model_device(model), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# The graph


@dataclass
class _Op:
    """One traced operation. ``shape`` is per sample (no batch dimension); ``inputs`` are the
    names of the traced operands; ``params`` depend on ``kind``."""

    name: str
    kind: str  # input, linear, conv, scale, reshape, relu, maxpool, avgpool, add
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    label: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class _Network:
    ops: list[_Op]
    output: str
    index: dict[str, int]
    # Nodes computed from the input by affine operations only, and how many of those mix
    # coordinates (linear, conv, pooling, sums): with at most one, IBP is exact over a box.
    prefix: dict[str, int]
    relu_inputs: list[str]
    cache: dict[Any, Any] = field(default_factory=dict)  # per call: frontier, row norms

    @property
    def num_classes(self) -> int:
        return self.ops[self.index[self.output]].shape[0]

    def op(self, name: str) -> _Op:
        return self.ops[self.index[name]]


_AFFINE = ("input", "linear", "conv", "scale", "reshape", "avgpool", "add")
_MIXING = ("linear", "conv", "avgpool", "add")
_RELUS = {F.relu, torch.relu, torch.relu_, F.relu_}
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_ARITHMETIC = {
    operator.add: "add",
    operator.sub: "sub",
    operator.mul: "mul",
    operator.truediv: "div",
    operator.neg: "neg",
    torch.add: "add",
    torch.sub: "sub",
    torch.mul: "mul",
    torch.div: "div",
    torch.neg: "neg",
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "neg": "neg",
}


class _PathTracer(fx.Tracer):
    """A tracer that remembers which module's forward was being traced when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_in: tuple[str, str] | None = None

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = (self.path_of_module(m), type(m).__name__)
            raise


def _trace(model: nn.Module) -> fx.GraphModule:
    tracer = _PathTracer()
    try:
        graph = tracer.trace(model)
    except Exception as error:
        path, kind = tracer.failed_in or ("model", type(model).__name__)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NotCertifiable(
            f"not certifiable: {path} ({kind}), which torch.fx cannot trace: {reason}"
        ) from error
    return fx.GraphModule(tracer.root, graph)


def _lower(model: nn.Module, images: torch.Tensor) -> _Network:
    """Trace ``model`` and turn its graph into :class:`_Op` s, checking every operation.

    The graph is run on two images (shapes, constants) so that a reshape that keeps the batch
    dimension can be told from one that mixes samples.
    """
    gm = _trace(model)
    if len(images) == 0:
        sample = torch.zeros((2, *images.shape[1:]), dtype=images.dtype, device=images.device)
    else:
        sample = images[:2] if len(images) >= 2 else images[:1].expand(2, *images.shape[1:])
    interpreter = fx.Interpreter(gm, garbage_collect_values=False)
    interpreter.run(sample)
    values: dict[fx.Node, Any] = interpreter.env
    return _Lowering(gm, values, len(sample)).run()


class _Lowering:
    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, Any], batch: int):
        self.gm, self.values, self.batch = gm, values, batch
        self.ops: list[_Op] = []
        self.alias: dict[str, str] = {}  # traced node -> the op that computes its value
        self.shape_derived: set[str] = set()  # static values read from a traced tensor's shape
        self.output: str | None = None
        self.input_seen = False

    def run(self) -> _Network:
        for node in self.gm.graph.nodes:
            self._visit(node)
        if self.output is None:  # pragma: no cover - fx graphs always have an output
            raise NotCertifiable("not certifiable: output (the model returns nothing)")
        index = {op.name: i for i, op in enumerate(self.ops)}
        prefix: dict[str, int] = {}
        for op in self.ops:
            if op.kind in _AFFINE and all(i in prefix for i in op.inputs):
                # A sum of two traced tensors may cancel (x - 2x), which intervals cannot see.
                mixing = 2 if op.kind == "add" else int(op.kind in _MIXING)
                prefix[op.name] = sum(prefix[i] for i in op.inputs) + mixing
        relu_inputs = list(dict.fromkeys(op.inputs[0] for op in self.ops if op.kind == "relu"))
        return _Network(self.ops, self.output, index, prefix, relu_inputs)

    # -- helpers

    def _traced(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and arg.name in self.alias

    def _value(self, arg: Any) -> Any:
        return self.values[arg] if isinstance(arg, fx.Node) else arg

    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        value = self.values[node]
        if not isinstance(value, torch.Tensor) or value.dim() < 1 or value.shape[0] != self.batch:
            raise NotCertifiable(
                f"not certifiable: {self._label(node)} (its output does not keep the batch "
                f"dimension first)"
            )
        return tuple(value.shape[1:])

    def _label(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"{node.target} ({type(self.gm.get_submodule(str(node.target))).__name__})"
        stack = node.meta.get("nn_module_stack") or {}
        paths = [str(path) for path, _ in stack.values()] if isinstance(stack, dict) else []
        where = f"{paths[-1]}.{node.name}" if paths and paths[-1] else node.name
        return f"{where} ({_function_name(node)})"

    def _refuse(self, node: fx.Node, why: str = "") -> NotCertifiable:
        label = self._label(node)
        if why:
            label = label[:-1] + f", {why})"
        return NotCertifiable(f"not certifiable: {label}")

    def _add(self, node: fx.Node, kind: str, inputs: Sequence[fx.Node], **params: Any) -> None:
        names = tuple(self.alias[i.name] for i in inputs)
        self.ops.append(_Op(node.name, kind, names, self._shape(node), self._label(node), params))
        self.alias[node.name] = node.name

    # -- the visitor

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if not self.input_seen:
                self.input_seen = True
                self.ops.append(_Op(node.name, "input", (), self._shape(node), "input"))
                self.alias[node.name] = node.name
            return
        if node.op == "get_attr":
            return
        if node.op == "output":
            result = node.args[0]
            if not self._traced(result) or not isinstance(result, fx.Node):
                raise NotCertifiable(
                    "not certifiable: output (the model must return one logits tensor (N, K) "
                    "computed from its input)"
                )
            shape = self._shape(result)
            if len(shape) != 1:
                raise NotCertifiable(
                    f"not certifiable: output (logits of shape (N, {', '.join(map(str, shape))}) "
                    f"instead of (N, K))"
                )
            self.output = self.alias[result.name]
            return
        args = [*node.args, *node.kwargs.values()]
        flat = _flatten_args(args)
        traced = [a for a in flat if self._traced(a)]
        if not traced:
            if any(isinstance(a, fx.Node) and a.name in self.shape_derived for a in flat):
                self.shape_derived.add(node.name)
            return
        target = node.target
        if (node.op == "call_method" and target in ("size", "dim")) or (
            node.op == "call_function"
            and (
                (target is getattr and len(node.args) > 1 and node.args[1] in ("shape", "ndim"))
                or target is len
            )
        ):
            self.shape_derived.add(node.name)
            return
        if node.op == "call_module":
            self._module(node, self.gm.get_submodule(str(target)))
        else:
            self._function(node)

    def _module(self, node: fx.Node, module: nn.Module) -> None:
        if len(node.args) != 1 or node.kwargs or not self._traced(node.args[0]):
            raise self._refuse(node)
        x = node.args[0]
        assert isinstance(x, fx.Node)
        if isinstance(module, (nn.Identity, *_DROPOUT)):
            self.alias[node.name] = self.alias[x.name]
        elif isinstance(module, nn.ReLU):
            self._add(node, "relu", [x])
        elif isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
            if len(self._shape(x)) != 1:
                raise self._refuse(node, "applied to a non-flat input")
            self._add(node, "linear", [x], weight=module.weight, bias=module.bias)
        elif isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward:
            if module.padding_mode != "zeros":
                raise self._refuse(node, f"padding_mode={module.padding_mode!r}")
            self._conv(node, x, module)
        elif isinstance(module, nn.Flatten):
            self._reshape(node, x)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self._batch_norm(node, x, module)
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            kind = "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool"
            names = _POOL_ARGUMENTS[kind][1:]
            self._pool(node, x, kind, {name: getattr(module, name) for name in names})
        else:
            raise self._refuse(node)

    def _function(self, node: fx.Node) -> None:
        target, args, kwargs = node.target, node.args, node.kwargs
        x = args[0] if args else None
        if target in _RELUS or (node.op == "call_method" and target in ("relu", "relu_")):
            assert isinstance(x, fx.Node)
            self._add(node, "relu", [x])
        elif target in (torch.flatten, torch.reshape) or (
            node.op == "call_method" and target in ("view", "reshape", "flatten")
        ):
            assert isinstance(x, fx.Node)
            self._reshape(node, x)
        elif node.op == "call_method" and (
            target in ("contiguous", "clone", "detach")
            or (target in ("float", "to") and self.values[node].dtype == self._value(x).dtype)
        ):
            assert isinstance(x, fx.Node)
            self.alias[node.name] = self.alias[x.name]
        elif target is F.dropout or target is torch.dropout:
            training = kwargs.get("training", args[2] if len(args) > 2 else target is F.dropout)
            if training:
                raise self._refuse(node, "dropout in training mode")
            assert isinstance(x, fx.Node)
            self.alias[node.name] = self.alias[x.name]
        elif target is F.max_pool2d or target is F.avg_pool2d:
            kind = "maxpool" if target is F.max_pool2d else "avgpool"
            settings = dict(zip(_POOL_ARGUMENTS[kind], args, strict=False)) | dict(kwargs)
            self._pool(node, x, kind, settings)
        elif target in _ARITHMETIC and (node.op == "call_method") == isinstance(target, str):
            self._arithmetic(node, _ARITHMETIC[target])
        else:
            raise self._refuse(node)

    def _conv(self, node: fx.Node, x: fx.Node, module: nn.Conv2d) -> None:
        padding = module.padding
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0, 0)
            else:  # "same": zero padding split evenly, which needs an even total
                totals = [
                    d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)
                ]
                if any(t % 2 for t in totals):
                    raise self._refuse(node, "padding='same' with uneven padding")
                padding = tuple(t // 2 for t in totals)
        self._add(
            node,
            "conv",
            [x],
            weight=module.weight,
            bias=module.bias,
            stride=tuple(module.stride),
            padding=tuple(padding),
            dilation=tuple(module.dilation),
            groups=module.groups,
        )

    def _reshape(self, node: fx.Node, x: Any) -> None:
        assert isinstance(x, fx.Node)
        self._shape(x)
        self._add(node, "reshape", [x])

    def _batch_norm(self, node: fx.Node, x: fx.Node, module: nn.modules.batchnorm._BatchNorm):
        if module.running_mean is None or module.running_var is None:
            raise self._refuse(node, "without running statistics")
        value = self.values[x]
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -module.running_mean * scale
        if module.bias is not None:
            shift = shift + module.bias
        view = (-1, *[1] * (value.dim() - 2))
        mean, var, weight, bias, eps = (
            module.running_mean,
            module.running_var,
            module.weight,
            module.bias,
            module.eps,
        )

        def forward(t: torch.Tensor) -> torch.Tensor:
            return F.batch_norm(t, mean, var, weight, bias, False, 0.0, eps)

        self._scale(node, x, scale.view(view), shift.view(view), forward)

    def _pool(self, node: fx.Node, x: Any, kind: str, settings: dict[str, Any]) -> None:
        """A pooling layer from its module attributes or functional arguments."""
        assert isinstance(x, fx.Node)
        if self.values[x].dim() != 4:
            raise self._refuse(node, "on a non-image input")
        if settings.get("return_indices"):
            raise self._refuse(node, "return_indices=True")
        kernel = _pair(settings["kernel_size"])
        stride = settings.get("stride")
        params = {
            "kernel": kernel,
            "stride": kernel if stride is None or stride == [] else _pair(stride),
            "padding": _pair(settings.get("padding", 0)),
            "ceil_mode": bool(settings.get("ceil_mode", False)),
        }
        if kind == "maxpool":
            params["dilation"] = _pair(settings.get("dilation", 1))
        else:
            params["count_include_pad"] = bool(settings.get("count_include_pad", True))
            params["divisor_override"] = settings.get("divisor_override")
        self._add(node, kind, [x], **params)

    def _arithmetic(self, node: fx.Node, kind: str) -> None:
        if node.kwargs:
            raise self._refuse(node, "with keyword arguments")
        operands = list(node.args)
        if kind == "neg":
            (x,) = operands
            assert isinstance(x, fx.Node)
            self._scale(node, x, -1.0, 0.0, lambda t: -t)
            return
        left, right = operands
        target = node.target if not isinstance(node.target, str) else _METHOD_TARGETS[kind]
        assert callable(target)
        if self._traced(left) and self._traced(right):
            if kind not in ("add", "sub"):
                raise self._refuse(node, "a product of two input-dependent tensors")
            assert isinstance(left, fx.Node) and isinstance(right, fx.Node)
            self._add(node, "add", [left, right], signs=(1.0, 1.0 if kind == "add" else -1.0))
            return
        first = self._traced(left)
        x, constant_arg = (left, right) if first else (right, left)
        assert isinstance(x, fx.Node)
        if isinstance(constant_arg, fx.Node) and constant_arg.name in self.shape_derived:
            raise self._refuse(node, "arithmetic with a shape of the input")
        c = self._value(constant_arg)
        if not isinstance(c, (torch.Tensor, int, float)) or isinstance(c, bool):
            raise self._refuse(node, f"with a {type(c).__name__} operand")
        if kind == "div" and not first:
            raise self._refuse(node, "division by an input-dependent tensor")
        scale, shift = {
            "add": (1.0, c),
            "sub": (1.0, -c) if first else (-1.0, c),
            "mul": (c, 0.0),
            "div": (1.0 / c, 0.0),
        }[kind]

        def forward(t: torch.Tensor) -> torch.Tensor:
            return target(t, c) if first else target(c, t)

        self._scale(node, x, scale, shift, forward)

    def _scale(
        self,
        node: fx.Node,
        x: fx.Node,
        scale: Any,
        shift: Any,
        forward: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """An elementwise affine map ``forward(t) = scale * t + shift`` (broadcast)."""
        value = self.values[node]
        out = (1, *self._shape(node))
        like = value
        try:
            scale_full = torch.broadcast_to(
                torch.as_tensor(scale, dtype=like.dtype, device=like.device), out
            )
            shift_full = torch.broadcast_to(
                torch.as_tensor(shift, dtype=like.dtype, device=like.device), out
            )
        except RuntimeError as error:
            raise self._refuse(node, "a constant with a batch dimension") from error
        in_shape = self._shape(x)
        if len(in_shape) != len(out) - 1:
            raise self._refuse(node, "a constant that adds dimensions")
        self._add(
            node,
            "scale",
            [x],
            scale=scale_full,
            shift=shift_full,
            forward=forward,
            in_shape=in_shape,
        )


# The positional arguments of F.max_pool2d / F.avg_pool2d, after the input: the module attributes.
_POOL_ARGUMENTS = {
    "maxpool": (
        "input",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "ceil_mode",
        "return_indices",
    ),
    "avgpool": (
        "input",
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
    ),
}

_METHOD_TARGETS: dict[str, Callable[..., Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
}


def _flatten_args(args: Any) -> list[Any]:
    flat: list[Any] = []
    stack = list(args)
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            flat.append(item)
    return flat


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _function_name(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, str):
        return f"Tensor.{target}"
    name = getattr(target, "__name__", repr(target))
    if getattr(operator, name, None) is target:
        return f"operator.{name}"
    if getattr(torch, name, None) is target:
        return f"torch.{name}"
    if getattr(F, name, None) is target:
        return f"torch.nn.functional.{name}"
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if module else name


# ---------------------------------------------------------------------------------------------
# The threat set and interval bound propagation


class _Threat:
    """The input set of a chunk: the box [max(x - eps, 0), min(x + eps, 1)], and for L2 the ball
    ``||x' - x||_2 <= eps`` as well (the set is their intersection)."""

    def __init__(self, images: torch.Tensor, eps: float, norm: str):
        self.center, self.eps, self.norm = images, eps, norm
        self.lower = (images - eps).clamp(min=0.0)
        self.upper = (images + eps).clamp(max=1.0)
        self.points: dict[str, torch.Tensor] = {}  # values of affine-prefix nodes at the center


def _ibp(net: _Network, threat: _Threat) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Interval bounds (N, *shape) of every op's output."""
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for op in net.ops:
        bounds[op.name] = _interval(net, op, bounds, threat)
    return bounds


def _interval(
    net: _Network,
    op: _Op,
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]],
    threat: _Threat,
) -> tuple[torch.Tensor, torch.Tensor]:
    if op.kind == "input":
        return threat.lower, threat.upper
    lower, upper = _interval_of(op, [bounds[name] for name in op.inputs])
    if threat.norm == "L2" and op.name in net.prefix and _on_frontier(net, op):
        # Over the L2 ball an affine function is bounded exactly by its row norms.
        center = _point(net, op.name, threat)
        radius = threat.eps * _row_norms(net, op.name, threat.center)
        lower = torch.maximum(lower, center - radius)
        upper = torch.minimum(upper, center + radius)
    return lower, upper


def _interval_of(
    op: _Op, inputs: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    p = op.params
    if op.kind in ("linear", "conv", "scale"):
        ((lower, upper),) = inputs
        # Center and radius: exact for one affine map over a box, and at eps = 0 the radius is
        # exactly 0 so both bounds are the forward pass itself.
        mid, rad = torch.lerp(lower, upper, 0.5), torch.sub(upper, lower).mul_(0.5)
        if op.kind == "linear":
            mid = F.linear(mid, p["weight"], p["bias"])
            rad = F.linear(rad, p["weight"].abs())
        elif op.kind == "conv":
            mid = F.conv2d(
                mid, p["weight"], p["bias"], p["stride"], p["padding"], p["dilation"], p["groups"]
            )
            rad = F.conv2d(
                rad, p["weight"].abs(), None, p["stride"], p["padding"], p["dilation"], p["groups"]
            )
        else:
            mid = p["forward"](mid)
            rad = rad * p["scale"].abs()
        return torch.sub(mid, rad), mid.add_(rad)
    if op.kind == "add":
        (first_low, first_up), (second_low, second_up) = inputs
        if p["signs"][1] > 0:
            return first_low + second_low, first_up + second_up
        return first_low - second_up, first_up - second_low
    ((lower, upper),) = inputs
    if op.kind == "reshape":
        return lower.reshape(len(lower), *op.shape), upper.reshape(len(upper), *op.shape)
    if op.kind == "relu":
        return lower.clamp(min=0), upper.clamp(min=0)
    # Pooling is monotone in each input, so the bounds of the output are the pooled bounds.
    return _pool(op, lower), _pool(op, upper)


def _pool(op: _Op, x: torch.Tensor) -> torch.Tensor:
    p = op.params
    if op.kind == "maxpool":
        return _max_pool(x, op.shape, p["kernel"], p["stride"], p["padding"], p["dilation"])
    return F.avg_pool2d(
        x,
        p["kernel"],
        p["stride"],
        p["padding"],
        p["ceil_mode"],
        p["count_include_pad"],
        p["divisor_override"],
    )


def _max_pool(
    x: torch.Tensor,
    shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """Max pooling to the per-sample output ``shape`` (C, H', W') as the elementwise maximum of
    the kernel's strided slices: the same values as F.max_pool2d, several times faster on the CPU
    (IBP pools two tensors per layer)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out_h, out_w = shape[1:]
    # ceil_mode windows may run past the padded input: pad the bottom/right as far as they reach.
    extra_h = max(0, (out_h - 1) * sh + dh * (kh - 1) + 1 - (x.shape[2] + 2 * ph))
    extra_w = max(0, (out_w - 1) * sw + dw * (kw - 1) + 1 - (x.shape[3] + 2 * pw))
    if ph or pw or extra_h or extra_w:
        x = F.pad(x, (pw, pw + extra_w, ph, ph + extra_h), value=-math.inf)
    result = None
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            piece = x[
                :, :, top : top + (out_h - 1) * sh + 1 : sh, left : left + (out_w - 1) * sw + 1 : sw
            ]
            result = piece.contiguous() if result is None else torch.maximum(result, piece)
    assert result is not None
    return result


def _on_frontier(net: _Network, op: _Op) -> bool:
    key = "frontier"
    if key not in net.cache:
        frontier = {net.output} if net.output in net.prefix else set()
        for other in net.ops:
            if other.name not in net.prefix:
                frontier.update(i for i in other.inputs if i in net.prefix)
        net.cache[key] = frontier
    return op.name in net.cache[key]


def _point(net: _Network, name: str, threat: _Threat) -> torch.Tensor:
    """The value of prefix node ``name`` at the images themselves, cached for the chunk."""
    points = threat.points
    if name not in points:
        op = net.op(name)
        if op.kind == "input":
            points[name] = threat.center
        else:
            inputs = [_point(net, i, threat) for i in op.inputs]
            points[name] = _interval_of(op, [(t, t) for t in inputs])[0]
    return points[name]


def _row_norms(net: _Network, name: str, like: torch.Tensor) -> torch.Tensor:
    """L2 norms (shape of the node) of the rows of the linear map from the input to prefix node
    ``name``, from the identity basis pushed through the linear parts, in chunks."""
    key = ("rows", name)
    if key not in net.cache:
        input_op = net.ops[0]
        d = input_op.numel
        widest = max(net.op(n).numel for n in net.prefix)
        chunk = max(1, _BASIS_CHUNK_ELEMENTS // max(widest, 1))
        squares = like.new_zeros(net.op(name).shape)
        for start in range(0, d, chunk):
            count = min(chunk, d - start)
            basis = like.new_zeros((count, d))
            rows = torch.arange(count, device=like.device)
            basis[rows, rows + start] = 1
            values = {input_op.name: basis.view(count, *input_op.shape)}
            for op in net.ops[1 : net.index[name] + 1]:
                if op.name in net.prefix:
                    values[op.name] = _linear_part(op, [values[i] for i in op.inputs])
            squares += values[name].square().sum(dim=0)
        net.cache[key] = squares.sqrt()
    return net.cache[key]


def _linear_part(op: _Op, inputs: list[torch.Tensor]) -> torch.Tensor:
    """``f(t) - f(0)`` for an affine op (biases and shifts dropped)."""
    p = op.params
    if op.kind == "linear":
        return F.linear(inputs[0], p["weight"])
    if op.kind == "conv":
        return F.conv2d(
            inputs[0], p["weight"], None, p["stride"], p["padding"], p["dilation"], p["groups"]
        )
    if op.kind == "scale":
        return inputs[0] * p["scale"]
    if op.kind == "reshape":
        return inputs[0].reshape(len(inputs[0]), *op.shape)
    if op.kind == "avgpool":
        return _pool(op, inputs[0])
    assert op.kind == "add"
    first, second = inputs
    sign = op.params["signs"][1]
    return first + second if sign > 0 else first - second


# ---------------------------------------------------------------------------------------------
# CROWN: backward propagation of linear bounds


@dataclass
class _Rows:
    """A lazy coefficient matrix (N, U, *shape) whose row r holds ``values[:, r]`` at the flat
    position ``index[r]`` and zeros elsewhere: a scaled identity on the chosen neurons, which is
    how a backward pass from a layer starts. Materialised it has U x (size of the layer) elements
    per image; elementwise ops, ReLUs and reshapes keep it lazy."""

    index: torch.Tensor  # (U,) long
    values: torch.Tensor  # (N, U)

    def dense(self, shape: tuple[int, ...]) -> torch.Tensor:
        n, u = self.values.shape
        out = self.values.new_zeros((n, u, math.prod(shape)))
        out.scatter_(2, self.index.view(1, u, 1).expand(n, u, 1), self.values.unsqueeze(2))
        return out.view(n, u, *shape)


@dataclass
class _Scattered:
    """A lazy coefficient tensor (N, S, C, H, W) that is zero except at one input position per
    pooling window: ``values`` (N, S, C, L) at the flat positions ``index`` (N, C, L) of each
    channel's H x W plane. A max pool with disjoint windows gives it; the ReLU before the pool then
    touches only the L chosen positions, a quarter of the plane for 2 x 2 pooling."""

    index: torch.Tensor  # (N, C, L) long
    values: torch.Tensor  # (N, S, C, L)

    def dense(self, shape: tuple[int, ...]) -> torch.Tensor:
        n, s, c, length = self.values.shape
        out = self.values.new_zeros((n, s, c, math.prod(shape[1:])))
        out.scatter_add_(3, self.index.unsqueeze(1).expand(n, s, c, length), self.values)
        return out.view(n, s, *shape)


_Coef = torch.Tensor | _Rows | _Scattered


def _crown(
    net: _Network,
    threat: _Threat,
    spec: torch.Tensor | None,
    full: bool,
    upper: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds of one chunk: full CROWN when ``full``, else CROWN-IBP."""
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    relu_inputs = set(net.relu_inputs) if full else set()
    for op in net.ops:
        bounds[op.name] = _interval(net, op, bounds, threat)
        if op.name in relu_inputs and net.prefix.get(op.name, 2) > 1:
            bounds[op.name] = _tighten(net, bounds, threat, op)
    if spec is None:
        k = net.num_classes
        index = torch.arange(k, device=threat.center.device)
        start: torch.Tensor | _Rows = _Rows(index, threat.center.new_ones((len(threat.center), k)))
    else:
        start = spec
    return _backward(net, bounds, threat, net.output, start, relax=True, upper=upper)


def _tighten(
    net: _Network,
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]],
    threat: _Threat,
    op: _Op,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds of a ReLU's input for the neurons that IBP leaves unstable, intersected with
    IBP. A stable neuron relaxes exactly whatever its bounds, so it keeps its IBP bounds; the
    backward pass runs on the neurons unstable in any image of the chunk, and each image takes
    the new bounds of its own unstable neurons only, so that a result never depends on which
    images share its chunk."""
    lower, upper = bounds[op.name]
    flat_lower, flat_upper = lower.flatten(1), upper.flatten(1)
    unstable = ((flat_lower < 0) & (flat_upper > 0)).any(dim=0).nonzero().squeeze(1)
    if len(unstable) == 0:
        return lower, upper
    start = _Rows(unstable, lower.new_ones((len(lower), len(unstable))))
    crown_lower, crown_upper = _backward(net, bounds, threat, op.name, start, relax=True)
    old_lower, old_upper = flat_lower[:, unstable], flat_upper[:, unstable]
    own = (old_lower < 0) & (old_upper > 0)
    flat_lower, flat_upper = flat_lower.clone(), flat_upper.clone()
    flat_lower[:, unstable] = torch.where(own, torch.maximum(old_lower, crown_lower), old_lower)
    flat_upper[:, unstable] = torch.where(own, torch.minimum(old_upper, crown_upper), old_upper)
    return flat_lower.view_as(lower), flat_upper.view_as(upper)


def _backward(
    net: _Network,
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]],
    threat: _Threat,
    start: str,
    coefficients: torch.Tensor | _Rows,
    relax: bool,
    upper: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bound ``coefficients @ node(start)`` (N, S) by propagating linear bounds backward.

    ``relax``: relax ReLUs and max pools by lines (CROWN); otherwise stop at them and use their
    interval bounds (the elided IBP bound). ``upper=False`` skips the upper bound (returned as
    +inf), halving the work when only a lower bound is wanted.
    """
    n = len(threat.center)
    rows = (
        coefficients.values.shape[1] if isinstance(coefficients, _Rows) else coefficients.shape[1]
    )
    pending: dict[str, tuple[_Coef | None, _Coef | None]] = {
        start: (coefficients, coefficients if upper else None)
    }
    lower_bias = threat.center.new_zeros((n, rows))
    upper_bias = threat.center.new_zeros((n, rows))
    for op in reversed(net.ops[: net.index[start] + 1]):
        if op.name not in pending:
            continue
        low, up = pending.pop(op.name)
        if op.kind == "input" or (op.kind in ("relu", "maxpool") and not relax):
            lows, ups = _concretise(
                low, up, bounds[op.name], threat if op.kind == "input" else None, op.shape
            )
            lower_bias += lows
            upper_bias += ups
            continue
        if op.kind in ("relu", "maxpool"):
            relaxation = _relaxation(net, op, bounds)
            low_in, low_b = (None, 0.0) if low is None else relaxation(low, True)
            up_in, up_b = (None, 0.0) if up is None else relaxation(up, False)
            contributions = [(op.inputs[0], low_in, up_in)]
        else:
            shared = low is up
            low_parts, low_b = _back_affine(net, op, low) if low is not None else ([], 0.0)
            if shared:
                up_parts, up_b = low_parts, low_b
            else:
                up_parts, up_b = _back_affine(net, op, up) if up is not None else ([], 0.0)
            contributions = []
            for i, name in enumerate(op.inputs):
                low_in = low_parts[i] if low_parts else None
                up_in = up_parts[i] if up_parts else None
                contributions.append((name, low_in, up_in))
        lower_bias += low_b
        upper_bias += up_b
        for name, low_in, up_in in contributions:
            _accumulate(pending, name, low_in, up_in, net.op(name).shape)
    if not upper:
        upper_bias = torch.full_like(upper_bias, float("inf"))
    return lower_bias, upper_bias


def _accumulate(
    pending: dict[str, tuple[_Coef | None, _Coef | None]],
    name: str,
    low: _Coef | None,
    up: _Coef | None,
    shape: tuple[int, ...],
) -> None:
    if name not in pending:
        pending[name] = (low, up)
        return
    old_low, old_up = pending[name]
    new_low = _add(old_low, low, shape)
    shared = old_low is old_up and low is up
    pending[name] = (new_low, new_low if shared else _add(old_up, up, shape))


def _add(a: _Coef | None, b: _Coef | None, shape: tuple[int, ...]) -> _Coef | None:
    if a is None or b is None:
        return a if b is None else b
    if isinstance(a, _Rows) and isinstance(b, _Rows):
        return _Rows(a.index, a.values + b.values)
    return _dense(a, shape) + _dense(b, shape)


def _dense(a: _Coef, shape: tuple[int, ...]) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else a.dense(shape)


def _concretise(
    low: _Coef | None,
    up: _Coef | None,
    interval: tuple[torch.Tensor, torch.Tensor],
    threat: _Threat | None,
    shape: tuple[int, ...],
) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Bound ``low @ v`` from below and ``up @ v`` from above over ``v`` in the interval (and, at
    the input under L2, over the ball too: the dual norm)."""
    lower, upper = interval
    mid, rad = ((lower + upper) / 2).flatten(1), ((upper - lower) / 2).flatten(1)
    ball = threat is not None and threat.norm == "L2"
    center = threat.center.flatten(1) if threat is not None else mid
    results: list[torch.Tensor | float] = []
    for coef, sign in ((low, -1.0), (up, 1.0)):
        if coef is None:
            results.append(0.0)
            continue
        if isinstance(coef, _Rows):
            v = coef.values
            box = v * mid[:, coef.index] + sign * v.abs() * rad[:, coef.index]
            bound = box
            if ball:
                assert threat is not None
                bound = v * center[:, coef.index] + sign * threat.eps * v.abs()
                bound = torch.maximum(box, bound) if sign < 0 else torch.minimum(box, bound)
        else:
            a = _dense(coef, shape).flatten(2)
            box = torch.einsum("nsp,np->ns", a, mid) + sign * torch.einsum(
                "nsp,np->ns", a.abs(), rad
            )
            bound = box
            if ball:
                assert threat is not None
                bound = torch.einsum("nsp,np->ns", a, center) + sign * threat.eps * a.norm(dim=2)
                bound = torch.maximum(box, bound) if sign < 0 else torch.minimum(box, bound)
        results.append(bound)
    return results[0], results[1]


def _sum_to(a: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Sum the trailing dims of ``a`` (N, S, *out) down to (N, S, *shape) (undo broadcasting)."""
    dims = [
        i + 2 for i, (o, s) in enumerate(zip(a.shape[2:], shape, strict=True)) if s == 1 and o != 1
    ]
    return a.sum(dim=dims, keepdim=True) if dims else a


def _back_affine(net: _Network, op: _Op, a: _Coef) -> tuple[list[_Coef], torch.Tensor | float]:
    """Coefficients on each input of an affine op, and the bias term (N, S) it contributes."""
    p = op.params
    if isinstance(a, _Scattered):
        a = a.dense(op.shape)
    if op.kind == "reshape":
        if isinstance(a, _Rows):  # flat positions do not change under a row-major reshape
            return [a], 0.0
        in_shape = net.op(op.inputs[0]).shape
        return [a.reshape(*a.shape[:2], *in_shape)], 0.0
    if op.kind == "add":
        parts: list[_Coef] = []
        for name, sign in zip(op.inputs, p["signs"], strict=True):
            in_shape = net.op(name).shape
            if isinstance(a, _Rows) and in_shape == op.shape:
                parts.append(a if sign > 0 else _Rows(a.index, -a.values))
            else:
                parts.append(sign * _sum_to(_dense(a, op.shape), in_shape))
        return parts, 0.0
    if op.kind == "scale":
        scale, shift = p["scale"], p["shift"]
        if isinstance(a, _Rows) and p["in_shape"] == op.shape:
            s = scale.reshape(1, -1)[:, a.index]
            b = shift.reshape(1, -1)[:, a.index]
            return [_Rows(a.index, a.values * s)], a.values * b
        dense = _dense(a, op.shape)
        bias = (dense * shift[0]).flatten(2).sum(dim=2)
        return [_sum_to(dense * scale[0], p["in_shape"])], bias
    if op.kind == "linear":
        weight, bias = p["weight"], p["bias"]
        if isinstance(a, _Rows):
            coef = a.values.unsqueeze(2) * weight[a.index].unsqueeze(0)
            term = a.values * bias[a.index] if bias is not None else 0.0
            return [coef], term
        return [a.matmul(weight)], (a.matmul(bias) if bias is not None else 0.0)
    if op.kind == "conv":
        return _back_conv(net, op, a)
    assert op.kind == "avgpool"
    dense = _dense(a, op.shape)
    n, s = dense.shape[:2]
    in_shape = net.op(op.inputs[0]).shape
    like = dense.new_empty(()).expand(n * s, *in_shape)
    grad = torch.ops.aten.avg_pool2d_backward(
        dense.reshape(n * s, *op.shape),
        like,
        list(p["kernel"]),
        list(p["stride"]),
        list(p["padding"]),
        p["ceil_mode"],
        p["count_include_pad"],
        p["divisor_override"],
    )
    return [grad.view(n, s, *in_shape)], 0.0


def _back_conv(
    net: _Network, op: _Op, a: torch.Tensor | _Rows
) -> tuple[list[_Coef], torch.Tensor | float]:
    p = op.params
    weight, bias = p["weight"], p["bias"]
    in_shape = net.op(op.inputs[0]).shape
    out_c, out_h, out_w = op.shape
    if isinstance(a, _Rows):
        rows = _conv_rows(op, in_shape, a.index)
        coef = a.values.view(*a.values.shape, 1, 1, 1) * rows.unsqueeze(0)
        term = a.values * bias[a.index // (out_h * out_w)] if bias is not None else 0.0
        return [coef], term
    n, s = a.shape[:2]
    kh, kw = weight.shape[2:]
    if p["groups"] == 1 and in_shape[0] * kh * kw <= out_c:
        # Few input channels (the first layer): a GEMM onto the patches and a fold, twice as fast
        # as conv_transpose2d on the CPU, and the patches are no larger than the coefficients.
        patches = torch.matmul(weight.view(out_c, -1).t(), a.reshape(n * s, out_c, -1))
        grad = F.fold(patches, in_shape[1:], (kh, kw), p["dilation"], p["padding"], p["stride"])
        term = a.sum(dim=(3, 4)).matmul(bias) if bias is not None else 0.0
        return [grad.view(n, s, *in_shape)], term
    grad = F.conv_transpose2d(
        a.reshape(n * s, out_c, out_h, out_w),
        weight,
        None,
        p["stride"],
        p["padding"],
        _output_padding(op, in_shape),
        p["groups"],
        p["dilation"],
    )
    term = a.sum(dim=(3, 4)).matmul(bias) if bias is not None else 0.0
    return [grad.view(n, s, *in_shape)], term


def _output_padding(op: _Op, in_shape: tuple[int, ...]) -> tuple[int, int]:
    """What conv_transpose2d must add to give back the conv's input size (strides drop rows)."""
    p = op.params
    kh, kw = p["weight"].shape[2:]
    sizes = []
    for i, k in enumerate((kh, kw)):
        produced = (op.shape[1 + i] - 1) * p["stride"][i] - 2 * p["padding"][i]
        produced += p["dilation"][i] * (k - 1) + 1
        sizes.append(in_shape[1 + i] - produced)
    return (sizes[0], sizes[1])


def _conv_rows(op: _Op, in_shape: tuple[int, ...], index: torch.Tensor) -> torch.Tensor:
    """The rows (U, C, H, W) of the conv's matrix for the output neurons ``index``, built one
    output channel at a time so that no (neurons x neurons) identity is ever materialised."""
    p = op.params
    weight = p["weight"]
    out_c, out_h, out_w = op.shape
    plane = out_h * out_w
    groups = p["groups"]
    in_per_group = in_shape[0] // groups
    out_per_group = out_c // groups
    rows = weight.new_zeros((len(index), *in_shape))
    channels = index // plane
    for c in torch.unique(channels).tolist():
        chosen = (channels == c).nonzero().squeeze(1)
        onehot = weight.new_zeros((len(chosen), 1, plane))
        count = torch.arange(len(chosen), device=index.device)
        onehot[count, 0, index[chosen] % plane] = 1
        block = F.conv_transpose2d(
            onehot.view(-1, 1, out_h, out_w),
            weight[c : c + 1],
            None,
            p["stride"],
            p["padding"],
            _output_padding(op, in_shape),
            1,
            p["dilation"],
        )
        group = c // out_per_group
        rows[chosen, group * in_per_group : (group + 1) * in_per_group] = block
    return rows


def _relaxation(
    net: _Network, op: _Op, bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> Callable[[_Coef, bool], tuple[_Coef, torch.Tensor]]:
    """The backward step of a ReLU or max pool: ``step(A, lower)`` gives the coefficients on the
    op's input and the bias (N, S) of the bound of ``A @ op`` from below (``lower``) or above."""
    in_lower, in_upper = bounds[op.inputs[0]]
    if op.kind == "relu":
        return _relu_step(in_lower, in_upper)
    return _maxpool_step(op, in_lower, in_upper, net.op(op.inputs[0]).shape)


def _relu_step(
    lower: torch.Tensor, upper: torch.Tensor
) -> Callable[[_Coef, bool], tuple[_Coef, torch.Tensor]]:
    active = (lower >= 0).to(lower.dtype)
    unstable = (lower < 0) & (upper > 0)
    width = torch.where(unstable, upper - lower, torch.ones_like(lower))
    up_slope = torch.where(unstable, upper / width, active)
    up_bias = torch.where(unstable, -lower * up_slope, torch.zeros_like(lower))
    # CROWN-Ada: the lower line with the smaller area between it and the ReLU.
    low_slope = torch.where(unstable, (upper > -lower).to(lower.dtype), active)
    n, shape = len(lower), lower.shape[1:]
    lines = [t.flatten(1) for t in (low_slope, up_slope - low_slope, up_bias)]

    def step(a: _Coef, lower_bound: bool) -> tuple[_Coef, torch.Tensor]:
        if isinstance(a, _Rows):
            slope, extra, bias = (t[:, a.index] for t in lines)  # (N, U)
            coef = a.values
        elif isinstance(a, _Scattered):
            slope, extra, bias = (
                t.view(n, shape[0], -1).gather(2, a.index).unsqueeze(1) for t in lines
            )  # (N, 1, C, L)
            coef = a.values
        else:
            slope, extra, bias = (t.view(n, 1, *shape) for t in lines)
            coef = a
        # pos * l + neg * u = coef * l + neg * (u - l) for a lower bound, and with pos and neg
        # swapped for an upper bound: fewer passes over the largest tensors of the backward pass.
        part = coef.clamp(max=0) if lower_bound else coef.clamp(min=0)
        new = torch.addcmul(coef * slope, part, extra)
        term = (part * bias).flatten(2).sum(dim=2) if part.dim() > 2 else part * bias
        if isinstance(a, _Rows):
            return _Rows(a.index, new), term
        if isinstance(a, _Scattered):
            return _Scattered(a.index, new), term
        return new, term

    return step


def _maxpool_step(
    op: _Op, lower: torch.Tensor, upper: torch.Tensor, in_shape: tuple[int, ...]
) -> Callable[[_Coef, bool], tuple[_Coef, torch.Tensor]]:
    """Per window: the chosen input (largest lower bound), whether it is the max for sure (its
    lower bound is at least every other input's upper bound), and the largest upper bound."""
    p = op.params
    n, c, h, w = lower.shape
    out_h, out_w = op.shape[1:]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = p["kernel"], p["stride"], p["padding"], p["dilation"]
    # ceil_mode windows may run past the padded input: pad the bottom/right as far as they reach.
    extra_h = max(0, (out_h - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph))
    extra_w = max(0, (out_w - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw))
    padding = (pw, pw + extra_w, ph, ph + extra_h)

    def windows(t: torch.Tensor, fill: float) -> torch.Tensor:
        padded = F.pad(t, padding, value=fill)
        unfolded = F.unfold(padded, (kh, kw), dilation=(dh, dw), stride=(sh, sw))
        return unfolded.view(len(t), t.shape[1], kh * kw, out_h * out_w)

    low_w, up_w = windows(lower, -math.inf), windows(upper, -math.inf)
    position = torch.arange(h * w, dtype=torch.float64, device=lower.device).view(1, 1, h, w)
    where = windows(position, -1.0)  # flat input position of each window slot
    choice = low_w.argmax(dim=2, keepdim=True)  # (N, C, 1, L)
    chosen_low = low_w.gather(2, choice).squeeze(2)
    others_up = up_w.scatter(2, choice, -math.inf).max(dim=2).values
    exact = (chosen_low >= others_up).to(lower.dtype)  # (N, C, L)
    up_max = up_w.max(dim=2).values
    flat_index = where.expand(n, c, -1, -1).gather(2, choice).squeeze(2).long()  # (N, C, L)

    loose = 1 - exact  # windows whose upper "line" is the constant up_max
    constant = (loose * up_max).flatten(1)
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1

    def step(a: _Coef, lower_bound: bool) -> tuple[_Coef, torch.Tensor]:
        dense = _dense(a, op.shape)
        s = dense.shape[1]
        coef = dense.view(n, s, c, out_h * out_w)
        # A lower bound takes the lower line (the chosen input) for positive coefficients and the
        # upper one for negative ones; an upper bound the other way round. The upper line is the
        # chosen input in exact windows and the constant up_max elsewhere.
        part = coef.clamp(max=0) if lower_bound else coef.clamp(min=0)
        onto_input = coef - part * loose.unsqueeze(1)
        bias = torch.einsum("nsp,np->ns", part.flatten(2), constant)
        if disjoint:
            return _Scattered(flat_index, onto_input), bias
        grad = dense.new_zeros((n, s, c, h * w))
        grad.scatter_add_(3, flat_index.unsqueeze(1).expand(n, s, c, -1), onto_input)
        return grad.view(n, s, *in_shape), bias

    return step


# ---------------------------------------------------------------------------------------------
# Memory estimate


def _coefficient_elements(net: _Network, rows: int, intermediate: str) -> int:
    """Per image: the largest backward coefficient tensor, in elements (:func:`crown_elements`)."""
    worst = rows * _widest_dense(net, net.output, lazy=False)
    if intermediate == "crown":
        for name in net.relu_inputs:
            if net.prefix.get(name, 2) > 1:
                worst = max(worst, net.op(name).numel * _widest_dense(net, name, lazy=True))
    return worst


def _widest_dense(net: _Network, start: str, lazy: bool) -> int:
    """The largest node (in elements per row) at which a backward pass from ``start`` holds a
    materialised coefficient tensor; a lazy start stays a :class:`_Rows` through elementwise
    ops, ReLUs, reshapes and same-shape sums, as :func:`_back_affine` keeps it."""
    state: dict[str, str] = {start: "rows" if lazy else "dense"}
    widest = 0
    for op in reversed(net.ops[: net.index[start] + 1]):
        mode = state.get(op.name)
        if mode is None:
            continue
        for name in op.inputs:
            same = net.op(name).shape == op.shape
            keeps = mode == "rows" and (
                op.kind in ("relu", "reshape") or (op.kind in ("scale", "add") and same)
            )
            if not keeps and mode == "rows" and op.kind in ("maxpool", "avgpool", "scale", "add"):
                widest = max(widest, op.numel)  # materialised before the step
            incoming = "rows" if keeps else "dense"
            state[name] = "dense" if state.get(name) == "dense" else incoming
        if mode == "dense":
            widest = max(widest, op.numel)
    return widest
