"""The Fast Adaptive Boundary attack (Croce and Hein 2020, "Minimally distorted adversarial
examples with a fast adaptive boundary attack", ICML 2020, arXiv:1907.02044), untargeted (FAB)
or targeted (FAB-T, the variant AutoAttack runs), under the Linf or L2 norm.

FAB looks for the smallest perturbation that changes the decision, not for the highest loss in a
ball. At the current point ``x`` it linearises the decision boundary between the true class ``y``
and a class ``k``, ``h(z) = f_k(z) - f_y(z) ~ h(x) + grad h(x) . (z - x) = 0``, and projects onto
that hyperplane intersected with the [0, 1] box (the paper's projection on a hyperplane with box
constraints), both from ``x`` (giving ``delta``) and from the clean point ``x0`` (giving
``delta0``). FAB-T takes ``k`` to be a fixed target, each of the ``n_target_classes`` most likely
wrong classes at the clean point in turn; untargeted FAB takes the class whose linearised boundary
is closest in the attack's norm. The biased, extrapolated step is

    x <- clip_[0,1]((1 - alpha) (x + eta delta) + alpha (x0 + eta delta0)),
    alpha = min(|delta| / (|delta| + |delta0|), alpha_max),

with the overshoot ``eta >= 1``; ``alpha`` pulls towards the projection of the clean point, so the
iterates stay near ``x0``. After a step that lands on a misclassified point the backward step
``x <- (1 - beta) x0 + beta x`` moves back towards ``x0`` and the search goes on from there for a
closer boundary point.

As in every attack here, success is tracked at every point the model evaluates, and a sample is
fooled only by a misclassified point inside the eps-ball (FAB's larger perturbations do not
count); it then leaves the batch. Restart 0 of each run starts at the clean point, later restarts
at a random point at distance ``eps / 2``, as the official code does. Survivors return their
in-ball point of lowest margin ``z_y - max_{i != y} z_i`` (the clean point if no iterate beat it).

With one restart FAB draws no random numbers: its trajectory is that of the reference
implementations (AutoAttack's ``FABAttack``, torchattacks' ``FAB``), up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from safetycheck.core.errors import ConfigError
from safetycheck.io.models import evaluation_mode
from safetycheck.measures.attacks.base import (
    AttackResult,
    check_label_range,
    empty_result,
    loss_gradient,
    per_sample_generators,
    prepare_batch,
    validate_threat,
)
from safetycheck.measures.attacks.square import margin

# A projection shorter than this counts as this long when the two are weighed (the official code's
# floor, so that alpha stays defined when both vanish). Normal entries below the second count as
# zero (their coordinates never move), and a gradient that small puts its boundary out of reach.
_NORM_FLOOR = 1e-8
_GRAD_FLOOR = 1e-12


def project_linf(
    points: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor
) -> torch.Tensor:
    """The smallest-Linf step from ``points`` onto the hyperplane ``normals . z = offsets`` inside
    the box [0, 1]^D (Croce and Hein 2020).

    ``points``, ``normals``: (N, D), the points in [0, 1]; ``offsets``: (N,). Returns the steps
    ``delta`` (N, D) in the dtype of ``points``: ``points + delta`` lies in [0, 1]^D and on the
    hyperplane with ``|delta|_inf`` minimal. Where the hyperplane misses the box, ``delta`` leads to
    the box corner closest to it (every coordinate moved as far as the box allows towards it).

    With ``r = offsets - normals . points`` made non-negative by flipping the normal, a step of
    Linf size ``lambda`` gains at most ``sum_i |w_i| min(lambda, u_i)`` along the normal, ``u_i``
    the room coordinate ``i`` has in the direction of ``sign(w_i)``; the smallest ``lambda`` that
    gains ``r`` solves a piecewise-linear equation (:func:`_smallest_level`), and then
    ``delta_i = sign(w_i) min(lambda, u_i)``.
    """
    w, room, _, needed = _oriented(points, normals, offsets)
    level = _smallest_level(w.abs(), room, needed)
    return (w.sign() * torch.minimum(level[:, None], room)).to(points.dtype)


def project_l2(points: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The smallest-L2 step from ``points`` onto the hyperplane ``normals . z = offsets`` inside
    the box [0, 1]^D (Croce and Hein 2020).

    Shapes and the case of a hyperplane that misses the box as in :func:`project_linf`.

    With ``r = offsets - normals . points`` made non-negative by flipping the normal, the KKT
    conditions of ``min |delta|_2^2`` under ``w . delta = r`` and the box give
    ``delta_i = clip(mu w_i)`` to the box for one multiplier ``mu >= 0``, that is
    ``delta_i = w_i min(mu, u_i / |w_i|)`` with ``u_i`` the room in the direction of ``sign(w_i)``;
    ``w . delta = sum_i w_i^2 min(mu, u_i / |w_i|) = r`` is the same piecewise-linear equation as
    under Linf, with weights ``w_i^2`` and kinks ``u_i / |w_i|``.
    """
    w, room, flat, needed = _oriented(points, normals, offsets)
    kinks = torch.where(flat, torch.zeros_like(room), room / w.abs().clamp_min(_GRAD_FLOOR))
    level = _smallest_level(w.square(), kinks, needed)
    return (w * torch.minimum(level[:, None], kinks)).to(points.dtype)


def _oriented(
    points: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """In float64, for the hyperplane ``normals . z = offsets`` seen from ``points`` (N, D):
    the normals (N, D) flipped to point towards the hyperplane, the room (N, D) each coordinate
    has in the direction of its normal's sign, the mask (N, D) of coordinates whose normal entry
    is zero (they never move), and the gap (N,) ``|offsets - normals . points|`` the step must
    close along the normal."""
    t, w = points.double(), normals.double()
    gap = offsets.double() - (w * t).sum(dim=1)
    w = torch.where((gap < 0)[:, None], -w, w)
    room = torch.where(w > 0, 1 - t, t).clamp_min(0.0)
    flat = w.abs() < _GRAD_FLOOR
    return torch.where(flat, torch.zeros_like(w), w), room, flat, gap.abs()


def _smallest_level(
    weights: torch.Tensor, kinks: torch.Tensor, needed: torch.Tensor
) -> torch.Tensor:
    """Per row, the smallest ``s >= 0`` with ``sum_i weights_i min(s, kinks_i) >= needed``.

    ``weights``, ``kinks``: (N, D), non-negative; ``needed``: (N,), non-negative. Returns (N,),
    ``inf`` where even ``s = inf`` falls short. The left side is continuous, non-decreasing and
    linear between consecutive kinks: with the kinks sorted, its value at the k-th kink is
    ``A_k + kink_k T_k`` (``A_k`` the weighted sum of the k smallest kinks, ``T_k`` the weight of
    the rest), so counting the kinks where it is still short of ``needed`` finds the segment, and
    ``s`` solves ``A_k + s T_k = needed`` there. All rows at once, without a loop.
    """
    kinks = torch.where(weights > 0, kinks, torch.zeros_like(kinks))
    sorted_kinks, order = kinks.sort(dim=1)
    sorted_weights = weights.gather(1, order)
    below = torch.cumsum(sorted_weights * sorted_kinks, dim=1)
    total = sorted_weights.sum(dim=1, keepdim=True)
    rest = (total - torch.cumsum(sorted_weights, dim=1)).clamp_min(0.0)
    short = ((below + sorted_kinks * rest) < needed[:, None]).sum(dim=1, keepdim=True)
    below = torch.cat([torch.zeros_like(total), below], dim=1).gather(1, short)
    rest = torch.cat([total, rest], dim=1).gather(1, short)
    level = ((needed[:, None] - below) / rest.clamp_min(torch.finfo(rest.dtype).tiny)).clamp_min(0)
    level = torch.where(short == kinks.shape[1], math.inf, level)
    return level.squeeze(1)


def _norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """(N,) Linf or L2 size of (N, ...) perturbations."""
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "Linf" else flat.norm(dim=1)


@dataclass(frozen=True)
class FAB:
    """The threat model and budget; the defaults are AutoAttack's "standard" FAB-T (100 steps,
    one restart, the 9 most likely wrong classes, ``alpha_max = 0.1``, ``eta = 1.05``,
    ``beta = 0.9``).

    ``eps``: the radius (pixel units, images in [0, 1]) within which a misclassified point counts;
    ``norm``: ``"Linf"`` or ``"L2"``; ``steps``: boundary steps per run; ``restarts``: runs per
    target class (FAB-T) or in all (FAB), the first from the clean point; ``targeted``: FAB-T,
    attacking the boundary to each of the ``n_target_classes`` (1..9; fewer if the model has fewer
    classes) most likely wrong classes at the clean point in turn, or untargeted FAB, stepping
    towards the closest linearised boundary; ``alpha_max``: the largest pull towards the clean
    point's projection, in [0, 1]; ``eta``: the overshoot, at least 1; ``beta``: the backward
    step's factor, in (0, 1).

    ``forward_passes`` counts the images the model evaluates: one per image per evaluation, whether
    or not a backward pass follows (as FGSM's and APGD's counts do), plus the clean pass. Each step
    costs two per image, as in the official code: a forward-backward pass that linearises at the
    current point and a forward pass that checks the point the step lands on; a sample leaves at
    the first misclassified in-ball point. Untargeted FAB needs the gradient of every logit, one
    backward pass per class after the same forward pass; that pass still counts once.
    """

    eps: float
    norm: str = "Linf"
    steps: int = 100
    restarts: int = 1
    seed: int = 0
    targeted: bool = True
    n_target_classes: int = 9
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9

    def __post_init__(self):
        validate_threat(self.norm, self.eps, self.steps, restarts=self.restarts)
        if not isinstance(self.targeted, bool):
            raise ConfigError(f"targeted={self.targeted!r} must be True (FAB-T) or False (FAB).")
        if (
            isinstance(self.n_target_classes, bool)
            or not isinstance(self.n_target_classes, int)
            or not 1 <= self.n_target_classes <= 9
        ):
            raise ConfigError(
                f"n_target_classes={self.n_target_classes!r} must be an integer in [1, 9] "
                f"(the wrong classes of a 10-class model)."
            )
        _check_range(
            "alpha_max",
            self.alpha_max,
            0.0,
            1.0,
            "[0, 1]",
            "the largest weight of the clean point's projection in a step",
        )
        _check_range("eta", self.eta, 1.0, math.inf, "[1, inf)", "the overshoot factor")
        _check_range("beta", self.beta, 0.0, 1.0, "(0, 1)", "the backward step's factor")

    @property
    def name(self) -> str:
        return "fab_t" if self.targeted else "fab"

    def describe(self) -> str:
        kind = f"FAB-T ({self.n_target_classes} target classes)" if self.targeted else "FAB"
        return (
            f"{kind}-{self.norm} eps={self.eps:g}, {self.steps} steps, {self.restarts} restart(s), "
            f"alpha_max {self.alpha_max:g}, eta {self.eta:g}, beta {self.beta:g}, seed {self.seed}"
        )

    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> AttackResult:
        """Attack ``images`` (N, C, H, W) in [0, 1] with true ``labels`` (N,) int64."""
        images, labels, adversarial = prepare_batch(model, images, labels)
        if len(labels) == 0:
            return empty_result(images)
        with evaluation_mode(model):
            with torch.no_grad():
                clean_logits = model(images)
            check_label_range(labels, clean_logits)
            fooled = clean_logits.argmax(dim=1) != labels
            passes = len(labels)
            if self.eps == 0:
                return AttackResult(adversarial, fooled, passes)
            best_margin = margin(clean_logits, labels)
            for targets, restart, stream in self._runs(clean_logits, labels):
                active = (~fooled).nonzero().squeeze(1)
                if len(active) == 0:
                    break
                run = _Run(self, model, images, labels, targets, active)
                passes += run.search(restart, stream, adversarial, fooled, best_margin)
        return AttackResult(adversarial, fooled, passes)

    def _runs(self, clean_logits: torch.Tensor, labels: torch.Tensor) -> list:
        """(targets (N,) or None, restart, random stream) per run: FAB-T attacks rank k, each
        sample's k-th most likely wrong class at the clean point, for every restart in turn."""
        if not self.targeted:
            return [(None, restart, restart) for restart in range(self.restarts)]
        wrong = clean_logits.float().scatter(1, labels[:, None], -math.inf)
        ranked = wrong.argsort(dim=1, descending=True)
        n_targets = min(self.n_target_classes, clean_logits.shape[1] - 1)
        return [
            (ranked[:, rank], restart, 1000 * rank + restart)
            for rank in range(n_targets)
            for restart in range(self.restarts)
        ]


class _Run:
    """One FAB run on ``images[active]`` (one target rank and restart): the samples still
    standing, their current point ``x`` and its logits, and the boundary linearised at the last
    gradient pass, ``h + g . (z - x) = 0`` (``h``: (n,), ``g``: (n, D))."""

    def __init__(self, attack: FAB, model, images, labels, targets, active):
        self.attack, self.model = attack, model
        self.active = active
        self.x0, self.y = images[active], labels[active]
        self.target = targets[active] if targets is not None else None
        self.x = self.x0
        self.logits = torch.empty(0)
        self.h: torch.Tensor | None = None
        self.g: torch.Tensor | None = None

    def search(self, restart, stream, adversarial, fooled, best_margin) -> int:
        """Run the steps; write fooled samples and better survivor points into the outputs.
        Returns the forward passes spent (images).

        Each step, as in the official code, linearises at the current point (a forward-backward
        pass, whose logits also check that point: the start, or where a backward step moved to)
        and checks the point it lands on with a forward pass. Checking the landing point with the
        gradient pass instead would save the second pass only where no backward step follows, and
        near the boundary, where the robust samples that pay for most steps stay, one nearly
        always does."""
        attack = self.attack
        if restart > 0:
            self.x = _random_start(self.x0, attack.norm, attack.eps, attack.seed, stream)
        passes = 0
        for _ in range(attack.steps):
            passes += self._evaluate(gradient=True)
            self._record(adversarial, fooled, best_margin)
            if len(self.y) == 0:
                break
            self.x = self._boundary_step()
            passes += self._evaluate(gradient=False)
            crossed = self._record(adversarial, fooled, best_margin)
            if len(self.y) == 0:
                break
            self._backward_step(crossed)
        return passes

    def _evaluate(self, gradient: bool) -> int:
        """Logits, and the linearised boundary if ``gradient``, at ``x``. Returns the images
        evaluated."""
        if not gradient:
            with torch.no_grad():
                self.logits = self.model(self.x).float()
        elif self.target is not None:
            self.logits, self.h, self.g = _targeted_boundary(
                self.model, self.x, self.y, self.target
            )
        else:
            self.logits, self.h, self.g = _closest_boundary(
                self.model, self.x, self.y, self.attack.norm
            )
        return len(self.y)

    def _record(self, adversarial, fooled, best_margin) -> torch.Tensor:
        """Check the current points: a misclassified one inside the ball fools its sample, which
        leaves the run; an in-ball one of lower margin becomes its survivor point. Returns the
        (remaining samples,) mask of misclassified points outside the ball."""
        attack, active = self.attack, self.active
        hit = self.logits.argmax(dim=1) != self.y
        inside = _norm(self.x - self.x0, attack.norm) <= attack.eps
        current = margin(self.logits, self.y)
        better = inside & ~hit & (current < best_margin[active])
        adversarial[active[better]] = self.x[better]
        best_margin[active[better]] = current[better]
        won = hit & inside
        adversarial[active[won]] = self.x[won]
        fooled[active[won]] = True
        if won.any():
            self._keep(~won)
            hit = hit[~won]
        return hit

    def _keep(self, keep: torch.Tensor) -> None:
        self.active, self.x0, self.y, self.x = (
            self.active[keep],
            self.x0[keep],
            self.y[keep],
            self.x[keep],
        )
        self.logits = self.logits[keep]
        if self.target is not None:
            self.target = self.target[keep]
        if self.h is not None and self.g is not None:
            self.h, self.g = self.h[keep], self.g[keep]

    def _boundary_step(self) -> torch.Tensor:
        """The biased, extrapolated projection step from every current point (n, C, H, W)."""
        attack = self.attack
        assert self.h is not None and self.g is not None
        x, x0 = self.x.flatten(1), self.x0.flatten(1)
        g = self.g
        offsets = (g.double() * x.double()).sum(dim=1) - self.h.double()
        project = project_linf if attack.norm == "Linf" else project_l2
        delta, delta0 = project(x, g, offsets), project(x0, g, offsets)
        size = _norm(delta, attack.norm).clamp_min(_NORM_FLOOR)
        size0 = _norm(delta0, attack.norm).clamp_min(_NORM_FLOOR)
        alpha = (size / (size + size0)).clamp(max=attack.alpha_max)[:, None]
        stepped = (1 - alpha) * (x + attack.eta * delta) + alpha * (x0 + attack.eta * delta0)
        return stepped.clamp(0.0, 1.0).view_as(self.x)

    def _backward_step(self, crossed: torch.Tensor) -> None:
        """Move the points that crossed a boundary outside the ball (``crossed``: (n,) bool) back
        towards the clean point, the backward step ``x <- (1 - beta) x0 + beta x``."""
        beta = self.attack.beta
        self.x = torch.where(
            crossed.view(-1, 1, 1, 1), (1 - beta) * self.x0 + beta * self.x, self.x
        )


def _random_start(x0: torch.Tensor, norm: str, eps: float, seed: int, stream: int) -> torch.Tensor:
    """A start at distance ``eps / 2`` from each of ``x0`` (N, C, H, W) in a random direction
    (Linf: uniform in the cube, scaled onto the sphere; L2: Gaussian), clipped to [0, 1]: the
    official code's start for the restarts after the first. Drawn per sample, from the sample's
    content and (seed, stream), as :func:`base.random_start` does."""
    shape = x0.shape[1:]
    draws = [
        torch.rand(shape, generator=g) * 2 - 1
        if norm == "Linf"
        else torch.randn(shape, generator=g)
        for g in per_sample_generators(x0, seed, stream)
    ]
    direction = torch.stack(draws).to(x0.device, x0.dtype)
    size = _norm(direction, norm).clamp_min(_GRAD_FLOOR).view(-1, 1, 1, 1)
    return (x0 + 0.5 * eps * direction / size).clamp(0.0, 1.0)


def _targeted_boundary(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (n, C), ``h = f_t - f_y`` (n,) and its input gradient (n, D) at ``x``: one forward
    and one backward pass."""

    def difference(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return logits.gather(1, targets[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(
            1
        )

    logits, h, grad = loss_gradient(model, x, labels, difference)
    return logits.float(), h, grad.flatten(1)


def _closest_boundary(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, norm: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (n, C), and ``h = f_k - f_y`` (n,) and its input gradient (n, D) for the class
    ``k != y`` whose linearised boundary is closest to ``x`` in ``norm``: distance
    ``|h_k| / |grad h_k|_*`` with the dual norm (L1 for Linf, L2 for L2), the distance to the
    linearised boundary. One forward pass and one backward pass per class."""
    logits, jacobian = _logits_and_jacobian(model, x)
    rows = torch.arange(len(labels), device=x.device)
    h = logits - logits[rows, labels][:, None]
    g = jacobian - jacobian[rows, labels][:, None]
    dual = g.abs().sum(dim=2) if norm == "Linf" else g.norm(dim=2)
    distance = h.abs() / (dual + _GRAD_FLOOR)
    distance[rows, labels] = math.inf
    closest = distance.argmin(dim=1)
    return logits, h[rows, closest], g[rows, closest]


def _logits_and_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, C) at ``x`` and their input Jacobian (n, C, D). A model whose output does not
    depend differentiably on its input gets a zero Jacobian, as in :func:`base.loss_gradient`."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x).float()
        columns = []
        for k in range(logits.shape[1]):
            grad = None
            if logits.requires_grad:
                (grad,) = torch.autograd.grad(
                    logits[:, k].sum(), x, retain_graph=k < logits.shape[1] - 1, allow_unused=True
                )
            columns.append(torch.zeros_like(x) if grad is None else grad.detach())
    return logits.detach(), torch.stack(columns, dim=1).flatten(2)


def _check_range(name: str, value, low: float, high: float, shown: str, meaning: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a number in the interval ``shown`` (written
    ``[low, high]``, ``(low, high)`` or ``[low, inf)``: brackets say which ends are included)."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    above = number and (low <= value if shown[0] == "[" else low < value)
    below = number and (value <= high if shown[-1] == "]" else value < high)
    if not (above and below):
        raise ConfigError(f"{name}={value!r} must be a number in {shown}, {meaning}.")
