"""Exports of call graphs to trace formats other tools read, and pictures of graphs.

`render(graphs, fmt)` gives the text of one document holding all the graphs; `write(graphs, path,
fmt)` writes it atomically (an interrupted run leaves no half-written file). Formats:

- `jsonl`: the project's own JSON Lines (`tracegrammar.io`);
- `alibaba-csv`: Alibaba v2022 MSCallGraph CSV, re-loadable by `tracegrammar.load_traces`;
- `otlp-json`: an OTLP/JSON ExportTraceServiceRequest (POST it to a collector's /v1/traces);
- `jaeger-json`: the Jaeger UI / query-API JSON (`{"data": [...]}`, "JSON File" upload);
- `zipkin-json`: a Zipkin v2 span list (POST it to /api/v2/spans).

Graphs carry times relative to their root call; trace formats need wall-clock times. A graph with
a `timestamp` (loaded from a CSV, stamped by a workload) starts at it; one without starts at
2024-01-01T00:00:00Z. `base_epoch_ns` (the CLI's `--start`) moves the earliest stamped graph to
it, the others keeping their offsets, and puts graphs without a timestamp there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import InputError
from ..io import atomic_writer
from ..types import CallGraph
from ._spans import DEFAULT_BASE_EPOCH_NS, check_base, placed, placements

EXPORT_FORMATS: tuple[str, ...] = (
    "jsonl",
    "alibaba-csv",
    "otlp-json",
    "jaeger-json",
    "zipkin-json",
)

__all__ = ["DEFAULT_BASE_EPOCH_NS", "EXPORT_FORMATS", "placements", "render", "write"]


def render(
    graphs: Iterable[CallGraph] | CallGraph,
    fmt: str,
    *,
    base_epoch_ns: int | None = None,
) -> str:
    """The whole export as text. A single CallGraph is accepted as a one-graph sequence.
    `base_epoch_ns`: where the (earliest) graph starts (see the module docstring)."""
    renderer = _renderer(fmt)
    if base_epoch_ns is not None:
        check_base(base_epoch_ns)
    items = [graphs] if isinstance(graphs, CallGraph) else list(graphs)
    return renderer(items, base_epoch_ns)


def write(
    graphs: Iterable[CallGraph] | CallGraph,
    path: str | Path,
    fmt: str,
    *,
    base_epoch_ns: int | None = None,
) -> None:
    """Render first, then write atomically: a failure in either leaves `path` untouched."""
    text = render(graphs, fmt, base_epoch_ns=base_epoch_ns)
    with atomic_writer(path) as fh:
        fh.write(text)


def _renderer(fmt: str) -> Callable[[list[CallGraph], int | None], str]:
    """Imports lazily, so using one format does not load the others' dependencies (protobuf)."""
    if fmt == "jsonl":
        return _jsonl
    if fmt == "alibaba-csv":
        from .alibaba_csv import render_csv

        return render_csv
    if fmt == "otlp-json":
        from .otlp import render_otlp

        return render_otlp
    if fmt == "jaeger-json":
        from .jaeger import render_jaeger

        return render_jaeger
    if fmt == "zipkin-json":
        from .zipkin import render_zipkin

        return render_zipkin
    raise InputError(f"unknown export format {fmt!r} (known: {', '.join(EXPORT_FORMATS)})")


def _jsonl(graphs: list[CallGraph], base_epoch_ns: int | None) -> str:
    """Our own lines; with a base, every graph is stamped with its placement."""
    import json

    from ..io import graph_to_dict

    if base_epoch_ns is not None:
        graphs = [
            placed(g, at) for g, at in zip(graphs, placements(graphs, base_epoch_ns), strict=True)
        ]
    return "".join(json.dumps(graph_to_dict(g), separators=(",", ":")) + "\n" for g in graphs)
