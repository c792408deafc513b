"""Absolute times: graphs stamped with their arrival time, kept through JSON Lines, the Alibaba
CSV samples and every export (`timestamp`, `--start`)."""

from __future__ import annotations

import json

import pytest

from tracegrammar.errors import InputError, TraceFormatError
from tracegrammar.io import graph_from_dict, graph_to_dict, read_jsonl, write_jsonl
from tracegrammar.types import CallGraph, Edge

from .test_exports_send import http_receiver, received_spans  # noqa: F401

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


# ---------------------------------------------------------------------------------------------
# Exports: a stamped graph is placed at its timestamp; `base_epoch_ns` / `--start` moves it
# ---------------------------------------------------------------------------------------------

NS = 1_000_000_000


def ns(ts: float) -> int:
    """Epoch ns of epoch seconds, to the ms (what exports keep)."""
    return round(ts * 1000) * 1_000_000


def _root_starts_ns(graphs, fmt: str, base: int | None = None) -> list[int]:
    """Each graph's root start, in graph order, as the export in `fmt` writes it (ns)."""
    from tracegrammar.exports import render

    text = render(graphs, fmt, base_epoch_ns=base)
    if fmt == "zipkin-json":
        return [s["timestamp"] * 1000 for s in json.loads(text) if "parentId" not in s]
    if fmt == "jaeger-json":
        return [t["spans"][0]["startTime"] * 1000 for t in json.loads(text)["data"]]
    if fmt == "otlp-json":
        by_trace = {}  # trace ids in graph order: the root span of each trace
        for rs in json.loads(text)["resourceSpans"]:
            for s in rs["scopeSpans"][0]["spans"]:
                if not s.get("parentSpanId"):
                    by_trace[s["traceId"]] = int(s["startTimeUnixNano"])
        from tracegrammar.exports._spans import trace_id

        return [by_trace[trace_id(g, n)] for n, g in enumerate(graphs)]
    if fmt == "alibaba-csv":
        rows = text.splitlines()[1:]
        firsts: dict[str, int] = {}
        for row in rows:
            cells = row.split(",")
            firsts.setdefault(cells[1], int(cells[0]) * 1_000_000)  # the root row comes first
        return list(firsts.values())
    if fmt == "jsonl":
        return [
            round(graph_from_dict(json.loads(line)).timestamp * 1000) * 1_000_000
            for line in text.splitlines()
        ]
    raise AssertionError(fmt)


TRACE_FORMATS = ("otlp-json", "jaeger-json", "zipkin-json", "alibaba-csv")


@pytest.mark.parametrize("fmt", TRACE_FORMATS)
def test_stamped_graphs_start_at_their_timestamp(fmt):
    graphs = [stamped(T + 0.25), stamped(T + 3600.5, "S_2")]
    assert _root_starts_ns(graphs, fmt) == [ns(T + 0.25), ns(T + 3600.5)]


@pytest.mark.parametrize("fmt", TRACE_FORMATS)
def test_graphs_without_timestamps_keep_the_2024_anchor(fmt):
    from tracegrammar.exports import DEFAULT_BASE_EPOCH_NS, render

    assert _root_starts_ns([PLAIN, stamped(T)], fmt) == [DEFAULT_BASE_EPOCH_NS, ns(T)]
    # today's output, byte for byte: no timestamp, no base = the default base
    assert render([PLAIN], fmt) == render([PLAIN], fmt, base_epoch_ns=DEFAULT_BASE_EPOCH_NS)


@pytest.mark.parametrize("fmt", (*TRACE_FORMATS, "jsonl"))
def test_a_start_moves_the_earliest_graph_and_keeps_offsets(fmt):
    start = 1_900_000_000_500 * 1_000_000
    graphs = [stamped(T + 10), PLAIN, stamped(T + 2.5, "S_2")]  # the earliest is not the first
    assert _root_starts_ns(graphs, fmt, start) == [start + 7_500_000_000, start, start]


def test_calls_keep_their_offsets_from_the_root():
    from tracegrammar.exports import render

    spans = json.loads(render([stamped(T)], "zipkin-json"))
    assert sorted(s["timestamp"] for s in spans) == [ns(T + d) // 1000 for d in (0, 0.002, 0.010)]


def test_spans_at_the_graph_timestamp_in_every_export():
    """Round trip: OTLP, Zipkin, Jaeger start times and the CSV's reloaded timestamp equal the
    graph's timestamp."""
    from tracegrammar.exports import render

    graphs = [stamped(T + 0.125), stamped(T + 60, "S_2")]
    want = [g.timestamp for g in graphs]
    for fmt in TRACE_FORMATS:
        assert _root_starts_ns(graphs, fmt) == [ns(t) for t in want], fmt
    # jsonl keeps it as text
    lines = render(graphs, "jsonl").splitlines()
    assert [json.loads(x)["timestamp"] for x in lines] == [
        "2025-03-01T12:00:00.125Z",
        "2025-03-01T12:01:00.000Z",
    ]


def test_csv_export_loads_back_at_the_same_times(tmp_path):
    from tracegrammar import load_traces
    from tracegrammar.exports import write

    graphs = [stamped(T + 0.125), PLAIN, stamped(T + 60, "S_2")]
    write(graphs, tmp_path / "g.csv", "alibaba-csv")
    back = list(load_traces(tmp_path / "g.csv"))
    assert back == graphs
    assert [g.timestamp for g in back] == [T + 0.125, 1_704_067_200, T + 60]


def test_real_sample_round_trips_through_csv(shared_data, tmp_path):
    from tracegrammar import load_traces
    from tracegrammar.exports import write

    from .conftest import SAMPLES

    real = list(load_traces(SAMPLES["casper-v2022"]))
    write(real, tmp_path / "g.csv", "alibaba-csv")
    back = list(load_traces(tmp_path / "g.csv"))
    assert back == real
    assert [round(g.timestamp, 3) for g in back] == [round(g.timestamp, 3) for g in real]


def test_zipkin_split_uses_the_same_placements(tmp_path):
    from tracegrammar.exports import render
    from tracegrammar.exports.zipkin import write_zipkin_split

    graphs = [stamped(T), PLAIN]
    for base in (None, 2_000_000_000 * NS):
        paths = write_zipkin_split(graphs, tmp_path / str(base), base)
        split = [s for p in paths for s in json.loads(p.read_text())]
        assert split == json.loads(render(graphs, "zipkin-json", base_epoch_ns=base))


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_a_bad_base_is_refused(bad):
    from tracegrammar.exports import render

    with pytest.raises(InputError, match="base_epoch_ns"):
        render([stamped(T)], "zipkin-json", base_epoch_ns=bad)


# ---------------------------------------------------------------------------------------------
# CLI: export --start, generate --start
# ---------------------------------------------------------------------------------------------


def test_export_start_flag(tmp_path, capsys):
    from tracegrammar.cli import main

    src = tmp_path / "g.jsonl"
    write_jsonl([stamped(T), stamped(T + 1.5, "S_2")], src)
    out = tmp_path / "z.json"
    assert main(["export", str(src), "--format", "zipkin-json", "--out", str(out)]) == 0
    roots = [s["timestamp"] for s in json.loads(out.read_text()) if "parentId" not in s]
    assert roots == [ns(T) // 1000, ns(T + 1.5) // 1000]
    args = ["export", str(src), "--format", "zipkin-json", "--out", str(out)]
    assert main([*args, "--start", "2030-01-01T00:00:00Z"]) == 0
    roots = [s["timestamp"] for s in json.loads(out.read_text()) if "parentId" not in s]
    assert roots == [1_893_456_000_000_000, 1_893_456_001_500_000]
    out2 = tmp_path / "g2.jsonl"
    assert (
        main(["export", str(src), "--format", "jsonl", "--out", str(out2), "--start", "now"]) == 0
    )
    now = [g.timestamp for g in read_jsonl(out2)]
    assert abs(now[0] - __import__("time").time()) < 600 and now[1] - now[0] == pytest.approx(1.5)


RUNNER = """
import contextlib, io, json, sys
from tracegrammar.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    out.append([code, err.getvalue().splitlines(), "torch" in sys.modules])
print(json.dumps(out))
"""


def test_bad_start_is_refused_in_one_line_before_torch(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "g.jsonl"
    write_jsonl([stamped(T)], src)
    out = str(tmp_path / "o.json")
    gen = ["generate", "--service", "S_1", "--out", out]
    cases = [
        (["export", str(src), "--format", "otlp-json", "--out", out, "--start", "soon"], "'soon'"),
        ([*gen, "--start", "2024-13-01"], "'2024-13-01'"),
        ([*gen, "--start", "1960-01-01T00:00:00Z"], "after 1970"),
        ([*gen, "--start", ""], "''"),
    ]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps([argv for argv, _ in cases])],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (argv, needle), (code, err, torch_loaded) in zip(
        cases, json.loads(proc.stdout), strict=True
    ):
        assert code == 2, (argv, err)
        assert len(err) == 1 and "--start" in err[0] and needle in err[0], (argv, err)
        assert not torch_loaded, argv
    assert not Path(out).exists()


def test_generate_start_stamps_and_places_graphs(tiny_model_dir, tmp_path):
    from tracegrammar.cli import main

    base = ["generate", "--model", str(tiny_model_dir), "--adapter", "none", "--seed", "3"]
    req = ["--service", "S_5", "--num-edges", "3", "--depth", "2", "-n", "2"]
    plain, timed = tmp_path / "plain.jsonl", tmp_path / "timed.jsonl"
    assert main([*base, *req, "--out", str(plain)]) == 0
    assert main([*base, *req, "--out", str(timed), "--start", "2030-01-01T00:00:00Z"]) == 0
    assert all(g.timestamp is None for g in read_jsonl(plain))
    stamped_back = list(read_jsonl(timed))
    assert stamped_back == list(read_jsonl(plain))  # same seed, same graphs
    assert [g.timestamp for g in stamped_back] == [1_893_456_000, 1_893_456_000]
    csv = tmp_path / "g.csv"
    assert (
        main([*base, *req, "--out", str(csv), "--format", "alibaba-csv", "--start", "2030-01-01"])
        == 0
    )
    from tracegrammar import load_traces

    assert [g.timestamp for g in load_traces(csv)] == [1_893_456_000, 1_893_456_000]


def test_generate_send_starts_at_start(tiny_model_dir, tmp_path, http_receiver):  # noqa: F811
    pytest.importorskip("opentelemetry.sdk")
    from tracegrammar.cli import main

    endpoint, received = http_receiver
    argv = ["generate", "--model", str(tiny_model_dir), "--adapter", "none", "--seed", "3"]
    argv += [
        "--service",
        "S_5",
        "--num-edges",
        "2",
        "--depth",
        "2",
        "--out",
        str(tmp_path / "g.jsonl"),
    ]
    assert main([*argv, "--send", endpoint, "--start", "2030-01-01T00:00:00.250Z"]) == 0
    spans = [s for s, _ in received_spans(received).values()]
    assert len(spans) == 2
    root = next(s for s in spans if not s.parent_span_id)
    assert root.start_time_unix_nano == 1_893_456_000_250_000_000
