"""Out-of-distribution detection metrics on raw scores: AUROC (with a bootstrap interval),
AUPR-in, AUPR-out, FPR at 95% TPR, and ROC curve data for reports.

Conventions, the same everywhere in safetycheck: a score is higher for inputs that look more
in-distribution; the in-distribution set (MNIST test) is the *positive* class. Scores are ranked
exactly as given: no sigmoid, softmax or clipping is ever applied to them, because squashing a raw
score (an energy of -40, a Mahalanobis distance of 10^4) into a probability saturates it, creates
ties, and moves AUROC towards 0.5.

* AUROC: probability that a random in-distribution input scores higher than a random OOD input
  (ties count one half); 1 is perfect separation, 0.5 is chance, below 0.5 means the score's sign
  is the wrong way round.
* AUPR-in: average precision with in-distribution as positive; AUPR-out: with OOD as positive and
  the score negated (Hendrycks & Gimpel, ICLR 2017, report both).
* FPR at 95% TPR: the fraction of OOD inputs accepted at the highest threshold that still accepts
  at least 95% of in-distribution inputs.

All areas come from scikit-learn (``roc_auc_score``, ``average_precision_score``, ``roc_curve``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from safetycheck.core.errors import ConfigError, DataError
from safetycheck.core.stats import BOOTSTRAP_RESAMPLES as DEFAULT_BOOTSTRAP
from safetycheck.core.stats import CONFIDENCE as DEFAULT_CONFIDENCE

_BOOTSTRAP_CHUNK = 50  # resamples drawn at once; bounds memory to about 50 x N floats


@dataclass(frozen=True)
class OODMetrics:
    """Detection metrics of one score on one in-distribution/OOD pair.

    ``auroc_ci`` is the percentile bootstrap interval at ``confidence`` from ``bootstrap``
    stratified resamples (in and OOD resampled separately) drawn with ``seed``.
    """

    auroc: float
    auroc_ci: tuple[float, float]
    aupr_in: float
    aupr_out: float
    fpr_at_95_tpr: float
    # The score threshold of that operating point (accept at or above it).
    threshold_at_95_tpr: float
    n_in: int
    n_out: int
    confidence: float
    bootstrap: int
    seed: int

    def as_dict(self) -> dict:
        """JSON-serialisable: plain floats, ints and a two-item list."""
        values = asdict(self)
        values["auroc_ci"] = [float(v) for v in self.auroc_ci]
        return values


def _sklearn():
    """scikit-learn's metrics, imported when first used (about 0.7 s): a run without an OOD check
    does not pay it."""
    import sklearn.metrics

    return sklearn.metrics


def as_score_array(scores, name: str) -> np.ndarray:
    """``scores`` (a 1-D tensor, array or sequence of finite numbers) as a float64 numpy array.

    Raises :class:`ConfigError` for a wrong type or shape and :class:`DataError` for an empty or
    non-finite score vector, each naming ``name``.
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().to(torch.float64).numpy()
    try:
        array = np.asarray(scores)
    except Exception as exc:  # ragged lists and the like: numpy's own error says which
        raise ConfigError(f"{name} scores cannot be read as a numeric array: {exc}.") from exc
    real = np.issubdtype(array.dtype, np.number) and not np.issubdtype(
        array.dtype, np.complexfloating
    )
    if array.dtype == bool or not real:
        raise ConfigError(f"{name} scores must be real numbers, not {array.dtype} values.")
    if array.ndim != 1:
        raise ConfigError(
            f"{name} scores must be a 1-D vector, one score per input; got shape {array.shape}."
        )
    if array.size == 0:
        raise DataError(
            f"{name} scores are empty: the set has no inputs; give it at least one image."
        )
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        raise DataError(
            f"{name} scores hold {int((~finite).sum())} non-finite values (NaN or inf) out of "
            f"{array.size}; the model produced non-finite logits or features on these inputs: "
            "fix the model."
        )
    return array


def _labelled(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray, int, int]:
    positives = as_score_array(in_scores, "in-distribution")
    negatives = as_score_array(out_scores, "out-of-distribution")
    labels = np.concatenate([np.ones(positives.size), np.zeros(negatives.size)])
    return labels, np.concatenate([positives, negatives]), positives.size, negatives.size


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve, in-distribution positive; 1 perfect, 0.5 chance."""
    labels, scores, _, _ = _labelled(in_scores, out_scores)
    return float(_sklearn().roc_auc_score(labels, scores))


def aupr_in(in_scores, out_scores) -> float:
    """Average precision with in-distribution positive (ranked by the raw score)."""
    labels, scores, _, _ = _labelled(in_scores, out_scores)
    return float(_sklearn().average_precision_score(labels, scores))


def aupr_out(in_scores, out_scores) -> float:
    """Average precision with OOD positive, ranked by the negated score."""
    labels, scores, _, _ = _labelled(in_scores, out_scores)
    return float(_sklearn().average_precision_score(1 - labels, -scores))


@dataclass(frozen=True)
class OperatingPoint:
    """A detector's operating point: accept an input as in-distribution when its score is at
    least ``threshold``. ``tpr``: the share of in-distribution inputs accepted (at least the
    asked-for rate, e.g. 0.95); ``fpr``: the share of OOD inputs accepted."""

    threshold: float
    tpr: float
    fpr: float


def operating_point(in_scores, out_scores, tpr: float = 0.95) -> OperatingPoint:
    """The highest score threshold that keeps at least ``tpr`` of the in-distribution inputs, and
    the false-positive rate there (ties at the threshold are accepted on both sides): the
    detector a deployment would run, so that the gate's FPR95 is that detector's.

    ``tpr`` in (0, 1]; scores as in :func:`auroc` (higher = more in-distribution). The point is a
    vertex of scikit-learn's ``roc_curve`` (no interpolation between thresholds, which no real
    detector can run at)."""
    if isinstance(tpr, bool) or not isinstance(tpr, (int, float)) or not 0.0 < tpr <= 1.0:
        raise ConfigError(f"tpr={tpr!r} must lie in (0, 1].")
    labels, scores, _, _ = _labelled(in_scores, out_scores)
    # drop_intermediate=False keeps every threshold, so the first point reaching ``tpr`` is exact.
    fprs, tprs, thresholds = _sklearn().roc_curve(labels, scores, drop_intermediate=False)
    index = int(np.searchsorted(tprs, tpr, side="left"))
    return OperatingPoint(float(thresholds[index]), float(tprs[index]), float(fprs[index]))


def fpr_at_tpr(in_scores, out_scores, tpr: float = 0.95) -> float:
    """Fraction of OOD inputs scoring at or above the highest threshold that keeps at least
    ``tpr`` of in-distribution inputs (ties at the threshold are accepted on both sides)."""
    return operating_point(in_scores, out_scores, tpr).fpr


def weighted_auroc(
    in_scores: np.ndarray, out_scores: np.ndarray, in_weights: np.ndarray, out_weights: np.ndarray
) -> np.ndarray:
    """AUROC of resamples given as counts: ``in_weights`` (B, N_in), ``out_weights`` (B, N_out).

    Row b is the AUROC of the multiset holding ``in_weights[b, i]`` copies of ``in_scores[i]``
    and ``out_weights[b, j]`` copies of ``out_scores[j]`` (the Mann-Whitney statistic, ties one
    half), computed in O(B (N_in + N_out)) from one sort: each in-score's position among the
    sorted OOD scores is fixed, only the cumulative OOD counts change between resamples.
    """
    order = np.argsort(out_scores, kind="stable")
    sorted_out = out_scores[order]
    below = np.searchsorted(sorted_out, in_scores, side="left")
    at_or_below = np.searchsorted(sorted_out, in_scores, side="right")
    out_weights = np.asarray(out_weights, dtype=np.float64)
    cumulative = np.zeros((out_weights.shape[0], sorted_out.size + 1))
    np.cumsum(out_weights[:, order], axis=1, out=cumulative[:, 1:])
    lower = cumulative[:, below]
    placement = 0.5 * (lower + cumulative[:, at_or_below])
    in_weights = np.asarray(in_weights, dtype=np.float64)
    pairs = in_weights.sum(axis=1) * out_weights.sum(axis=1)
    return (in_weights * placement).sum(axis=1) / pairs


def misranked_counts(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    """Each image's misrankings against the other side, doubled so that ties count as 1.

    Returns ``(in_counts (N_in,), out_counts (N_out,))``, int64: for an in-distribution image,
    twice the OOD images scoring above it plus the OOD images tied with it; for an OOD image, twice
    the in-distribution images scoring below it plus those tied with it. They are the placement
    values of DeLong, DeLong & Clarke-Pearson (1988, Biometrics 44) in integer form: an image's
    placement is ``1 - count / (2 * N_other)``, and ``AUROC = 1 - sum(in_counts) / (2 N_in N_out)
    = 1 - sum(out_counts) / (2 N_in N_out)``. They depend on the scores only through their order,
    and for a good detector most are 0 (an in-distribution image above every OOD image).
    """
    positives = as_score_array(in_scores, "in-distribution")
    negatives = as_score_array(out_scores, "out-of-distribution")
    sorted_in, sorted_out = np.sort(positives), np.sort(negatives)
    out_above = negatives.size - np.searchsorted(sorted_out, positives, side="right")
    out_tied = np.searchsorted(sorted_out, positives, side="right") - np.searchsorted(
        sorted_out, positives, side="left"
    )
    in_below = np.searchsorted(sorted_in, negatives, side="left")
    in_tied = np.searchsorted(sorted_in, negatives, side="right") - in_below
    return (2 * out_above + out_tied).astype(np.int64), (2 * in_below + in_tied).astype(np.int64)


def _resample_counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """(rows, n) multiplicities of ``rows`` bootstrap resamples of n items."""
    picks = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n)


def auroc_bootstrap(
    in_scores, out_scores, n_resamples: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> np.ndarray:
    """AUROC of ``n_resamples`` stratified bootstrap resamples (in and OOD resampled separately,
    so each keeps its size); seeded, vectorised, exact for each resample."""
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ConfigError(f"n_resamples={n_resamples!r} must be a positive integer.")
    positives = as_score_array(in_scores, "in-distribution")
    negatives = as_score_array(out_scores, "out-of-distribution")
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_resamples, _BOOTSTRAP_CHUNK):
        rows = min(_BOOTSTRAP_CHUNK, n_resamples - start)
        values.append(
            weighted_auroc(
                positives,
                negatives,
                _resample_counts(rng, rows, positives.size),
                _resample_counts(rng, rows, negatives.size),
            )
        )
    return np.concatenate(values)


def auroc_confidence_interval(
    in_scores,
    out_scores,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for AUROC (Efron & Tibshirani 1993), at ``confidence``."""
    if not 0.0 < confidence < 1.0:
        raise ConfigError(
            f"confidence={confidence!r} must lie strictly between 0 and 1, e.g. 0.95."
        )
    values = auroc_bootstrap(in_scores, out_scores, n_resamples, seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def ood_metrics(
    in_scores,
    out_scores,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> OODMetrics:
    """Every metric of one score: ``in_scores`` (N_in,) on in-distribution inputs (positive),
    ``out_scores`` (N_out,) on OOD inputs; higher means more in-distribution."""
    positives = as_score_array(in_scores, "in-distribution")
    negatives = as_score_array(out_scores, "out-of-distribution")
    point = operating_point(positives, negatives, 0.95)
    return OODMetrics(
        auroc=auroc(positives, negatives),
        auroc_ci=auroc_confidence_interval(positives, negatives, confidence, n_resamples, seed),
        aupr_in=aupr_in(positives, negatives),
        aupr_out=aupr_out(positives, negatives),
        fpr_at_95_tpr=point.fpr,
        threshold_at_95_tpr=point.threshold,
        n_in=int(positives.size),
        n_out=int(negatives.size),
        confidence=float(confidence),
        bootstrap=int(n_resamples),
        seed=int(seed),
    )


def roc_curve_data(in_scores, out_scores, max_points: int = 300) -> dict:
    """The ROC curve as ``{"fpr": [...], "tpr": [...], "auroc": float}``, JSON-serialisable.

    At most ``max_points`` vertices, chosen evenly along the curve's length (so the steep start of
    a good detector keeps its detail) and always including (0, 0) and (1, 1); values are rounded
    to 6 decimals. For drawing only: compute metrics from the scores, never from this curve.
    """
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise ConfigError(f"max_points={max_points!r} must be an integer of at least 2.")
    labels, scores, _, _ = _labelled(in_scores, out_scores)
    fprs, tprs, _ = _sklearn().roc_curve(
        labels, scores
    )  # starts at (0, 0): its first threshold is +inf
    if fprs.size > max_points:
        length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(fprs), np.diff(tprs)))])
        keep = np.searchsorted(length, np.linspace(0.0, length[-1], max_points), side="left")
        keep = np.unique(np.concatenate([[0, fprs.size - 1], np.minimum(keep, fprs.size - 1)]))
        fprs, tprs = fprs[keep], tprs[keep]
    return {
        "fpr": [round(float(v), 6) for v in fprs],
        "tpr": [round(float(v), 6) for v in tprs],
        "auroc": float(_sklearn().roc_auc_score(labels, scores)),
    }
