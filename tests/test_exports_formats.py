"""Every export format is read back by its own reader: Alibaba CSV by our loader (exactly),
OTLP by protobuf's JSON parser into the official message, Jaeger and Zipkin against the documented
schema; and exporting any valid graph never fails."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import Parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracegrammar import LoadReport, load_traces
from tracegrammar.exports import DEFAULT_BASE_EPOCH_NS, EXPORT_FORMATS, render, write
from tracegrammar.exports._spans import trace_id
from tracegrammar.exports.alibaba_csv import COLUMNS
from tracegrammar.io import read_jsonl
from tracegrammar.types import USER, CallGraph, Edge

from .strategies import call_graphs

BASE = DEFAULT_BASE_EPOCH_NS
HEX32 = set("0123456789abcdef")
graph_lists = st.lists(call_graphs(max_edges=20), min_size=1, max_size=4)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EXAMPLE = CallGraph(
    "S_7",
    (
        Edge("0", USER, "MS_1", "http", 0, 40),
        Edge("0.1", "MS_1", "MS_2", "rpc", 2, 30),
        Edge("0.1.1", "MS_2", "MS_3", "db", 5, 5),
        Edge("0.2", "MS_1", "MS_4", "mq", 31, 39),
    ),
)


def _is_hex(value: object, digits: int) -> bool:
    return isinstance(value, str) and len(value) == digits and set(value) <= HEX32


def _rpc_tree(graphs: list[CallGraph]) -> set[tuple[int, str, str | None]]:
    """(graph index, rpc id, parent rpc id) of every call: what parent links must reproduce."""
    return {(n, e.rpc_id, e.parent_id) for n, g in enumerate(graphs) for e in g.edges}


def _linked_tree(
    spans: list[dict[str, Any]], traces: list[str]
) -> set[tuple[int, str, str | None]]:
    """The same triples rebuilt from span ids only (each span dict: trace, id, parent, rpc_id)."""
    by_id = {(s["trace"], s["id"]): s["rpc_id"] for s in spans}
    assert len(by_id) == len(spans), "span ids repeat within a trace"
    out = set()
    for s in spans:
        parent = by_id[(s["trace"], s["parent"])] if s["parent"] else None
        out.add((traces.index(s["trace"]), s["rpc_id"], parent))
    return out


# ------------------------------------------------------------------------------------------------
# Alibaba CSV and JSON Lines: exact round trips
# ------------------------------------------------------------------------------------------------


@FAST
@given(graph_lists)
def test_alibaba_csv_round_trips_through_the_loader(graphs):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.csv"
        write(graphs, path, "alibaba-csv")
        report = LoadReport()
        assert list(load_traces(path, report=report)) == graphs
    assert not report.dropped and not report.repaired  # nothing needed cleaning
    assert report.rows == sum(g.num_edges for g in graphs)


def test_alibaba_csv_columns_and_values():
    lines = render([EXAMPLE], "alibaba-csv").splitlines()
    assert tuple(lines[0].split(",")) == COLUMNS
    row = dict(zip(COLUMNS, lines[2].split(","), strict=True))
    assert row["traceid"] == "T_0" and row["rpc_id"] == "0.1" and row["rt"] == "28"
    assert int(row["timestamp"]) == BASE // 1_000_000 + 2
    assert row["uminstanceid"] == "MS_1_POD_0" and row["dminstanceid"] == "MS_2_POD_0"


@FAST
@given(graph_lists)
def test_jsonl_round_trips(graphs):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.jsonl"
        write(graphs, path, "jsonl")
        assert list(read_jsonl(path)) == graphs


# ------------------------------------------------------------------------------------------------
# OTLP JSON
# ------------------------------------------------------------------------------------------------


def _otlp_parse(text: str) -> ExportTraceServiceRequest:
    """OTLP/JSON ids are hex, protobuf's JSON mapping wants base64: convert, then Parse."""

    def to_b64(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode()
                if k in ("traceId", "spanId", "parentSpanId")
                else to_b64(v)
                for k, v in node.items()
            }
        return [to_b64(v) for v in node] if isinstance(node, list) else node

    return Parse(json.dumps(to_b64(json.loads(text))), ExportTraceServiceRequest())


def _otlp_spans(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    out = []
    for rs in request.resource_spans:
        service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
        for ss in rs.scope_spans:
            for s in ss.spans:
                attrs = {a.key: a.value.string_value for a in s.attributes}
                out.append(
                    {
                        "trace": s.trace_id.hex(),
                        "id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(),
                        "rpc_id": attrs["alibaba.rpc_id"],
                        "attrs": attrs,
                        "service": service,
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                    }
                )
    return out


@FAST
@given(graph_lists)
def test_otlp_parses_into_the_official_message(graphs):
    text = render(graphs, "otlp-json")
    raw = json.loads(text)
    raw_spans = [s for rs in raw["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert all(_is_hex(s["traceId"], 32) and _is_hex(s["spanId"], 16) for s in raw_spans)
    assert all(isinstance(s["startTimeUnixNano"], str) for s in raw_spans)  # int64 as string
    spans = _otlp_spans(_otlp_parse(text))
    assert len(spans) == sum(g.num_edges for g in graphs)
    traces = [trace_id(g, n) for n, g in enumerate(graphs)]  # the ids are deterministic
    assert _linked_tree(spans, traces) == _rpc_tree(graphs)
    for s in spans:
        e = graphs[traces.index(s["trace"])].by_id[s["rpc_id"]]
        assert (s["start"], s["end"]) == (BASE + e.start * 10**6, BASE + e.finish * 10**6)
        assert s["service"] in (e.source, e.destination)
        assert s["attrs"]["alibaba.rpctype"] == e.type


def test_otlp_kinds_and_resources():
    spans = _otlp_spans(_otlp_parse(render([EXAMPLE], "otlp-json")))
    got = {s["rpc_id"]: (s["kind"], s["service"], s["attrs"]["peer.service"]) for s in spans}
    assert got == {
        "0": (2, "MS_1", USER),  # SERVER, recorded by the callee
        "0.1": (2, "MS_2", "MS_1"),
        "0.1.1": (3, "MS_2", "MS_3"),  # db: CLIENT, recorded by the caller
        "0.2": (4, "MS_1", "MS_4"),  # mq: PRODUCER
    }
    assert {s["attrs"]["alibaba.service"] for s in spans} == {"S_7"}


# ------------------------------------------------------------------------------------------------
# Jaeger and Zipkin: documented schema subsets
# ------------------------------------------------------------------------------------------------


@FAST
@given(graph_lists)
def test_jaeger_schema_and_tree(graphs):
    doc = json.loads(render(graphs, "jaeger-json"))
    assert len(doc["data"]) == len(graphs)
    flat = []
    for trace, graph in zip(doc["data"], graphs, strict=True):
        assert _is_hex(trace["traceID"], 32)
        assert len(trace["spans"]) == graph.num_edges
        for s in trace["spans"]:
            assert _is_hex(s["spanID"], 16) and s["traceID"] == trace["traceID"]
            assert isinstance(s["operationName"], str) and s["processID"] in trace["processes"]
            assert isinstance(s["startTime"], int) and isinstance(s["duration"], int)
            assert s["duration"] >= 1
            tags = {t["key"]: t["value"] for t in s["tags"]}
            assert all(t["type"] == "string" for t in s["tags"])
            assert len(s["references"]) <= 1
            e = graph.by_id[tags["alibaba.rpc_id"]]
            assert s["startTime"] == BASE // 1000 + e.start * 1000
            assert s["duration"] == max(1, (e.finish - e.start) * 1000)
            ref = s["references"][0] if s["references"] else None
            assert ref is None or (ref["refType"], ref["traceID"]) == ("CHILD_OF", s["traceID"])
            parent = ref["spanID"] if ref else None
            flat.append(
                {"trace": s["traceID"], "id": s["spanID"], "parent": parent, "rpc_id": e.rpc_id}
            )
        for p in trace["processes"].values():
            assert isinstance(p["serviceName"], str) and isinstance(p["tags"], list)
    traces = [t["traceID"] for t in doc["data"]]
    assert len(set(traces)) == len(traces)
    assert _linked_tree(flat, traces) == _rpc_tree(graphs)


@FAST
@given(graph_lists)
def test_zipkin_v2_schema_and_tree(graphs):
    spans = json.loads(render(graphs, "zipkin-json"))
    assert isinstance(spans, list) and len(spans) == sum(g.num_edges for g in graphs)
    flat = []
    for s in spans:
        assert _is_hex(s["traceId"], 32) and _is_hex(s["id"], 16)
        assert "parentId" not in s or _is_hex(s["parentId"], 16)
        assert s["kind"] in {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}
        assert isinstance(s["timestamp"], int) and isinstance(s["duration"], int)
        assert s["duration"] >= 1 and s["timestamp"] >= BASE // 1000
        assert isinstance(s["localEndpoint"]["serviceName"], str)
        assert isinstance(s["remoteEndpoint"]["serviceName"], str)
        assert all(isinstance(v, str) for v in s["tags"].values())
        rpc_id = s["tags"]["alibaba.rpc_id"]
        flat.append(
            {"trace": s["traceId"], "id": s["id"], "parent": s.get("parentId"), "rpc_id": rpc_id}
        )
    traces = list(dict.fromkeys(s["traceId"] for s in spans))
    assert len(traces) == len(graphs)
    assert _linked_tree(flat, traces) == _rpc_tree(graphs)


# ------------------------------------------------------------------------------------------------
# the front door
# ------------------------------------------------------------------------------------------------


def test_every_format_is_deterministic_and_equal_graphs_get_distinct_traces():
    for fmt in EXPORT_FORMATS:
        assert render([EXAMPLE, EXAMPLE], fmt) == render([EXAMPLE, EXAMPLE], fmt)
    zipkin = json.loads(render([EXAMPLE, EXAMPLE], "zipkin-json"))
    assert len({s["traceId"] for s in zipkin}) == 2


def test_base_epoch_moves_times_and_zero_is_refused():
    later = json.loads(render([EXAMPLE], "zipkin-json", base_epoch_ns=BASE + 10**9))
    assert later[0]["timestamp"] == BASE // 1000 + 10**6
    for bad in (0, -1):
        with pytest.raises(ValueError, match="base_epoch_ns"):
            render([EXAMPLE], "otlp-json", base_epoch_ns=bad)


def test_unknown_format_names_value_and_known_formats(tmp_path):
    with pytest.raises(ValueError, match="'parquet'") as info:
        render([EXAMPLE], "parquet")
    assert all(f in str(info.value) for f in EXPORT_FORMATS)
    target = tmp_path / "out.json"
    target.write_text("before")
    with pytest.raises(ValueError):
        write([EXAMPLE], target, "parquet")
    assert target.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind


def test_single_graph_is_accepted(tmp_path):
    assert render(EXAMPLE, "jsonl") == render([EXAMPLE], "jsonl")


def test_export_command_writes_the_chosen_format(tmp_path, capsys):
    import argparse

    from tracegrammar.cli.export import register_export
    from tracegrammar.io import write_jsonl

    write_jsonl([EXAMPLE], tmp_path / "g.jsonl")
    parser = argparse.ArgumentParser()
    register_export(parser)
    out = tmp_path / "spans.json"
    args = parser.parse_args(
        [str(tmp_path / "g.jsonl"), "--format", "zipkin-json", "--out", str(out)]
    )
    assert args.func(args) == 0
    assert len(json.loads(out.read_text())) == EXAMPLE.num_edges
    assert "1 graph(s)" in capsys.readouterr().out
