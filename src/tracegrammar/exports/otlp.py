"""OTLP/JSON: one ExportTraceServiceRequest holding every graph, ready for a collector's
`POST /v1/traces` (or `otel-cli`/`otelcol` file receivers).

The message is built with the official `opentelemetry-proto` classes and converted with protobuf's
JSON mapping, with the two changes the OTLP/JSON spec makes to that mapping: trace and span ids are
hex (not base64), and enums are integers. int64 times come out as strings, as the spec requires.

Spans are grouped into one ResourceSpans per microservice recording them (`service.name`); which
side of a call records its span, and the span kinds, are explained in `tracegrammar.exports._spans`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from ..types import CallGraph
from ._spans import Span, placements, spans, tags

SCOPE = "tracegrammar"
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})
_KINDS = {
    "SERVER": PbSpan.SpanKind.SPAN_KIND_SERVER,
    "CLIENT": PbSpan.SpanKind.SPAN_KIND_CLIENT,
    "PRODUCER": PbSpan.SpanKind.SPAN_KIND_PRODUCER,
}


def build_request(
    graphs: Sequence[CallGraph], base_epoch_ns: int | None
) -> ExportTraceServiceRequest:
    """The protobuf message (also what an OTLP/gRPC or OTLP/protobuf exporter would send)."""
    by_service: dict[str, list[PbSpan]] = {}
    for n, (graph, at) in enumerate(zip(graphs, placements(graphs, base_epoch_ns), strict=True)):
        for s in spans(graph, n, at):
            by_service.setdefault(s.local, []).append(_pb_span(s))
    request = ExportTraceServiceRequest()
    for service, pb_spans in by_service.items():
        request.resource_spans.append(_resource_spans(service, pb_spans))
    return request


def render_otlp(graphs: Sequence[CallGraph], base_epoch_ns: int | None) -> str:
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(build_request(graphs, base_epoch_ns), use_integers_for_enums=True)
    return json.dumps(_hex_ids(data), separators=(",", ":")) + "\n"


def _resource_spans(service: str, pb_spans: list[PbSpan]) -> ResourceSpans:
    resource = Resource(attributes=[_kv("service.name", service)])
    scope = ScopeSpans(scope=InstrumentationScope(name=SCOPE), spans=pb_spans)
    return ResourceSpans(resource=resource, scope_spans=[scope])


def _pb_span(s: Span) -> PbSpan:
    return PbSpan(
        trace_id=bytes.fromhex(s.trace_id),
        span_id=bytes.fromhex(s.span_id),
        parent_span_id=bytes.fromhex(s.parent_id) if s.parent_id else b"",
        name=s.name,
        kind=_KINDS[s.kind],
        start_time_unix_nano=s.start_ns,
        end_time_unix_nano=s.end_ns,
        attributes=[_kv(k, v) for k, v in tags(s).items()],
    )


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _hex_ids(node: Any) -> Any:
    """Protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids in hex."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _ID_KEYS else _hex_ids(v) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node
