"""Alibaba v2022 MSCallGraph CSV: the published columns, in the published order.

Columns the generator does not model get stable placeholders: trace ids `T_<n>` (position in the
export), instance ids `<microservice>_POD_0`, interface `<type>_<rpc id>`. `timestamp` is ms
since the epoch (the graph's placement, `_spans.placements`: its own `timestamp` or the base, plus
the call's start) and `rt` is finish - start, so `tracegrammar.load_traces` reads the file back to
the same graphs at the same times: the loader measures times from a trace's first call, which is
the root, starting at 0 in every valid graph, and reads epoch ms as the graph's timestamp.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from ..types import USER, CallGraph, Edge
from ._spans import NS_PER_MS, placements

COLUMNS: tuple[str, ...] = (
    "timestamp",
    "traceid",
    "service",
    "rpc_id",
    "rpctype",
    "um",
    "uminstanceid",
    "interface",
    "dm",
    "dminstanceid",
    "rt",
)


def render_csv(graphs: Sequence[CallGraph], base_epoch_ns: int | None) -> str:
    """One row per call, rows of a trace together (the loader groups rows within a window)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for n, (graph, at) in enumerate(zip(graphs, placements(graphs, base_epoch_ns), strict=True)):
        base_ms = at // NS_PER_MS
        writer.writerows(_row(f"T_{n}", graph.service, e, base_ms) for e in graph.edges)
    return out.getvalue()


def _row(trace: str, service: str, e: Edge, base_ms: int) -> list[str | int]:
    return [
        base_ms + e.start,
        trace,
        service,
        e.rpc_id,
        e.type,
        e.source,
        _instance(e.source),
        f"{e.type}_{e.rpc_id}",
        e.destination,
        _instance(e.destination),
        e.finish - e.start,
    ]


def _instance(microservice: str) -> str:
    """The user has no pod; Alibaba logs an unknown instance as UNAVAILABLE."""
    return "UNAVAILABLE" if microservice == USER else f"{microservice}_POD_0"
