"""Paired regression tests: a run against a baseline run that scored the very same images.

Two runs of one check on the same seeded images are not independent samples: most images are
right (or wrong) in both, and only the *discordant* images, right in one run and wrong in the
other, say anything about a difference. McNemar's test (McNemar 1947, "Note on the sampling error
of the difference between correlated proportions or percentages", Psychometrika 12) asks whether
the images newly wrong (``b``) outnumber the images newly right (``c``) by more than chance: under
no change each discordant image is newly wrong with probability 1/2, so the exact one-sided
p-value is ``P(X >= b)`` for ``X ~ Binomial(b + c, 1/2)`` (scipy's ``binomtest``). A model that
gets 20 test images wrong that the baseline got right, and none newly right, has ``p = 2**-20``,
although its accuracy moved by only 0.002 on 10,000 images, well inside the two runs' combined
binomial intervals.

A model has many checks, so the p-values are corrected for multiplicity with Holm's step-down
procedure (Holm 1979, "A simple sequentially rejective multiple test procedure", Scandinavian
Journal of Statistics 6): the family-wise error rate, the chance that any check of an unchanged
model is flagged, stays at most ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from safetycheck.core.errors import ConfigError


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of one check against its baseline on the same images.

    ``lost`` (b): images right in the baseline and wrong now; ``gained`` (c): wrong in the
    baseline and right now; ``p_value``: one-sided, of "no fewer images newly wrong than newly
    right", in (0, 1] (1 when nothing changed)."""

    lost: int
    gained: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.lost + self.gained


def mcnemar_regression(base_correct: np.ndarray, correct: np.ndarray) -> PairedTest:
    """McNemar's exact one-sided test of a regression (more images newly wrong than newly right).

    Parameters
    ----------
    base_correct, correct : numpy.ndarray
        (N,) bool: the baseline's and the current run's verdict on the same N images, in the same
        order.

    Raises
    ------
    ValueError
        When the two arrays differ in length.
    """
    from scipy.stats import binomtest

    base_correct, correct = np.asarray(base_correct, bool), np.asarray(correct, bool)
    if base_correct.shape != correct.shape or base_correct.ndim != 1:
        raise ValueError(
            f"paired verdicts must be two (N,) arrays of one length; got {base_correct.shape} "
            f"and {correct.shape}"
        )
    lost = int(np.count_nonzero(base_correct & ~correct))
    gained = int(np.count_nonzero(~base_correct & correct))
    if lost + gained == 0:
        return PairedTest(0, 0, 1.0)
    p_value = float(binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue)
    return PairedTest(lost, gained, min(1.0, p_value))


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses to reject at family-wise level ``alpha``.

    The p-values are taken in increasing order; the ``k``-th smallest (from 0) is rejected while
    every one before it was and it is at most ``alpha / (m - k)``. Returns one bool per p-value, in
    the given order.
    """
    check_alpha(alpha, "alpha")
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    reject = [False] * m
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (m - rank):
            break
        reject[index] = True
    return reject


def first_step_level(alpha: float, tests: int) -> float:
    """The level of Holm's first step, ``alpha / m``: a check whose p-value is at most this is
    rejected by Holm whatever the other p-values are, so it can be judged on its own, as soon as it
    is measured (the others are judged by :func:`holm` once all are known)."""
    return alpha / max(int(tests), 1)


def check_alpha(alpha: object, name: str = "baseline_alpha") -> float:
    """``alpha`` as a float in (0, 1), else a :class:`ConfigError` naming ``name``."""
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not math.isfinite(alpha)
        or not 0.0 < alpha < 1.0
    ):
        raise ConfigError(
            f"{name} must be a number strictly between 0 and 1 (e.g. 0.05); got {alpha!r}."
        )
    return float(alpha)


@dataclass(frozen=True)
class PairedBootstrap:
    """A paired bootstrap test of one metric against its baseline on the same images.

    ``difference``: the metric now less the baseline's, signed so that positive is worse;
    ``p_value``: one-sided, of "no worse", the share of the ``resamples`` paired replicates whose
    difference is at most 0 (with the usual +1 in numerator and denominator, so never 0)."""

    metric: str
    difference: float
    p_value: float
    resamples: int


def bootstrap_regression(
    metric: str,
    base_quantities: dict,
    quantities: dict,
    bound: str,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> PairedBootstrap:
    """Whether ``metric`` (a calibration metric) got worse on the same images: the paired
    bootstrap of :func:`safetycheck.measures.calibration.paired_bootstrap_differences`, one-sided.
    ``bound`` "max" (lower is better) or "min" says which direction is worse."""
    from safetycheck.measures.calibration import (
        metric_from_quantities,
        paired_bootstrap_differences,
    )

    sign = 1.0 if bound == "max" else -1.0
    replicates = sign * paired_bootstrap_differences(
        metric, base_quantities, quantities, resamples=resamples, seed=seed
    )
    observed = sign * (
        metric_from_quantities(metric, quantities) - metric_from_quantities(metric, base_quantities)
    )
    not_worse = int((replicates <= 0).sum())
    return PairedBootstrap(metric, observed, (1 + not_worse) / (resamples + 1), resamples)


@dataclass(frozen=True)
class PairedDeLong:
    """DeLong's paired test of an AUROC against its baseline on the same images.

    ``difference``: the baseline's AUROC less the current one (positive is worse); ``z``: that
    difference over its standard error; ``p_value``: one-sided, of "no worse", in [0, 1]."""

    difference: float
    z: float
    p_value: float


def delong_regression(
    base_in: np.ndarray, base_out: np.ndarray, in_counts: np.ndarray, out_counts: np.ndarray
) -> PairedDeLong:
    """Whether an AUROC got worse on the same images: DeLong, DeLong & Clarke-Pearson (1988,
    "Comparing the areas under two or more correlated receiver operating characteristic curves",
    Biometrics 44), one-sided.

    Parameters
    ----------
    base_in, in_counts : numpy.ndarray
        (N_in,) the baseline's and the current run's misranking counts of the same
        in-distribution images, in the same order
        (:func:`safetycheck.measures.ood_metrics.misranked_counts`).
    base_out, out_counts : numpy.ndarray
        (N_out,) the same for the OOD images.

    Each image's placement value is ``1 - count / (2 N_other)``, an AUROC the mean of either
    side's placements, and the variance of the difference of two AUROCs on the same images
    ``var_i(dV10_i) / N_in + var_j(dV01_j) / N_out`` (sample variances of the per-image
    differences of placements): DeLong's estimate, the large-sample limit of a paired stratified
    bootstrap of the two AUROCs (and the default of pROC's ``roc.test`` for paired curves). A zero
    variance (every image moved alike) gives p = 1 for no loss and 0 for a loss.

    Raises
    ------
    ValueError
        When the two runs' arrays differ in length, or a side has fewer than 2 images (no
        variance can be estimated).
    """
    from scipy.stats import norm

    arrays = [np.asarray(a, dtype=np.float64) for a in (base_in, base_out, in_counts, out_counts)]
    base_in, base_out, in_counts, out_counts = arrays
    if base_in.shape != in_counts.shape or base_out.shape != out_counts.shape:
        raise ValueError(
            "paired rankings must cover the same images: got "
            f"{base_in.shape}/{base_out.shape} and {in_counts.shape}/{out_counts.shape}"
        )
    n_in, n_out = in_counts.size, out_counts.size
    if n_in < 2 or n_out < 2:
        raise ValueError(f"DeLong's test needs 2 images per side; got {n_in} and {n_out}")
    # Placement differences, baseline less current: positive where an image is ranked worse now.
    in_loss = (in_counts - base_in) / (2 * n_out)
    out_loss = (out_counts - base_out) / (2 * n_in)
    difference = float(in_loss.mean())
    variance = in_loss.var(ddof=1) / n_in + out_loss.var(ddof=1) / n_out
    if variance <= 0.0:
        lost = difference > 1e-12
        return PairedDeLong(difference, math.inf if lost else 0.0, 0.0 if lost else 1.0)
    z = difference / math.sqrt(variance)
    return PairedDeLong(difference, z, float(norm.sf(z)))
