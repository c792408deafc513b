"""Zipkin v2 JSON: a flat list of spans (all graphs), as `POST /api/v2/spans` accepts; or, split,
one file per trace, as Zipkin's upload screen reads a file as one trace (`write_zipkin_split`).

Per the v2 schema: `traceId` 32 hex, `id` 16 hex, `parentId` on every span but the root,
`timestamp` epoch µs, `duration` µs and at least 1 (Zipkin reads 0 as "unknown"), `kind`,
`localEndpoint`/`remoteEndpoint` service names, and string `tags`. The recording side of each
call is described in `tracegrammar.exports._spans`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_writer, check_output_writable
from ..types import CallGraph
from ._spans import Span, duration_us, micros, placements, spans, tags


def render_zipkin(graphs: Sequence[CallGraph], base_epoch_ns: int | None) -> str:
    bases = placements(graphs, base_epoch_ns)
    out = [_span(s) for n, g in enumerate(graphs) for s in spans(g, n, bases[n])]
    return json.dumps(out, separators=(",", ":")) + "\n"


def write_zipkin_split(
    graphs: Sequence[CallGraph], folder: str | Path, base_epoch_ns: int | None = None
) -> list[Path]:
    """One Zipkin v2 file per graph (`trace-00000.json`, ...) in `folder`, each written
    atomically; the spans and ids are those of the one-file export (the graph's position is
    the same)."""
    folder = Path(folder)
    width = max(5, len(str(len(graphs) - 1)))
    bases = placements(graphs, base_epoch_ns)
    paths = []
    for n, g in enumerate(graphs):
        path = check_output_writable(folder / f"trace-{n:0{width}d}.json")
        with atomic_writer(path) as fh:
            fh.write(json.dumps([_span(s) for s in spans(g, n, bases[n])], separators=(",", ":")))
            fh.write("\n")
        paths.append(path)
    return paths


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
