"""Small statistics shared by the checks and the reports (no torch import, so the report
modules stay light)."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # the standard normal quantile of a two-sided 95% interval


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001),
    in [0, 1]; unlike the normal approximation it keeps a width at 0% and 100%. None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
