"""Small statistics shared by the checks and the reports (no torch import, so the report
modules stay light)."""

from __future__ import annotations

import math

CONFIDENCE = 0.95  # the confidence level of every interval the package reports
Z_95 = 1.959963984540054  # the standard normal quantile of a two-sided 95% interval
# Two 95% quantiles on purpose. Z_95_ROUNDED is the baseline gate's default noise quantile
# (safetycheck.gate.baseline): its binomial half-widths are 1.96 * se, and a record's 95% interval
# is rescaled by z / 1.96, so at the default z a recorded interval is used as it is. Using Z_95
# there would narrow every binomial band by 0.0018% (a borderline verdict could flip); using 1.96
# in Z_95's place would move every Wilson interval, the `ci` of the results.
Z_95_ROUNDED = 1.96
BOOTSTRAP_RESAMPLES = 1000  # resamples of every bootstrap interval (OOD AUROC, calibration)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001),
    in [0, 1]; unlike the normal approximation it keeps a width at 0% and 100%. None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
