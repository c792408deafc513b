"""95% percentile bootstrap intervals of a statistic of a sample (the synthetic graphs).

The interval says how much a metric moves when the same generator is asked for another sample
of the same size: two sources whose intervals do not overlap are ranked, others are not. Only
the synthetic side is resampled; the real graphs it is compared against stay fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")
RESAMPLES = 200
LEVEL = 0.95


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate (the statistic of the whole sample) and its bootstrap interval."""

    value: float
    low: float
    high: float

    def format(self, digits: int = 2) -> str:
        """`4.83 [4.61, 5.10]`."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def bootstrap_many(
    items: Sequence[T],
    statistic: Callable[[Sequence[T]], Mapping[str, float]],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """Intervals of several statistics computed together from one resample (so shared work, such
    as walking the graphs once, is done once per resample).

    Each resample draws len(items) items with replacement (numpy Generator(seed): same seed, same
    intervals); the interval is the (1-level)/2 and (1+level)/2 percentiles of the resampled
    statistics. Raises ValueError on an empty sample.
    """
    if not items:
        raise ValueError("cannot bootstrap an empty sample")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    point = statistic(items)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(resamples):
        picks = rng.integers(0, len(items), size=len(items))
        stats = statistic([items[i] for i in picks])
        for k in draws:
            draws[k].append(stats[k])
    tail = (1 - level) / 2 * 100
    out = {}
    for k, values in draws.items():
        arr = np.asarray(values, dtype=float)
        arr = arr[~np.isnan(arr)]  # resamples where the statistic is undefined are left out
        low, high = np.percentile(arr, [tail, 100 - tail]) if arr.size else (np.nan, np.nan)
        out[k] = Interval(float(point[k]), float(low), float(high))
    return out


def bootstrap(
    items: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """The interval of one statistic (see `bootstrap_many`)."""
    return bootstrap_many(
        items, lambda xs: {"x": statistic(xs)}, resamples=resamples, seed=seed, level=level
    )["x"]


def mean(values: Sequence[float]) -> float:
    """The statistic of a share: the mean of per-item 0/1 flags."""
    return float(np.mean(np.asarray(values, dtype=float)))
