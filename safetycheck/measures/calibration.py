"""Calibration of a classifier's confidence, from its logits: binned calibration errors, Brier
score, negative log-likelihood, bootstrap intervals, temperature scaling and reliability diagrams.

Every function takes ``logits`` (N, C) float (torch or numpy; finite; raw scores, *not*
probabilities) and ``labels`` (N,) int in ``0..C-1``. Probabilities come from a numerically stable
softmax computed in float64 (``log_softmax``, which subtracts the row maximum), so logits of any
magnitude are safe. The *confidence* of a prediction is its top softmax probability and the
prediction is correct when its arg-max equals the label (ties go to the lowest class index).

Binned errors partition the N predictions by confidence into ``n_bins`` bins and compare, in each
non-empty bin b, the accuracy acc(b) with the mean confidence conf(b):

* ``binning="equal_width"``: bins [0, 1/M), [1/M, 2/M), ..., [(M-1)/M, 1]; the last bin is closed,
  so a confidence of exactly 1.0 belongs to it (not to an extra bin) and 0.0 belongs to the first.
  This is the binning of Guo et al. (2017) and of torchmetrics' ``MulticlassCalibrationError``.
* ``binning="equal_mass"``: the predictions sorted by confidence (stable sort) are cut into M
  consecutive runs whose sizes differ by at most one (Nguyen & O'Connor 2015; "AdaECE" in
  Mukhoti et al. 2020). Fewer predictions than bins leaves some bins empty.

Empty bins carry no weight. Binned estimates are biased upward on small samples (a perfectly
calibrated model scores about sqrt(M / N) rather than 0), which is why every value comes with a
bootstrap interval and its sample count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from safetycheck.core.errors import ConfigError, DataError, ModelContractError
from safetycheck.core.stats import BOOTSTRAP_RESAMPLES, CONFIDENCE

DEFAULT_BINS = 15
Binning = Literal["equal_width", "equal_mass"]
_PROBABILITY_SUM_TOLERANCE = 1e-3  # softmax outputs in float16 still sum to 1 within this


# ---------------------------------------------------------------------------------------------
# Input validation and per-sample quantities


@dataclass(frozen=True)
class _Predictions:
    """Per-sample quantities every metric is built from, all float64 (N,)."""

    confidence: torch.Tensor  # top softmax probability, in [0, 1]
    correct: torch.Tensor  # 1.0 where the arg-max equals the label
    brier: torch.Tensor  # sum over classes of (p_k - onehot_k)^2, in [0, 2]
    nll: torch.Tensor  # -log p_label, in [0, inf)


def _predictions(logits, labels) -> _Predictions:
    logits, labels = validate_logits(logits, labels)
    # Metrics are cheap at MNIST scale; the CPU keeps the seeded bootstrap identical on any device.
    logits, labels = logits.detach().cpu(), labels.cpu()
    log_probabilities = torch.log_softmax(logits.to(torch.float64), dim=1)
    top_log_probability, predicted = log_probabilities.max(dim=1)
    probabilities = log_probabilities.exp()
    label_probability = probabilities.gather(1, labels[:, None]).squeeze(1)
    brier = probabilities.square().sum(dim=1) - 2 * label_probability + 1
    return _Predictions(
        confidence=top_log_probability.exp(),
        correct=(predicted == labels).to(torch.float64),
        brier=brier.clamp_min(0.0),  # rounding can push an exact 0 to -1e-17
        nll=-log_probabilities.gather(1, labels[:, None]).squeeze(1),
    )


def validate_logits(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Check and return ``(logits, labels)`` as tensors; raise a one-sentence error otherwise.

    Raises:
        ModelContractError: logits not a 2-D float array with at least 2 columns and 1 row, with
            NaN or infinite entries, with a row count different from the labels', or that look
            like probabilities (every row non-negative and summing to 1): the contract is that a
            model returns logits, and a final softmax in the model would make every metric here
            silently wrong (the softmax would be applied twice).
        DataError: labels not a 1-D integer array, or outside ``0..C-1``.
    """
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if logits.ndim != 2 or not logits.is_floating_point():
        raise ModelContractError(
            f"logits must be a 2-D float array (N samples, C classes), not {logits.dtype} of shape "
            f"{tuple(logits.shape)}; pass the model's raw outputs."
        )
    count, classes = logits.shape
    if count == 0 or classes < 2:
        raise ModelContractError(
            f"logits of shape {tuple(logits.shape)} hold no sample or fewer than 2 classes; "
            "calibration needs at least one sample and two classes."
        )
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten()
        nan_count, inf_count = int(torch.isnan(logits).sum()), int(torch.isinf(logits).sum())
        raise ModelContractError(
            f"logits contain {nan_count} NaN and {inf_count} infinite values in {len(bad_rows)} of "
            f"{count} rows (first: row {int(bad_rows[0])}); the model must return finite logits."
        )
    if bool((logits >= 0).all()) and bool(
        ((logits.double().sum(dim=1) - 1).abs() <= _PROBABILITY_SUM_TOLERANCE).all()
    ):
        raise ModelContractError(
            "the scores look like probabilities, not logits (every row is non-negative and sums to "
            "1); return the logits (drop the final softmax) or pass log(probabilities)."
        )
    if (
        labels.ndim != 1
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise DataError(
            f"labels must be a 1-D integer array, not {labels.dtype} of shape "
            f"{tuple(labels.shape)}."
        )
    if len(labels) != count:
        raise ModelContractError(
            f"the logits hold {count} rows but there are {len(labels)} labels; "
            "give one row of logits per label."
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise DataError(
            f"labels range over {low}..{high} but the logits have {classes} classes "
            f"(0..{classes - 1}); the labels do not belong to this model's classes."
        )
    return logits, labels.to(device=logits.device, dtype=torch.int64)


def _validate_bins(n_bins: int, binning: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, not {n_bins!r}.")
    if binning not in ("equal_width", "equal_mass"):
        raise ConfigError(f"binning must be 'equal_width' or 'equal_mass', not {binning!r}.")


# ---------------------------------------------------------------------------------------------
# Binning, vectorised over leading (bootstrap) dimensions: confidence (..., N) -> bins (..., N)


def _equal_width_bins(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    # Only the inner boundaries: a confidence of exactly 1.0 then falls into the last bin.
    inner = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype, device=confidence.device)[1:-1]
    return torch.bucketize(confidence, inner, right=True)


def _equal_mass_bins(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    count = confidence.shape[-1]
    order = torch.sort(confidence, dim=-1, stable=True).indices
    bin_of_rank = torch.arange(count, device=confidence.device) * n_bins // count
    return torch.empty_like(order).scatter_(-1, order, bin_of_rank.expand_as(order))


def _bin_statistics(confidence, correct, n_bins: int, binning: Binning):
    """Per-bin (count, confidence sum, correct sum), each (..., n_bins) float64."""
    bins = (_equal_width_bins if binning == "equal_width" else _equal_mass_bins)(confidence, n_bins)
    shape = confidence.shape[:-1] + (n_bins,)
    zeros = torch.zeros(shape, dtype=torch.float64, device=confidence.device)
    return (
        zeros.scatter_add(-1, bins, torch.ones_like(confidence)),
        zeros.scatter_add(-1, bins, confidence),
        zeros.scatter_add(-1, bins, correct),
    )


def _gaps_and_weights(confidence, correct, n_bins: int, binning: Binning):
    """|acc(b) - conf(b)| (0 in empty bins) and the bin's share of the samples, (..., n_bins)."""
    count, confidence_sum, correct_sum = _bin_statistics(confidence, correct, n_bins, binning)
    gap = (correct_sum - confidence_sum).abs() / count.clamp_min(1)
    return gap, count / confidence.shape[-1]


def _ece(p: _Predictions, n_bins: int, binning: Binning) -> torch.Tensor:
    gap, weight = _gaps_and_weights(p.confidence, p.correct, n_bins, binning)
    return (gap * weight).sum(-1)


def _mce(p: _Predictions, n_bins: int, binning: Binning) -> torch.Tensor:
    gap, _ = _gaps_and_weights(p.confidence, p.correct, n_bins, binning)
    return gap.amax(-1)


def _rms(p: _Predictions, n_bins: int, binning: Binning) -> torch.Tensor:
    gap, weight = _gaps_and_weights(p.confidence, p.correct, n_bins, binning)
    return (gap.square() * weight).sum(-1).sqrt()


# ---------------------------------------------------------------------------------------------
# The metrics


def expected_calibration_error(
    logits, labels, n_bins: int = DEFAULT_BINS, binning: Binning = "equal_width"
) -> float:
    """Expected calibration error, ECE = sum_b (n_b / N) |acc(b) - conf(b)|, in [0, 1].

    Naeini et al. (2015), "Obtaining Well Calibrated Probabilities Using Bayesian Binning", AAAI;
    with 15 equal-width bins as in Guo et al. (2017), "On Calibration of Modern Neural Networks",
    ICML. ``binning="equal_mass"`` gives the adaptive ECE (Mukhoti et al. 2020, NeurIPS).
    Equals torchmetrics' ``MulticlassCalibrationError(norm="l1")`` for confidences below 1.0.
    """
    _validate_bins(n_bins, binning)
    return float(_ece(_predictions(logits, labels), n_bins, binning))


def maximum_calibration_error(
    logits, labels, n_bins: int = DEFAULT_BINS, binning: Binning = "equal_width"
) -> float:
    """Maximum calibration error, MCE = max over non-empty bins of |acc(b) - conf(b)|, in [0, 1].

    Naeini et al. (2015); torchmetrics' ``norm="max"``. Very noisy: one sparse bin decides it.
    """
    _validate_bins(n_bins, binning)
    return float(_mce(_predictions(logits, labels), n_bins, binning))


def rms_calibration_error(
    logits, labels, n_bins: int = DEFAULT_BINS, binning: Binning = "equal_width"
) -> float:
    """Root-mean-square calibration error, sqrt(sum_b (n_b / N) (acc(b) - conf(b))^2), in [0, 1].

    The l2 calibration error of Kumar et al. (2019), "Verified Uncertainty Calibration", NeurIPS,
    without their debiasing term, as used by Hendrycks et al. (2019); torchmetrics' ``norm="l2"``.
    """
    _validate_bins(n_bins, binning)
    return float(_rms(_predictions(logits, labels), n_bins, binning))


def brier_score(logits, labels) -> float:
    """Multiclass Brier score, (1/N) sum_i sum_k (p_ik - [y_i = k])^2, in [0, 2].

    Brier (1950), "Verification of Forecasts Expressed in Terms of Probability", Monthly Weather
    Review: the squared error of the whole probability vector against the one-hot label, summed
    over classes (not averaged). 0 is a certain correct forecast; 2 a certain wrong one.
    """
    return float(_predictions(logits, labels).brier.mean())


def negative_log_likelihood(logits, labels) -> float:
    """Mean negative log-likelihood of the labels, -(1/N) sum_i log p_i,y_i, in nats, in [0, inf).

    The cross-entropy loss; a strictly proper scoring rule (Gneiting & Raftery 2007), and the
    objective temperature scaling minimises (Guo et al. 2017). Computed with ``log_softmax``, so a
    confidently wrong prediction gives a large finite value, never inf from log(0).
    """
    return float(_predictions(logits, labels).nll.mean())


@dataclass(frozen=True)
class MetricSpec:
    name: str  # in words, for reports
    compute: Callable  # (_Predictions, n_bins) -> (...,) tensor, vectorised over leading dims
    value_range: tuple[float, float]


METRICS: dict[str, MetricSpec] = {
    "ece": MetricSpec(
        "expected calibration error (equal-width bins)",
        lambda p, m: _ece(p, m, "equal_width"),
        (0.0, 1.0),
    ),
    "adaptive_ece": MetricSpec(
        "expected calibration error (equal-mass bins)",
        lambda p, m: _ece(p, m, "equal_mass"),
        (0.0, 1.0),
    ),
    "mce": MetricSpec(
        "maximum calibration error (equal-width bins)",
        lambda p, m: _mce(p, m, "equal_width"),
        (0.0, 1.0),
    ),
    "rms": MetricSpec(
        "RMS calibration error (equal-width bins)",
        lambda p, m: _rms(p, m, "equal_width"),
        (0.0, 1.0),
    ),
    "brier": MetricSpec("Brier score", lambda p, m: p.brier.mean(-1), (0.0, 2.0)),
    "nll": MetricSpec(
        "negative log-likelihood (nats)", lambda p, m: p.nll.mean(-1), (0.0, math.inf)
    ),
}


def _metric(name: str) -> MetricSpec:
    if name not in METRICS:
        raise ConfigError(
            f"unknown calibration metric {name!r}; choose one of {', '.join(METRICS)}."
        )
    return METRICS[name]


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals


@dataclass(frozen=True)
class Interval:
    """A two-sided percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13)."""

    low: float
    high: float
    confidence: float  # e.g. 0.95
    resamples: int
    seed: int


def bootstrap_interval(
    logits,
    labels,
    metric: str = "ece",
    *,
    n_bins: int = DEFAULT_BINS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``metric`` (a key of :data:`METRICS`) over the N samples.

    Each of ``resamples`` replicates draws N samples with replacement (seeded, so a run is
    reproducible) and recomputes the metric, vectorised over blocks of replicates; the interval is
    the (1 - confidence)/2 and (1 + confidence)/2 quantiles of the replicates. Binned errors are
    biased upward, so on a well calibrated model the interval may sit above the point estimate.
    """
    _metric(metric)
    _validate_bootstrap(resamples, confidence, seed)
    _validate_bins(n_bins, "equal_width")
    replicates = _bootstrap_replicates(
        _predictions(logits, labels), [metric], n_bins, resamples, seed
    )[metric]
    return _percentile_interval(replicates, confidence, resamples, seed)


def _validate_bootstrap(resamples: int, confidence: float, seed: int) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 10:
        raise ConfigError(
            "resamples must be an integer of at least 10 (200 to 1000 is usual), not "
            f"{resamples!r}."
        )
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(
            f"confidence must lie strictly between 0 and 1 (e.g. 0.95), not {confidence!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, not {seed!r}.")


def _bootstrap_replicates(
    p: _Predictions, metrics: list[str], n_bins: int, resamples: int, seed: int
) -> dict[str, torch.Tensor]:
    """(resamples,) replicates per metric, every metric on the same resamples."""
    generator = torch.Generator().manual_seed(seed)
    count = len(p.confidence)
    block = max(1, 2_000_000 // count)  # about 16 MB per (block, N) float64 tensor
    replicates: dict[str, list[torch.Tensor]] = {name: [] for name in metrics}
    for start in range(0, resamples, block):
        weights = _resample_weights(count, min(block, resamples - start), generator)
        values = _weighted_metrics(p, weights, n_bins)
        for name in metrics:
            replicates[name].append(values[name])
    return {name: torch.cat(values) for name, values in replicates.items()}


def _resample_weights(count: int, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """(resamples, count) float64: how often each of ``count`` samples was drawn in each of
    ``resamples`` seeded draws of ``count`` with replacement."""
    index = torch.randint(count, (resamples, count), generator=generator)
    weights = torch.zeros(index.shape, dtype=torch.float64)
    return weights.scatter_add_(1, index, torch.ones(index.shape, dtype=torch.float64))


def _weighted_metrics(
    p: _Predictions, weights: torch.Tensor, n_bins: int
) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRICS` on k resamples given as multiplicities ``weights`` (k, N)
    (how often each sample was drawn; rows sum to N), each value (k,).

    A resample is the original sample weighted, so one (k, N) x (N, 3M + 2) product gives every
    equal-width bin sum and the Brier and NLL sums at once, without materialising k copies of the
    data. Equal-mass bins cut the weighted ranks at ceil(b N / M): with the confidences sorted once
    and C_i the cumulative multiplicity, the first r ranks hold every sample with C_i <= r and
    r - C_(i-1) copies of the next, so each bin's sums are differences of cumulative sums. Tied
    confidences are ranked by sample index, as the stable sort of the point estimate does.
    """
    count, m = p.confidence.shape[-1], n_bins
    order = torch.sort(p.confidence, stable=True).indices
    confidence, correct, weights = p.confidence[order], p.correct[order], weights[:, order]

    one_hot = torch.nn.functional.one_hot(_equal_width_bins(confidence, m), m).to(torch.float64)
    features = torch.cat(
        [
            one_hot,
            one_hot * confidence[:, None],
            one_hot * correct[:, None],
            p.brier[order][:, None],
            p.nll[order][:, None],
        ],
        dim=1,
    )
    sums = weights @ features
    in_bin, confidence_sum, correct_sum = sums[:, :m], sums[:, m : 2 * m], sums[:, 2 * m : 3 * m]
    gap, share = (correct_sum - confidence_sum).abs() / in_bin.clamp_min(1), in_bin / count

    pad = torch.zeros(len(weights), 1, dtype=torch.float64)
    drawn = torch.cat([pad, weights.cumsum(1)], dim=1)  # C_(i-1), (k, N + 1)
    edges = torch.tensor([-(-b * count // m) for b in range(m + 1)], dtype=torch.float64).expand(
        len(weights), -1
    )
    after = torch.searchsorted(
        drawn[:, 1:].contiguous(), edges.contiguous(), right=True
    )  # samples with C_i <= r

    def sum_below_edges(value: torch.Tensor) -> torch.Tensor:
        cumulative = torch.cat([pad, (weights * value).cumsum(1)], dim=1)
        partial = edges - drawn.gather(1, after)
        return cumulative.gather(1, after) + partial * value[after.clamp_max(count - 1)]

    mass_gap = (
        sum_below_edges(correct).diff(dim=1) - sum_below_edges(confidence).diff(dim=1)
    ).abs()
    return {
        "ece": (gap * share).sum(1),
        "adaptive_ece": mass_gap.sum(1) / count,
        "mce": gap.amax(1),
        "rms": (gap.square() * share).sum(1).sqrt(),
        "brier": sums[:, -2] / count,
        "nll": sums[:, -1] / count,
    }


def _percentile_interval(
    replicates: torch.Tensor, confidence: float, resamples: int, seed: int
) -> Interval:
    tail = (1 - confidence) / 2
    low, high = torch.quantile(
        replicates, torch.tensor([tail, 1 - tail], dtype=replicates.dtype)
    ).tolist()
    return Interval(low, high, float(confidence), resamples, seed)


# ---------------------------------------------------------------------------------------------
# Temperature scaling


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    The NLL is convex in beta = 1/T (a log-sum-exp of functions linear in beta), with derivative
    mean_i(E_p[z_i] - z_i,y_i), which is non-decreasing in beta; its root is found by bisection on
    log beta to machine precision. The result is clipped to ``bounds``: when every prediction is
    correct the NLL keeps falling as T -> 0, and when every one is wrong as T -> infinity.
    T > 1 softens over-confident predictions; scaling never changes a prediction.
    """
    logits, labels = validate_logits(logits, labels)
    low_t, high_t = bounds
    if not 0 < low_t < high_t < math.inf:
        raise ConfigError(f"temperature bounds must satisfy 0 < low < high < inf, not {bounds!r}.")
    z = logits.detach().cpu().to(torch.float64)
    label_logit = z.gather(1, labels.cpu()[:, None]).squeeze(1)

    def slope(log_beta: float) -> float:
        probabilities = torch.softmax(z * math.exp(log_beta), dim=1)
        return float(((probabilities * z).sum(dim=1) - label_logit).mean())

    low, high = -math.log(high_t), -math.log(low_t)  # log beta
    if slope(low) >= 0:
        return high_t
    if slope(high) <= 0:
        return low_t
    for _ in range(48):  # the bracket spans ln(1e4) ~ 9.2; 48 halvings leave ~3e-14
        middle = (low + high) / 2
        low, high = (low, middle) if slope(middle) > 0 else (middle, high)
    return math.exp(-(low + high) / 2)


# ---------------------------------------------------------------------------------------------
# Reliability diagrams and the full report


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin data of a reliability diagram (DeGroot & Fienberg 1983; Niculescu-Mizil & Caruana
    2005), JSON-serialisable: lists of length ``n_bins``, ``None`` where a bin is empty. For
    equal-width bins ``lower``/``upper`` are the bin edges; for equal-mass bins they are the lowest
    and highest confidence in the bin."""

    binning: str
    lower: list[float | None]
    upper: list[float | None]
    mean_confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def reliability_diagram(
    logits, labels, n_bins: int = DEFAULT_BINS, binning: Binning = "equal_width"
) -> ReliabilityDiagram:
    """Mean confidence, accuracy and count per confidence bin (the binning of the module doc)."""
    _validate_bins(n_bins, binning)
    return _reliability(_predictions(logits, labels), n_bins, binning)


def _reliability(p: _Predictions, n_bins: int, binning: Binning) -> ReliabilityDiagram:
    count, confidence_sum, correct_sum = _bin_statistics(p.confidence, p.correct, n_bins, binning)
    filled = [int(c) > 0 for c in count]
    lower: list[float | None]
    upper: list[float | None]
    if binning == "equal_width":
        lower = [k / n_bins for k in range(n_bins)]
        upper = [(k + 1) / n_bins for k in range(n_bins)]
    else:
        bins = _equal_mass_bins(p.confidence, n_bins)
        lower = [float(p.confidence[bins == k].min()) if filled[k] else None for k in range(n_bins)]
        upper = [float(p.confidence[bins == k].max()) if filled[k] else None for k in range(n_bins)]
    return ReliabilityDiagram(
        binning=binning,
        lower=lower,
        upper=upper,
        mean_confidence=[
            float(s / c) if f else None
            for s, c, f in zip(confidence_sum, count, filled, strict=True)
        ],
        accuracy=[
            float(s / c) if f else None for s, c, f in zip(correct_sum, count, filled, strict=True)
        ],
        count=[int(c) for c in count],
    )


@dataclass(frozen=True)
class MetricEstimate:
    """One metric: the gated value on all N samples with its bootstrap interval, and for reading
    only, the value on the held-out half before and after temperature scaling."""

    metric: str  # a key of METRICS
    name: str
    value: float
    interval: Interval
    holdout_before: float
    holdout_after: float


@dataclass(frozen=True)
class CalibrationReport:
    n: int
    n_bins: int
    temperature: float  # fitted on `fit_size` samples, applied to the other `holdout_size`
    fit_size: int
    holdout_size: int
    metrics: dict[str, MetricEstimate]
    reliability: ReliabilityDiagram  # all N samples, equal-width bins
    reliability_after_scaling: ReliabilityDiagram  # the held-out half, temperature-scaled

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self, metric: str) -> str:
        """One sentence a person needs to read a metric's value, for a check's details."""
        m = self.metrics[metric]
        i = m.interval
        return (
            f"{m.name} {m.value:.4g}, {i.confidence:.0%} bootstrap interval "
            f"[{i.low:.4g}, {i.high:.4g}] ({i.resamples} resamples, seed {i.seed}); after "
            f"temperature scaling (T={self.temperature:.3g} fitted on a seeded half of {self.n} "
            f"samples) {m.holdout_after:.4g} on the other half, {m.holdout_before:.4g} there "
            "before scaling" + (f"; {self.n_bins} bins" if "bins" in m.name else "")
        )


def calibration_report(
    logits,
    labels,
    *,
    n_bins: int = DEFAULT_BINS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> CalibrationReport:
    """Every metric of :data:`METRICS` with its bootstrap interval (all on the same resamples),
    temperature scaling fitted on a seeded random half and evaluated on the other half, and the
    reliability diagrams before and after scaling. Needs at least 2 samples (to split)."""
    _validate_bins(n_bins, "equal_width")
    _validate_bootstrap(resamples, confidence, seed)
    logits, labels = validate_logits(logits, labels)
    logits, labels = logits.detach().cpu(), labels.cpu()
    count = len(labels)
    if count < 2:
        raise DataError(
            "a calibration report needs at least 2 samples: temperature scaling is fitted on one "
            "half and evaluated on the other."
        )
    p = _predictions(logits, labels)
    replicates = _bootstrap_replicates(p, list(METRICS), n_bins, resamples, seed)

    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    fit, holdout = order[: count // 2], order[count // 2 :]
    temperature = fit_temperature(logits[fit], labels[fit])
    before = _predictions(logits[holdout], labels[holdout])
    after = _predictions(logits[holdout].double() / temperature, labels[holdout])

    metrics = {
        name: MetricEstimate(
            metric=name,
            name=spec.name,
            value=float(spec.compute(p, n_bins)),
            interval=_percentile_interval(replicates[name], confidence, resamples, seed),
            holdout_before=float(spec.compute(before, n_bins)),
            holdout_after=float(spec.compute(after, n_bins)),
        )
        for name, spec in METRICS.items()
    }
    return CalibrationReport(
        n=count,
        n_bins=n_bins,
        temperature=temperature,
        fit_size=len(fit),
        holdout_size=len(holdout),
        metrics=metrics,
        reliability=_reliability(p, n_bins, "equal_width"),
        reliability_after_scaling=_reliability(after, n_bins, "equal_width"),
    )


# ---------------------------------------------------------------------------------------------
# Per-image quantities and the paired bootstrap (a run against its baseline on the same images)

# What each gated metric needs besides the per-image verdicts (stored in the results JSON).
PER_IMAGE_QUANTITIES = {
    "ece": ("confidence",),
    "adaptive_ece": ("confidence",),
    "mce": ("confidence",),
    "rms": ("confidence",),
    "brier": ("brier",),
    "nll": ("nll",),
}


def per_image_quantities(logits, labels) -> dict[str, torch.Tensor]:
    """(N,) float64 each: ``confidence`` (top softmax probability), ``correct`` (1.0 or 0.0),
    ``brier`` (the image's Brier score) and ``nll`` (its negative log-likelihood); every metric of
    :data:`METRICS` is a function of these."""
    p = _predictions(logits, labels)
    return {"confidence": p.confidence, "correct": p.correct, "brier": p.brier, "nll": p.nll}


def _from_quantities(quantities: dict) -> _Predictions:
    count = len(quantities["correct"])

    def column(name: str) -> torch.Tensor:
        value = quantities.get(name)
        if value is None:
            return torch.zeros(count, dtype=torch.float64)
        return torch.as_tensor(value, dtype=torch.float64)

    return _Predictions(column("confidence"), column("correct"), column("brier"), column("nll"))


def metric_from_quantities(metric: str, quantities: dict, n_bins: int = DEFAULT_BINS) -> float:
    """``metric`` on the images, from :func:`per_image_quantities` (or the subset of them that
    :data:`PER_IMAGE_QUANTITIES` names, with ``correct``)."""
    weights = torch.ones(1, len(quantities["correct"]), dtype=torch.float64)
    return float(_weighted_metrics(_from_quantities(quantities), weights, n_bins)[metric][0])


def paired_bootstrap_differences(
    metric: str,
    base: dict,
    current: dict,
    *,
    n_bins: int = DEFAULT_BINS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> torch.Tensor:
    """(resamples,) replicates of ``metric(current) - metric(base)`` where both runs scored the
    same N images in the same order: each replicate draws N images with replacement (seeded) and
    evaluates both runs on that one draw (a paired bootstrap, Efron & Tibshirani 1993, ch. 15),
    so that the images' own difficulty cancels out of the difference."""
    _metric(metric)
    _validate_bootstrap(resamples, CONFIDENCE, seed)
    mine, theirs = _from_quantities(current), _from_quantities(base)
    count = len(mine.confidence)
    if len(theirs.confidence) != count:
        raise ValueError(
            f"paired runs must score the same images; got {count} and {len(theirs.confidence)}"
        )
    generator = torch.Generator().manual_seed(seed)
    block = max(1, 2_000_000 // max(count, 1))
    differences = []
    for start in range(0, resamples, block):
        weights = _resample_weights(count, min(block, resamples - start), generator)
        differences.append(
            _weighted_metrics(mine, weights, n_bins)[metric]
            - _weighted_metrics(theirs, weights, n_bins)[metric]
        )
    return torch.cat(differences)
