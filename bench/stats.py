"""Summaries of latency samples: median, p99 and ratios to a baseline."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


@dataclass(frozen=True)
class Summary:
    """Latency samples (any unit) reduced to what the report shows."""

    n: int
    median: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(
            len(samples),
            float(statistics.median(samples)),
            percentile(samples, 99),
            float(statistics.fmean(samples)),
        )

    def scaled(self, factor: float) -> Summary:
        return Summary(self.n, self.median * factor, self.p99 * factor, self.mean * factor)


def ratio(value: float, baseline: float) -> float:
    if not baseline or math.isnan(baseline) or math.isnan(value):
        return math.nan
    return value / baseline


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(min, max) of finite values, NaN when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    return min(finite), max(finite)


DASH = "\u2013"  # en dash: "no value", and ranges
TIMES = "\u00d7"  # multiplication sign: ratios


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"
