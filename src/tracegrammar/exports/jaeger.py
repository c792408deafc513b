"""Jaeger UI JSON: the document the query API returns and the UI's "JSON File" upload reads.

`{"data": [trace, ...]}`, each trace `{"traceID", "spans", "processes"}`; a span has
`startTime` (epoch µs) and `duration` (µs, at least 1: Jaeger shows 0 as missing), one CHILD_OF
reference to its parent, and `span.kind` / `peer.service` tags. A process per microservice
recording spans (see `tracegrammar.exports._spans` for which side of a call that is).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..types import CallGraph
from ._spans import Span, duration_us, micros, placements, spans, tags


def render_jaeger(graphs: Sequence[CallGraph], base_epoch_ns: int | None) -> str:
    bases = placements(graphs, base_epoch_ns)
    data = [_trace(spans(g, n, bases[n])) for n, g in enumerate(graphs)]
    doc = {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None}
    return json.dumps(doc, separators=(",", ":")) + "\n"


def _trace(trace_spans: list[Span]) -> dict[str, Any]:
    processes: dict[str, str] = {}  # microservice -> process id, in first-seen order
    for s in trace_spans:
        processes.setdefault(s.local, f"p{len(processes) + 1}")
    return {
        "traceID": trace_spans[0].trace_id if trace_spans else "",
        "spans": [_span(s, processes[s.local]) for s in trace_spans],
        "processes": {pid: {"serviceName": ms, "tags": []} for ms, pid in processes.items()},
        "warnings": None,
    }


def _span(s: Span, process_id: str) -> dict[str, Any]:
    refs = [] if s.parent_id is None else [_ref(s.trace_id, s.parent_id)]
    span_tags = {"span.kind": s.kind.lower(), **tags(s)}
    return {
        "traceID": s.trace_id,
        "spanID": s.span_id,
        "flags": 1,
        "operationName": s.name,
        "references": refs,
        "startTime": micros(s.start_ns),
        "duration": duration_us(s),
        "tags": [{"key": k, "type": "string", "value": v} for k, v in span_tags.items()],
        "logs": [],
        "processID": process_id,
        "warnings": None,
    }


def _ref(trace_id: str, parent_id: str) -> dict[str, str]:
    return {"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent_id}
