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
    top_k,
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
    - `longest_name`: characters in the longest microservice name;
    - `memorized_one_call` / `memorized_more_calls`: the exact memorization share among graphs
      of one call (whose prompt fixes the times: a copy is a matter of choosing the same call)
      and among graphs of two or more calls.
    """
    edges = [e for g in graphs for e in g.edges]
    if not edges:
        return {}
    flags = memorized(graphs, real.train)
    one = [e for g, (e, _) in zip(graphs, flags, strict=True) if g.num_edges == 1]
    more = [e for g, (e, _) in zip(graphs, flags, strict=True) if g.num_edges > 1]
    return {
        "memorized_one_call": sum(one) / len(one) if one else None,
        "memorized_more_calls": sum(more) / len(more) if more else None,
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


def real_context(real: Real, ks: Sequence[int] = TABLE_KS) -> dict[str, Any]:
    """What the real data lets a metric reach, measured on the splits themselves:

    - `train_repeated`: share of training graphs with an exact copy (`graph_hash`) elsewhere in
      the training split (how often real traffic repeats a whole graph); the validation split
      holds none by construction (the split is by graph hash), so exact memorization has no
      real-vs-real floor to compare with;
    - `one_call_prompts`: validation graphs of one call, and how many of them match a one-call
      training graph in service and latency (there the prompt fixes the times and an exact copy
      is one call choice away);
    - `heavy_hitters[K]`: of the real top-K microservices, the share named in the training split
      (what a source that keeps to training calls can recover at most), the calls of the K-th
      and how many real microservices tie at that count (ties are broken by name, so past the
      first ones the top-K is partly an alphabetical draw).
    """
    from ..traces import graph_hash

    copies = Counter(graph_hash(g) for g in real.train)
    repeated = sum(n for n in copies.values() if n > 1)
    one_call_train = {(g.service, g.latency) for g in real.train if g.num_edges == 1}
    one = [g for g in real.validation if g.num_edges == 1]
    dests = real.features.destinations
    hh: dict[str, dict[str, Any]] = {}
    for k in ks:
        top = top_k(dests, k)
        cutoff = dests[top[-1]] if top else 0
        hh[str(k)] = {
            "in_training": sum(n in real.train_names for n in top) / len(top) if top else None,
            "cutoff_calls": cutoff,
            "tied_at_cutoff": sum(1 for v in dests.values() if v == cutoff),
            "tied_in_top": sum(1 for n in top if dests[n] == cutoff),
        }
    return {
        "train_graphs": len(real.train),
        "train_repeated": repeated / len(real.train) if real.train else None,
        "one_call_prompts": len(one),
        "one_call_prompts_copyable": sum((g.service, g.latency) in one_call_train for g in one),
        "heavy_hitters": hh,
    }
