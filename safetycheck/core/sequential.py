"""Anytime-valid confidence sequences for a share (a Bernoulli mean), to stop a check early.

A check that scores images in blocks may look at its running accuracy after every block and stop
once the verdict is known; a fixed-sample 95% interval looked at repeatedly would be wrong far more
often than 5%. A *confidence sequence* ``C_1, C_2, ...`` covers the true share at every step at
once with probability at least ``1 - alpha``, so it may be looked at after every image and the
look stopped at any data-dependent time.

This one is Robbins' beta-binomial mixture (Robbins 1970, "Statistical methods related to the law
of the iterated logarithm", Ann. Math. Statist. 41; the conjugate-mixture sequences of Howard,
Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", Ann. Statist. 49, and Waudby-Smith & Ramdas 2023, "Estimating means of bounded random
variables by betting", JRSS-B 86, section 3). For a candidate share ``m``, after ``t`` images of
which ``s`` were right,

    M_t(m) = B(a + s, b + t - s) / B(a, b) / (m**s * (1 - m)**(t - s))

is the likelihood ratio of a Beta(a, b) mixture of Bernoulli laws against Bernoulli(m): a
non-negative martingale with ``M_0 = 1`` when the share is ``m``. By Ville's inequality it exceeds
``1 / alpha`` at any step with probability at most ``alpha``, so ``C_t = {m : M_t(m) < 1 / alpha}``
(an interval: ``log M_t`` is convex in ``m``) is a confidence sequence at level ``1 - alpha``.
Beta(1, 1), the uniform mixture, is used.

The images a check scores are a seeded random order of a fixed set drawn without replacement;
the sequence treats them as independent draws, which only widens it (Hoeffding 1963, section 6),
and tests/unit/test_sequential.py checks the coverage by simulation on both.
"""

from __future__ import annotations

import math

PRIOR = (1.0, 1.0)  # Beta(a, b) mixing distribution: uniform


def log_mixture_martingale(successes: int, trials: int, share: float) -> float:
    """``log M_t(share)`` (the module docstring's) after ``successes`` of ``trials``; ``inf``
    where ``share`` is 0 or 1 and an observation contradicts it."""
    from scipy.special import betaln, xlog1py, xlogy

    _check_counts(successes, trials)
    a, b = PRIOR
    likelihood = xlogy(successes, share) + xlog1py(trials - successes, -share)
    if not math.isfinite(likelihood):
        return math.inf
    return float(betaln(a + successes, b + trials - successes) - betaln(a, b) - likelihood)


def confidence_sequence(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """The confidence sequence's interval ``(low, high)`` in [0, 1] after ``successes`` of
    ``trials``, at level ``1 - alpha`` over all steps at once (``(0, 1)`` before any trial).

    Raises
    ------
    ValueError
        Unless ``0 <= successes <= trials`` and ``0 < alpha < 1``.
    """
    from scipy.optimize import brentq

    _check_counts(successes, trials)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    if trials == 0:
        return 0.0, 1.0
    level = math.log(1.0 / alpha)
    estimate = successes / trials

    def excess(share: float) -> float:
        return log_mixture_martingale(successes, trials, share) - level

    # The ends themselves give inf where an observation contradicts them; search just inside.
    edge = 1e-15
    low = 0.0 if excess(0.0) < 0 else brentq(excess, edge, estimate, xtol=1e-12)
    high = 1.0 if excess(1.0) < 0 else brentq(excess, estimate, 1.0 - edge, xtol=1e-12)
    return float(low), float(high)


def sequential_verdict(
    successes: int, trials: int, threshold: float, bound: str, alpha: float
) -> str | None:
    """Whether the verdict of "share ``>= threshold``" (``bound`` "min") or "share ``<=
    threshold``" ("max") is already known at level ``1 - alpha``: ``"pass"`` when the whole
    confidence sequence interval satisfies it, ``"fail"`` when none of it does, else None.

    A threshold that every share satisfies (``<= 0`` for "min", ``>= 1`` for "max") passes at
    once, one that none does fails at once: the images cannot change those verdicts.
    """
    if bound not in ("min", "max"):
        raise ValueError(f"bound must be 'min' or 'max', not {bound!r}")
    if not math.isfinite(threshold):
        return None
    low, high = confidence_sequence(successes, trials, alpha)
    if bound == "min":
        if low >= threshold:
            return "pass"
        if high < threshold:
            return "fail"
    else:
        if high <= threshold:
            return "pass"
        if low > threshold:
            return "fail"
    return None


def _check_counts(successes: int, trials: int) -> None:
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials; got {successes} of {trials}")
