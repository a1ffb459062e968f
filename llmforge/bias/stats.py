"""Confidence intervals for the probes' proportions and means (95%, two-sided)."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927): unlike the normal approximation it stays
    inside [0, 1] and is usable for the small n of a probe's category. (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # at k = 0 (k = n) the bound is exactly 0 (1); rounding would leave e.g. 3e-18
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def bootstrap_mean(values: Sequence[float], *, seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean (items resampled with replacement, seeded)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(draws, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def mean_se_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """mean ± z·s/√n (the normal interval lm-eval's stderr implies), (nan, nan) for fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m - z * s / math.sqrt(n), m + z * s / math.sqrt(n)
