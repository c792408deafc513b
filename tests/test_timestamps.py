"""Absolute times: graphs stamped with their arrival time, kept through JSON Lines, the Alibaba
CSV samples and every export (`timestamp`, `--start`)."""

from __future__ import annotations

import json

import pytest

from tracegrammar.errors import InputError, TraceFormatError
from tracegrammar.io import graph_from_dict, graph_to_dict, read_jsonl, write_jsonl
from tracegrammar.types import CallGraph, Edge

T = 1_740_830_400.0  # 2025-03-01T12:00:00Z
EDGES = (
    Edge("0", "USER", "MS_1", "http", 0, 20),
    Edge("0.1", "MS_1", "MS_2", "rpc", 2, 9),
    Edge("0.2", "MS_1", "MS_3", "db", 10, 12),
)
PLAIN = CallGraph("S_1", EDGES)


def stamped(ts: float = T, service: str = "S_1") -> CallGraph:
    return CallGraph(service, EDGES, timestamp=ts)


# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------


def test_record_has_iso_timestamp_after_service():
    record = graph_to_dict(stamped(T + 0.25))
    assert list(record)[:3] == ["service", "timestamp", "edges"]
    assert record["timestamp"] == "2025-03-01T12:00:00.250Z"


def test_record_without_timestamp_is_unchanged():
    record = graph_to_dict(PLAIN, valid=True)
    assert list(record) == ["service", "edges", "valid"]
    text = json.dumps(record, separators=(",", ":"))
    assert text.startswith('{"service":"S_1","edges":[{"rpc_id":"0","source":"USER"')
    assert "timestamp" not in text


def test_jsonl_round_trip_keeps_timestamps(tmp_path):
    graphs = [stamped(T), PLAIN, stamped(T + 1.5, "S_2")]
    path = tmp_path / "g.jsonl"
    write_jsonl(graphs, path)
    back = list(read_jsonl(path))
    assert back == graphs
    assert [g.timestamp for g in back] == [T, None, T + 1.5]
    assert '"timestamp"' not in path.read_text().splitlines()[1]


def test_files_without_timestamps_write_the_same_bytes(tmp_path):
    path = tmp_path / "g.jsonl"
    write_jsonl([PLAIN], path)
    first = path.read_bytes()
    write_jsonl(list(read_jsonl(path)), path)
    assert path.read_bytes() == first


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01T12:00:00Z", T),
        ("2025-03-01T12:00:00", T),
        ("2025-03-01T13:00:00.500+01:00", T + 0.5),
        (T, T),
        (int(T), T),
        (None, None),
    ],
)
def test_records_take_iso_or_epoch_seconds(value, expected):
    record = {**graph_to_dict(PLAIN), "timestamp": value}
    assert graph_from_dict(record).timestamp == expected


@pytest.mark.parametrize("value", ["soon", "now", "", -5, 0, True, [1], {"t": 1}])
def test_bad_timestamps_are_refused(value):
    with pytest.raises(InputError, match="timestamp"):
        graph_from_dict({**graph_to_dict(PLAIN), "timestamp": value})


def test_bad_timestamp_in_a_file_names_the_line(tmp_path):
    path = tmp_path / "g.jsonl"
    record = graph_to_dict(PLAIN)
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "timestamp": "x"}) + "\n")
    with pytest.raises(TraceFormatError, match=r"g\.jsonl:2.*timestamp.*'x'"):
        list(read_jsonl(path))


# ---------------------------------------------------------------------------------------------
# Trace files: the CSV `timestamp` column
# ---------------------------------------------------------------------------------------------

ANCHOR = 1_704_067_200  # 2024-01-01T00:00:00Z


def _csv(tmp_path, rows: list[str]):
    path = tmp_path / "t.csv"
    path.write_text("timestamp,traceid,service,rpc_id,rpctype,um,dm,rt\n" + "\n".join(rows) + "\n")
    return path


def test_collection_offsets_are_anchored_at_2024(tmp_path):
    from tracegrammar import load_traces

    path = _csv(
        tmp_path,
        [
            "17530090,T_1,S_1,0.1,rpc,MS_1,MS_2,3",  # the child first: rows are not ordered
            "17530085,T_1,S_1,0,http,USER,MS_1,20",
            "200,T_2,S_2,0,http,USER,MS_3,4",
        ],
    )
    graphs = list(load_traces(path))
    assert [g.service for g in graphs] == ["S_1", "S_2"]
    assert graphs[0].timestamp == pytest.approx(ANCHOR + 17530.085)
    assert graphs[0].by_id["0.1"].start == 5  # times stay relative to the root
    assert graphs[1].timestamp == pytest.approx(ANCHOR + 0.2)


def test_epoch_ms_are_read_as_such(tmp_path):
    from tracegrammar import load_traces

    path = _csv(tmp_path, ["1740830400250,T_1,S_1,0,http,USER,MS_1,20"])
    (graph,) = load_traces(path)
    assert graph.timestamp == pytest.approx(T + 0.25)


def test_tracellm_text_has_no_clock(tmp_path):
    from tracegrammar import load_traces

    path = tmp_path / "t.txt"
    path.write_text(
        "[GENERATE GRAPH]id:S_1/num_edges:1\n<edges>\n(source is USER, destination is MS_1, "
        "type is http, edge_id is 0, communication starts at 0 milliseconds, "
        "communication finishes at 4 milliseconds)\n</edges>\n"
    )
    (graph,) = load_traces(path)
    assert graph.timestamp is None


def test_samples_are_stamped_inside_their_collection(shared_data):
    from tracegrammar import load_traces

    from .conftest import SAMPLES

    hours = {"casper-v2022": 8, "casper-v2021": 11, "rpc-casper": 0.05}
    for name, limit in hours.items():
        graphs = list(load_traces(SAMPLES[name]))
        stamps = [g.timestamp for g in graphs]
        assert all(s is not None and ANCHOR <= s <= ANCHOR + limit * 3600 for s in stamps), name
        assert len(set(stamps)) > len(stamps) // 2, name  # real, distinct arrival times
    assert all(g.timestamp is None for g in load_traces(SAMPLES["tracellm"]))
