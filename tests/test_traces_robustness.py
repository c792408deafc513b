"""`load_traces` on hostile input: every failure is a TraceFormatError naming the file (or a bad
row dropped and counted), never another exception; a fuzzer of mutated small CSV files checks it."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracegrammar import LoadReport, TraceFormatError, check, load_traces
from tracegrammar.errors import InputError

HEADER = "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"
ROWS = [
    "T1,100,S_5,0,USER,MS_1,http,10\n",
    "T1,102,S_5,0.1,MS_1,MS_2,rpc,3\n",
    "T1,104,S_5,0.2,MS_1,MS_3,db,2\n",
    "T2,200,S_036816397,0,USER,MS_007,http,8\n",
    "T2,201,S_036816397,0.1,MS_007,MS_4,mc,1\n",
]


def _write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def test_truncated_gzip_is_a_trace_format_error(tmp_path):
    body = HEADER + "".join(ROWS) * 200
    whole = gzip.compress(body.encode())
    path = tmp_path / "t.csv.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(TraceFormatError, match=r"t\.csv\.gz: unreadable near line .*truncated"):
        list(load_traces(path))


@pytest.mark.parametrize("bad", ["inf", "nan", "-inf", "1e999", "NaN"])
@pytest.mark.parametrize("column", ["timestamp", "rt"])
def test_non_finite_number_drops_the_row_not_the_file(tmp_path, bad, column):
    rows = list(ROWS)
    fields = rows[2].rstrip("\n").split(",")
    fields[1 if column == "timestamp" else 7] = bad
    rows[2] = ",".join(fields) + "\n"
    report = LoadReport()
    graphs = list(load_traces(_write(tmp_path / "t.csv", HEADER + "".join(rows)), report=report))
    assert report.dropped["non_finite_time"] == 1
    assert sorted(g.num_edges for g in graphs) == [2, 2]  # T1 without its bad call, T2 whole


def test_non_finite_tracellm_time_drops_the_row(tmp_path):
    huge = "9" * 400  # float() reads it as inf
    text = (
        "[GENERATE GRAPH]id:S_1\n<edges>\n"
        "(source is USER, destination is MS_1, type is http, edge_id is 0, "
        "communication starts at 0 milliseconds, communication finishes at 9 milliseconds)\n"
        "(source is MS_1, destination is MS_2, type is rpc, edge_id is 0.1, "
        f"communication starts at 1 milliseconds, communication finishes at {huge} milliseconds)\n"
        "</edges>\n"
    )
    report = LoadReport()
    graphs = list(load_traces(_write(tmp_path / "t.txt", text), report=report))
    assert report.dropped["non_finite_time"] == 1 and [g.num_edges for g in graphs] == [1]


def test_invalid_utf8_late_in_a_file(tmp_path):
    body = (HEADER + "".join(ROWS) * 2000).encode() + b"T9,1,S_1,0,USER,MS_\xff\xfe,http,1\n"
    path = tmp_path / "late.csv"
    path.write_bytes(body)
    with pytest.raises(TraceFormatError, match=r"late\.csv: unreadable near line \d+: not UTF-8"):
        list(load_traces(path))


def test_three_thousand_deep_trace(tmp_path):
    depth = 3000
    rows, rid = [], "0"
    for k in range(depth):
        um = "USER" if k == 0 else f"MS_{k}"
        rows.append(f"T1,{100 + k},S_1,{rid},{um},MS_{k + 1},rpc,{2 * (depth - k)}\n")
        rid += ".1"
    graphs = list(load_traces(_write(tmp_path / "deep.csv", HEADER + "".join(rows))))
    assert len(graphs) == 1 and graphs[0].depth == depth and check(graphs[0]) == []


def test_byte_order_mark(tmp_path):
    for name in ("bom.csv", "bom.csv.gz"):
        graphs = list(load_traces(_write(tmp_path / name, "\ufeff" + HEADER + "".join(ROWS))))
        assert sorted(g.num_edges for g in graphs) == [2, 3]


def test_empty_path_never_scans_the_current_directory(tmp_path, monkeypatch):
    _write(tmp_path / "here.csv", HEADER + "".join(ROWS))
    monkeypatch.chdir(tmp_path)
    for empty in ("", " "):
        with pytest.raises(TraceFormatError, match="empty path"):
            load_traces(empty)


@pytest.mark.parametrize("idle", [-5, -1, 1.5, True, "10"])
def test_bad_idle_rows_is_refused(tmp_path, idle):
    path = _write(tmp_path / "t.csv", HEADER + "".join(ROWS))
    with pytest.raises(InputError, match="idle_rows must be an integer >= 0"):
        load_traces(path, idle_rows=idle)


def test_leading_zero_ids_are_normalised_by_the_loader(tmp_path):
    graphs = list(load_traces(_write(tmp_path / "t.csv", HEADER + "".join(ROWS))))
    assert {g.service for g in graphs} == {"S_5", "S_36816397"}
    assert any(e.destination == "MS_7" for g in graphs for e in g.edges)


# ------------------------------------------------------------------------------------------------
# the fuzzer
# ------------------------------------------------------------------------------------------------

CELLS = ["", "inf", "nan", "-1", "0", "1e999", "-0.5", "UNKNOWN", "(?)", "USER", "S_", "MS_0",
         "0.1.1", "0..1", "http", "db", '"', '"a,b"', "\x00", "é", "9" * 40, "x" * 300]  # fmt: skip
BYTES = [b"\xff", b"\xc3", b"\x00", b"\r", b"\n", b",", b'"', b"\xef\xbb\xbf", b"\x1f\x8b"]


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, bytes]:
    lines = [HEADER, *draw(st.lists(st.sampled_from(ROWS), min_size=0, max_size=8))]
    for _ in range(draw(st.integers(0, 4))):  # replace cells
        i = draw(st.integers(0, len(lines) - 1))
        fields = lines[i].rstrip("\n").split(",")
        j = draw(st.integers(0, len(fields) - 1))
        fields[j] = draw(st.sampled_from(CELLS) | st.text(max_size=6))
        if draw(st.booleans()) and len(fields) > 1:
            del fields[draw(st.integers(0, len(fields) - 1))]
        lines[i] = ",".join(fields) + "\n"
    data = "".join(lines).encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 3))):  # raw byte damage
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(BYTES)) + data[at:]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    suffix = draw(st.sampled_from([".csv", ".csv.gz", ".txt"]))
    if suffix == ".csv.gz":
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
    return suffix, data


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_files())
def test_fuzzed_files_give_valid_graphs_or_a_trace_format_error(tmp_path, case):
    suffix, data = case
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    try:
        graphs = list(load_traces(path))
    except TraceFormatError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    finally:
        os.unlink(path)
    assert all(check(g) == [] for g in graphs)
