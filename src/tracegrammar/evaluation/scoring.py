"""The scores of one source's synthetic graphs against the real validation graphs: every
distribution metric of `tracegrammar.metrics` with a bootstrap interval, and per-field
diagnostics that say which field is off (names, types, times, widths, leaf calls with children).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..metrics import (
    EMD_FIELDS,
    Features,
    Outcome,
    call_distribution_divergence,
    emd_report,
    features,
    heavy_hitter_overlap,
    memorized,
    semantic_validity,
)
from ..reference import Reference
from ..types import CALL_TYPES, USER, CallGraph
from .bootstrap import RESAMPLES, Interval, bootstrap, bootstrap_many, mean

#: Heavy-hitter K values in the fidelity table (the issue's acceptance: 10 and 50).
TABLE_KS: tuple[int, ...] = (10, 50)
#: Call types that never have children in the real samples.
LEAF_TYPES: tuple[str, ...] = ("mc", "db", "mq")
RT_QUANTILES: tuple[int, ...] = (50, 90, 99)
#: Metric keys of a source's scores, in table order.
METRICS: tuple[str, ...] = (
    "validity", "semantic", "kl", "js", *(f"emd_{f}" for f in EMD_FIELDS),
    *(f"hh{k}" for k in TABLE_KS), "memorized_exact", "memorized_structure",
)  # fmt: skip


@dataclass(frozen=True)
class Real:
    """What every source is compared against, computed once: the real validation graphs and the
    training graphs (the semantic reference and the memorization set)."""

    validation: tuple[CallGraph, ...]
    train: tuple[CallGraph, ...]

    @cached_property
    def features(self) -> Features:
        return features(self.validation)

    @cached_property
    def reference(self) -> Reference:
        return Reference.from_graphs(self.train)

    @cached_property
    def train_names(self) -> frozenset[str]:
        return frozenset(n for g in self.train for e in g.edges for n in (e.source, e.destination))


def score(
    real: Real,
    graphs: Sequence[CallGraph],
    asked: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Interval | None]:
    """Every metric of METRICS with its interval (None where the sample cannot give it: no valid
    graph). `graphs` are the valid graphs of `asked` requests; validity is resampled over the
    requests, everything else over the valid graphs."""
    valid = len(graphs)
    out: dict[str, Interval | None] = dict.fromkeys(METRICS)
    kw = {"resamples": resamples, "seed": seed}
    if asked:
        out["validity"] = bootstrap([1.0] * valid + [0.0] * (asked - valid), mean, **kw)
    if not graphs:
        return out
    # Shares are means of per-graph flags, each flag the metric of a one-graph sample: the
    # definitions stay in `metrics`, and a resample needs no oracle run or training hash.
    semantic = [semantic_validity([Outcome(g)], real.reference) for g in graphs]
    out["semantic"] = bootstrap(semantic, mean, **kw)
    flags = memorized(graphs, real.train)
    out["memorized_exact"] = bootstrap([float(e) for e, _ in flags], mean, **kw)
    out["memorized_structure"] = bootstrap([float(s) for _, s in flags], mean, **kw)
    if any(g.edges for g in graphs):
        out.update(bootstrap_many(list(graphs), lambda gs: _distribution(real, gs), **kw))
    return out


def _distribution(real: Real, graphs: Sequence[CallGraph]) -> dict[str, float]:
    syn = features(graphs)
    div = call_distribution_divergence(real.features, syn)
    hh = heavy_hitter_overlap(real.features, syn, TABLE_KS)
    emd = emd_report(real.features, syn)
    return {
        "kl": div.kl,
        "js": div.js,
        **{f"emd_{f}": emd[f] for f in EMD_FIELDS},
        **{f"hh{k}": hh[k] for k in TABLE_KS},
    }


# ------------------------------------------------------------------------------------------------
# per-field diagnostics
# ------------------------------------------------------------------------------------------------


def diagnostics(real: Real, graphs: Sequence[CallGraph]) -> dict[str, Any]:
    """Where a source departs from real, field by field (point values; `real` itself gives the
    reference row when scored as a source):

    - `known_destinations`: share of calls whose destination is a microservice named anywhere in
      the training graphs;
    - `type_tvd`: total variation distance between the call-type mix and the real one;
    - `rt_ms`: response time quantiles p50/p90/p99 (ms);
    - `width_by_depth`: mean children per call, per call depth (1 = the root call);
    - `leaf_with_children`: calls of a type that never has children in real data that do;
    - `longest_name`: characters in the longest microservice name.
    """
    edges = [e for g in graphs for e in g.edges]
    if not edges:
        return {}
    return {
        "known_destinations": sum(e.destination in real.train_names for e in edges) / len(edges),
        "type_tvd": type_tvd(real.validation, graphs),
        "rt_ms": rt_quantiles(graphs),
        "width_by_depth": width_by_depth(graphs),
        "leaf_with_children": leaf_with_children(graphs),
        "longest_name": max(len(n) for e in edges for n in (e.source, e.destination) if n != USER),
    }


def type_mix(graphs: Sequence[CallGraph]) -> np.ndarray:
    counts = Counter(e.type for g in graphs for e in g.edges)
    total = sum(counts.values()) or 1
    return np.array([counts[t] / total for t in CALL_TYPES])


def type_tvd(real: Sequence[CallGraph], synthetic: Sequence[CallGraph]) -> float:
    """Half the L1 distance between the call-type distributions (0: same mix, 1: disjoint)."""
    return float(np.abs(type_mix(real) - type_mix(synthetic)).sum() / 2)


def rt_quantiles(graphs: Sequence[CallGraph]) -> dict[str, float]:
    rts = np.array([e.finish - e.start for g in graphs for e in g.edges], dtype=float)
    return {f"p{q}": float(np.percentile(rts, q)) for q in RT_QUANTILES}


def width_by_depth(graphs: Sequence[CallGraph]) -> dict[str, float]:
    """Mean number of children of a call at each depth (leaves count as 0), keyed by depth."""
    kids: dict[int, list[int]] = {}
    for g in graphs:
        for e in g.edges:
            kids.setdefault(e.depth, []).append(len(g.children.get(e.rpc_id, ())))
    return {str(d): float(np.mean(v)) for d, v in sorted(kids.items())}


def leaf_with_children(graphs: Sequence[CallGraph]) -> int:
    return sum(
        1 for g in graphs for e in g.edges if e.type in LEAF_TYPES and e.rpc_id in g.children
    )
