"""Data priors for the context writer: what the service and the arrival of a window's next line
are likely to be, digit by digit, so the sampler can follow the data where the model knows
nothing.

Why. The default adapter was never trained on the context task; left to itself the base model
writes one service on every line and every arrival at 0 (bench/results/workload: 2 distinct
services over 24 lines, service-mix JS 0.693, the maximum, against the baseline's 0.564). The
constraints say what a line *may* be (tracegrammar.rules); these priors say how likely each
allowed value is in the data, and the context decoder (tracegrammar.decoding.context) samples the
service and arrival fields from them (its `prior` option; measured in `bench workload`).

- `ServicePrior`: counts of graphs per service, the same counts the probabilistic baseline draws
  its window services from (`service_counts`, the baseline's `service_mix`, or the training
  split's per-service graph counts in a `Reference`). Over the services a line may name (the
  scanner's target: the known set, or only the required ids still missing), the names sorted
  with prefix sums of their counts are a trie: the names starting with a prefix are one run of
  the sorted list, so P(next piece | prefix) = mass(prefix + piece) / mass(prefix) and the end of
  a name gets mass(name) / mass(prefix). Multiplied along a name they give exactly
  count(name) / total over the allowed names; a name outside the allowed set gets nothing. Names
  the counts do not hold get `alpha` each (0 by default: the baseline draws only the services
  it saw); when no allowed name has any count (a required id the data never shows), all get
  the same.
- `ArrivalPrior`: the next arrival, after one at `previous` ms with `lines_left` lines to go in a
  window of `length_ms`, is the first of `lines_left` arrivals uniform in [previous, length_ms):
  a Poisson process, what the baseline's arrivals are without a gap table. Over an integer
  target (`rules.IntSet`) written digit by digit, `digit_probs` gives P(next digit | digits so
  far) and P(the number ends here) from the prior's mass on each run of numbers sharing a
  prefix.

Torch-free: the decoder turns these probabilities into logit offsets.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .rules import IntSet
from .types import CallGraph

if TYPE_CHECKING:
    from .reference import Reference

#: The key of "the value ends here" in `next_probs` and `digit_probs`.
END = ""
#: How the context decoder samples the service and arrival fields (tracegrammar.decoding.context):
#: from these priors alone, from the model times the priors, or from the model alone.
PRIOR_MODES = ("data", "product", "off")
DEFAULT_PRIOR = "data"
DIGITS = "0123456789"


def service_counts(graphs: Iterable[CallGraph]) -> dict[str, int]:
    """Graphs per service, counting those with calls (as `ProbabilisticBaseline.fit` does)."""
    return dict(sorted(Counter(g.service for g in graphs if g.edges).items()))


# ------------------------------------------------------------------------------------------------
# services
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameTrie:
    """Weighted names, sorted with prefix sums: the names starting with a prefix are one run."""

    names: tuple[str, ...]
    cumulative: tuple[float, ...]  # cumulative[i]: total weight of names[:i]

    @classmethod
    def build(cls, weights: Mapping[str, float]) -> NameTrie:
        names = tuple(sorted(weights))
        return cls(names, (0.0, *itertools.accumulate(float(weights[n]) for n in names)))

    def mass(self, prefix: str) -> float:
        """Total weight of the names starting with `prefix`."""
        lo = bisect.bisect_left(self.names, prefix)
        hi = bisect.bisect_left(self.names, prefix + "\U0010ffff", lo)
        return self.cumulative[hi] - self.cumulative[lo]

    def exact(self, name: str) -> float:
        """The weight of `name` itself (0 if absent)."""
        i = bisect.bisect_left(self.names, name)
        if i < len(self.names) and self.names[i] == name:
            return self.cumulative[i + 1] - self.cumulative[i]
        return 0.0

    def piece_prob(self, buf: str, piece: str) -> float | None:
        """P(the name continues `buf` with `piece`; `END`: it ends at `buf`) among the names
        starting with `buf`. None: no name starting with `buf` has any weight."""
        total = self.mass(buf)
        if total <= 0:
            return None
        part = self.exact(buf) if piece == END else self.mass(buf + piece)
        return part / total

    def next_probs(self, buf: str) -> dict[str, float]:
        """P(next character | `buf`) for each character that continues a name with weight, and
        `END` for `buf` being a whole name; empty when no name starting with `buf` has any."""
        total = self.mass(buf)
        if total <= 0:
            return {}
        out: dict[str, float] = {}
        if self.exact(buf) > 0:
            out[END] = self.exact(buf) / total
        lo = bisect.bisect_left(self.names, buf)
        hi = bisect.bisect_left(self.names, buf + "\U0010ffff", lo)
        for ch in sorted({n[len(buf)] for n in self.names[lo:hi] if len(n) > len(buf)}):
            part = self.mass(buf + ch)
            if part > 0:
                out[ch] = part / total
        return out


@dataclass(frozen=True)
class ServicePrior:
    """The data's service mix (graphs per service), for the services a context line may name."""

    counts: Mapping[str, int]
    alpha: float = 0.0

    def __post_init__(self) -> None:
        bad = [s for s, n in self.counts.items() if isinstance(n, bool) or n < 0]
        if bad or self.alpha < 0:
            what = f"count of {bad[0]} {self.counts[bad[0]]!r}" if bad else f"alpha {self.alpha}"
            raise ValueError(f"service prior: {what} must be >= 0")

    @classmethod
    def from_graphs(cls, graphs: Iterable[CallGraph], alpha: float = 0.0) -> ServicePrior:
        return cls(service_counts(graphs), alpha)

    @classmethod
    def from_reference(cls, reference: Reference, alpha: float = 0.0) -> ServicePrior:
        """The training split's graphs per service (empty for a reference written before it
        kept them: every allowed service then weighs the same)."""
        return cls({s: n for s, n, _ in reference.service_stats}, alpha)

    def trie(self, allowed: Iterable[str]) -> NameTrie:
        """The trie of the allowed names, weighted by their counts (+ alpha); all weighted
        alike when none has any weight."""
        names = sorted(set(allowed))
        weights = {n: self.counts.get(n, 0) + self.alpha for n in names}
        if not any(w > 0 for w in weights.values()):
            weights = dict.fromkeys(names, 1.0)
        return NameTrie.build(weights)

    def probability(self, allowed: Iterable[str], name: str) -> float:
        """P(name) among the allowed names: what sampling piece by piece gives in the end."""
        trie = self.trie(allowed)
        return trie.exact(name) / trie.mass("") if trie.mass("") > 0 else 0.0


# ------------------------------------------------------------------------------------------------
# arrivals (and any integer written digit by digit)
# ------------------------------------------------------------------------------------------------


class IntMass(Protocol):
    def mass(self, lo: int, hi: int) -> float:
        """The prior's probability of the integers lo..hi (inclusive)."""
        ...


@dataclass(frozen=True)
class ArrivalPrior:
    """The first of `lines_left` arrivals uniform over the ms [previous, length_ms)."""

    previous: int
    length_ms: int
    lines_left: int

    def survival(self, x: int) -> float:
        """P(arrival > x)."""
        span = self.length_ms - self.previous
        if x < self.previous:
            return 1.0
        if x >= self.length_ms - 1 or span <= 0:
            return 0.0
        return ((self.length_ms - 1 - x) / span) ** max(self.lines_left, 1)

    def mass(self, lo: int, hi: int) -> float:
        return max(0.0, self.survival(lo - 1) - self.survival(hi)) if lo <= hi else 0.0


def _prefix_mass(target: IntSet, prior: IntMass, digits: str) -> float:
    """The prior's mass on the numbers of `target` whose decimal text starts with `digits`."""
    if not digits:
        return sum(prior.mass(lo, hi) for lo, hi in target.intervals)
    if digits[0] == "0":
        return prior.mass(0, 0) if digits == "0" and 0 in target else 0.0
    value, scale, total = int(digits), 1, 0.0
    if not target:
        return 0.0
    while value * scale <= target.max:  # value, then value0..value9, value00..value99, ...
        run = IntSet.range(value * scale, (value + 1) * scale - 1) & target
        total += sum(prior.mass(lo, hi) for lo, hi in run.intervals)
        scale *= 10
    return total


def digit_probs(target: IntSet, buf: str, prior: IntMass) -> dict[str, float]:
    """P(next digit | `buf`) over the numbers of `target`, and `END` for the number being `buf`
    itself; empty when the prior gives no mass to any number of `target` starting with `buf`
    (the caller then leaves the choice to the model)."""
    parts: dict[str, float] = {}
    if buf and buf.isdigit() and int(buf) in target and (buf == "0" or buf[0] != "0"):
        parts[END] = prior.mass(int(buf), int(buf))
    if buf != "0":
        for d in DIGITS:
            if target.admits_prefix(buf + d):
                parts[d] = _prefix_mass(target, prior, buf + d)
    total = sum(parts.values())
    if not total > 0 or not math.isfinite(total):
        return {}
    return {k: v / total for k, v in parts.items() if v > 0}
