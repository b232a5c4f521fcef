"""Spread over repeated trainings (seeds): mean, sample standard deviation, Student t interval of the mean.

A handful of seeds is a small sample from the distribution of training outcomes; the interval of the mean uses
the t quantile with n - 1 degrees of freedom (4.30 for 3 seeds at 95%), never the normal 1.96.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cardgen.record import SpreadStats


def t_quantile(confidence: float, dof: int) -> float:
    """The two-sided Student t quantile: P(|T| <= q) = confidence with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, dof))


def spread(values: Sequence[float], confidence: float = 0.95) -> SpreadStats:
    """Mean, sample standard deviation (ddof 1) and the t interval of the mean of ``values``.

    With one value there is no spread: std and the interval are None.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("spread() needs at least one value")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return SpreadStats(n=1, mean=mean, std=None, low=None, high=None, minimum=xs[0], maximum=xs[0],
                           confidence=confidence)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return SpreadStats(n=n, mean=mean, std=std, low=mean - half, high=mean + half, minimum=min(xs),
                       maximum=max(xs), confidence=confidence)
