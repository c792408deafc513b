"""`write_zipkin_split`: one Zipkin file per trace, together exactly the one-file export."""

from __future__ import annotations

import json

from tracegrammar.exports import DEFAULT_BASE_EPOCH_NS, render
from tracegrammar.exports.zipkin import write_zipkin_split
from tracegrammar.types import CallGraph, Edge

GRAPHS = [
    CallGraph(
        "S_1", (Edge("0", "USER", "MS_1", "http", 0, 20), Edge("0.1", "MS_1", "MS_2", "db", 2, 9))
    ),
    CallGraph("S_2", (Edge("0", "USER", "MS_9", "rpc", 0, 7),)),
    CallGraph(
        "S_1", (Edge("0", "USER", "MS_1", "http", 0, 20), Edge("0.1", "MS_1", "MS_2", "db", 2, 9))
    ),
]


def test_split_files_are_one_trace_each_and_the_whole_export_together(tmp_path):
    paths = write_zipkin_split(GRAPHS, tmp_path / "zipkin", DEFAULT_BASE_EPOCH_NS)
    assert [p.name for p in paths] == ["trace-00000.json", "trace-00001.json", "trace-00002.json"]
    parts = [json.loads(p.read_text()) for p in paths]
    assert all(len({s["traceId"] for s in part}) == 1 for part in parts)
    whole = json.loads(render(GRAPHS, "zipkin-json"))
    assert [s for part in parts for s in part] == whole
