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
