"""One span per call, shared by the OTLP, Jaeger and Zipkin exporters so they agree on ids,
kinds and which microservice records each span.

A call graph logs each call once, but tracing systems record a span on one side of a call. The
choice here follows what OpenTelemetry instrumentation would emit:

- http and rpc calls (and the root call, whatever its type: the user is not instrumented) are
  SERVER spans recorded by the callee (the destination); their children are the calls the callee
  makes while serving, so server spans nest directly;
- mc and db calls are CLIENT spans recorded by the caller (the source), as database and cache
  client instrumentation does (the store itself emits no span);
- mq calls are PRODUCER spans recorded by the caller.

The other side is the span's remote/peer service. Each graph's root starts at its `timestamp`, or
at a base (`--start`) that keeps stamped graphs' offsets (`placements`). Ids are deterministic: the trace id hashes the
graph's content with its position in the export, the span id hashes the trace id with the rpc id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..io import graph_to_dict
from ..times import DEFAULT_ANCHOR, epoch_ms
from ..types import ROOT_ID, CallGraph, Edge

NS_PER_MS = 1_000_000
#: 2024-01-01T00:00:00Z: graphs with no timestamp (no wall-clock time) are placed here.
DEFAULT_BASE_EPOCH_NS = DEFAULT_ANCHOR * 1_000_000_000
NS_PER_US = 1_000

_CLIENT_KINDS = {"mc": "CLIENT", "db": "CLIENT", "mq": "PRODUCER"}


@dataclass(frozen=True, slots=True)
class Span:
    """A call seen as a span: ids are lowercase hex, times absolute ns since the Unix epoch."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str  # SERVER, CLIENT or PRODUCER
    local: str  # the microservice recording the span
    remote: str  # the other side of the call
    start_ns: int
    end_ns: int
    edge: Edge
    service: str  # the Alibaba service id of the graph


def check_base(base_epoch_ns: int) -> int:
    """A zero or negative epoch puts spans in 1970, which trace UIs hide or reject."""
    if not isinstance(base_epoch_ns, int) or base_epoch_ns <= 0:
        raise InputError(f"base_epoch_ns must be a positive integer (ns), got {base_epoch_ns!r}")
    return base_epoch_ns


def placements(graphs: Sequence[CallGraph], base_epoch_ns: int | None = None) -> list[int]:
    """Epoch ns at which each graph's root call starts in an export.

    Without a base, a graph with a `timestamp` starts at it (to the ms) and one without at
    DEFAULT_BASE_EPOCH_NS. With a base (`--start`), the earliest stamped graph starts at the
    base and the other stamped graphs keep their offsets from it; graphs without a timestamp
    start at the base."""
    if base_epoch_ns is not None:
        check_base(base_epoch_ns)
    stamped = [None if g.timestamp is None else epoch_ms(g.timestamp) * NS_PER_MS for g in graphs]
    if base_epoch_ns is None:
        return [DEFAULT_BASE_EPOCH_NS if at is None else at for at in stamped]
    first = min((at for at in stamped if at is not None), default=0)
    return [base_epoch_ns if at is None else base_epoch_ns + at - first for at in stamped]


def placed(graph: CallGraph, at_ns: int) -> CallGraph:
    """The graph stamped with the time `placements` gave it (ms precision)."""
    return CallGraph(graph.service, graph.edges, (at_ns // NS_PER_MS) / 1000)


def trace_id(graph: CallGraph, index: int) -> str:
    """32 hex digits from the graph's content and position (equal graphs get distinct ids)."""
    payload = json.dumps([index, graph_to_dict(graph)], separators=(",", ":"), sort_keys=True)
    return _nonzero(hashlib.sha256(payload.encode()).hexdigest()[:32])


def span_id(trace: str, rpc_id: str) -> str:
    return _nonzero(hashlib.sha256(f"{trace}/{rpc_id}".encode()).hexdigest()[:16])


def _nonzero(hex_id: str) -> str:
    """All-zero ids mean "invalid" in W3C trace context; astronomically unlikely, but excluded."""
    return hex_id if hex_id.strip("0") else hex_id[:-1] + "1"


def kind_of(edge: Edge) -> str:
    if edge.rpc_id == ROOT_ID:
        return "SERVER"
    return _CLIENT_KINDS.get(edge.type, "SERVER")


def spans(graph: CallGraph, index: int, base_epoch_ns: int) -> list[Span]:
    """The spans of one graph, in rpc-id (depth-first) order."""
    base = check_base(base_epoch_ns)
    trace = trace_id(graph, index)
    ids = {e.rpc_id: span_id(trace, e.rpc_id) for e in graph.edges}
    return [_span(graph, e, trace, ids, base) for e in graph.edges]


def _span(graph: CallGraph, e: Edge, trace: str, ids: dict[str, str], base: int) -> Span:
    kind = kind_of(e)
    local, remote = (e.destination, e.source) if kind == "SERVER" else (e.source, e.destination)
    parent = ids.get(e.parent_id) if e.parent_id is not None else None
    return Span(
        trace_id=trace,
        span_id=ids[e.rpc_id],
        parent_id=parent,
        name=f"{e.type} {e.source} -> {e.destination}",
        kind=kind,
        local=local,
        remote=remote,
        start_ns=base + e.start * NS_PER_MS,
        end_ns=base + e.finish * NS_PER_MS,
        edge=e,
        service=graph.service,
    )


def tags(s: Span) -> dict[str, str]:
    """The attributes every format carries: enough to rebuild the Alibaba row."""
    return {
        "peer.service": s.remote,
        "alibaba.service": s.service,
        "alibaba.rpc_id": s.edge.rpc_id,
        "alibaba.rpctype": s.edge.type,
        "alibaba.um": s.edge.source,
        "alibaba.dm": s.edge.destination,
    }


def micros(ns: int) -> int:
    return ns // NS_PER_US


def duration_us(s: Span) -> int:
    """Whole microseconds, at least 1: Zipkin and Jaeger treat 0 as "unknown duration"."""
    return max(1, micros(s.end_ns) - micros(s.start_ns))
