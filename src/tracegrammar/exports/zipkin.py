"""Zipkin v2 JSON: a flat list of spans (all graphs), as `POST /api/v2/spans` accepts.

Per the v2 schema: `traceId` 32 hex, `id` 16 hex, `parentId` on every span but the root,
`timestamp` epoch µs, `duration` µs and at least 1 (Zipkin reads 0 as "unknown"), `kind`,
`localEndpoint`/`remoteEndpoint` service names, and string `tags`. The recording side of each
call is described in `tracegrammar.exports._spans`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..types import CallGraph
from ._spans import Span, duration_us, micros, spans, tags


def render_zipkin(graphs: Sequence[CallGraph], base_epoch_ns: int) -> str:
    out = [_span(s) for n, g in enumerate(graphs) for s in spans(g, n, base_epoch_ns)]
    return json.dumps(out, separators=(",", ":")) + "\n"


def _span(s: Span) -> dict[str, Any]:
    span: dict[str, Any] = {"traceId": s.trace_id, "id": s.span_id}
    if s.parent_id is not None:
        span["parentId"] = s.parent_id
    span.update(
        {
            "name": s.name,
            "kind": s.kind,
            "timestamp": micros(s.start_ns),
            "duration": duration_us(s),
            "localEndpoint": {"serviceName": s.local},
            "remoteEndpoint": {"serviceName": s.remote},
            "tags": tags(s),
        }
    )
    return span
