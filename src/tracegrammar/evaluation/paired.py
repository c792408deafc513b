"""Accuracy intervals and paired comparisons of two methods scored on the same cases.

- `wilson`: the 95% Wilson score interval of a share k/n (sound at small n and near 0 or 1);
- `mcnemar`: the exact McNemar test of two methods' 0/1 outcomes on the same cases: only the
  discordant cases count (b: the first right and the second wrong, c: the reverse); under "equally
  accurate" b is Binomial(b + c, 1/2), and the two-sided p-value is twice the smaller tail
  (at most 1);
- `paired`: both, and a percentile bootstrap interval of the accuracy difference that resamples
  whole cases (so both methods' outcomes on a case stay together).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .bootstrap import bootstrap

Z95 = 1.959963984540054
#: Resamples of the paired bootstrap (seeded: the same outcomes give the same interval).
RESAMPLES = 2000


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials ((nan, nan) for n = 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant cases (1.0 when there are none)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(first: Sequence[bool], second: Sequence[bool], *, seed: int = 0) -> dict[str, Any]:
    """`first` against `second` on the same cases (same order): n, both accuracies, b (first
    right, second wrong), c (the reverse), the McNemar p-value, and the difference
    first - second with its 95% paired bootstrap interval."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes differ in length: {len(first)} and {len(second)}")
    if not first:
        raise ValueError("no paired cases")
    b = sum(x and not y for x, y in zip(first, second, strict=True))
    c = sum(y and not x for x, y in zip(first, second, strict=True))
    diffs = [int(x) - int(y) for x, y in zip(first, second, strict=True)]
    interval = bootstrap(diffs, lambda xs: sum(xs) / len(xs), resamples=RESAMPLES, seed=seed)
    return {
        "n": len(first),
        "accuracy": sum(first) / len(first),
        "baseline_accuracy": sum(second) / len(second),
        "b": b,
        "c": c,
        "p_mcnemar": mcnemar(b, c),
        "difference": interval.as_dict(),
    }
