"""Loading the real samples in ../shared/data, other formats, and bad input."""

from __future__ import annotations

import gzip
import shutil

import pytest

from tracegrammar import LoadReport, TraceFormatError, check, load_traces
from tracegrammar.encode import parse_layers, parse_tabular, render_layers, render_tabular
from tracegrammar.layers import decompose, reassemble
from tracegrammar.traces import graph_hash

from .conftest import SAMPLES


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_graph_is_valid_or_dropped_with_a_reason(shared_data, name):
    report = LoadReport()
    graphs = list(load_traces(SAMPLES[name], report=report))
    assert graphs, f"{name}: nothing loaded"
    assert report.graphs == len(graphs)
    assert report.traces == len(graphs) + sum(
        n for reason, n in report.dropped.items() if reason not in {"late_row", "malformed_row"}
    )
    for g in graphs:
        assert check(g) == []
        assert parse_tabular(render_tabular(g)) == g
        layers = decompose(g)
        for fmt in ("layer", "layer_instruct"):
            assert parse_layers(render_layers(layers, fmt), fmt) == layers
        assert reassemble(layers) == g


def test_sample_counts_are_stable(shared_data):
    """Known counts for the TraceLLM sample (1089 graphs in the developer portion)."""
    report = LoadReport()
    graphs = list(load_traces(SAMPLES["tracellm"], report=report))
    assert report.traces == 1089
    assert len(graphs) + sum(report.dropped.values()) == 1089


def test_gzip_and_directory(shared_data, tmp_path):
    src = SAMPLES["casper-v2022"]
    with open(src, "rb") as fin, gzip.open(tmp_path / "x.csv.gz", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    plain = list(load_traces(src))
    assert list(load_traces(tmp_path / "x.csv.gz")) == plain
    assert list(load_traces(tmp_path)) == plain


def test_columns_read_by_name(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text(
        "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"
        "T1,100,S_5,0,USER,MS_1,http,10\n"
        "T1,102,S_5,0.1,MS_1,MS_2,rpc,3\n"
    )
    b = tmp_path / "b.csv"
    b.write_text(
        "rt,rpctype,dm,um,rpc_id,service,timestamp,traceid\n"
        "10,http,MS_1,USER,0,S_5,100,T1\n"
        "3,rpc,MS_2,MS_1,0.1,S_5,102,T1\n"
    )
    ga, gb = list(load_traces(a)), list(load_traces(b))
    assert ga == gb and ga[0].num_edges == 2 and ga[0].by_id["0.1"].start == 2


def test_cleaning_steps(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(
        "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"
        # two-sided log of 0.1 (merged), unknown source filled from parent, re-rooted at 0.1
        "T1,100,S_5,0.1,UNKNOWN,MS_1,http,10\n"
        "T1,100,S_5,0.1,UNKNOWN,MS_1,http,10\n"
        "T1,101,S_5,0.1.3,UNKNOWN,MS_2,rpc,3\n"
        "T1,102,S_5,0.1.5,MS_1,UNKNOWN,mc,1\n"
        # two roots: dropped as disconnected
        "T2,0,S_6,0.1,MS_1,MS_2,rpc,1\n"
        "T2,0,S_6,0.2,MS_1,MS_3,rpc,1\n"
        # child outside its parent: dropped
        "T3,0,S_7,0,USER,MS_1,http,5\n"
        "T3,1,S_7,0.1,MS_1,MS_2,rpc,9\n"
    )
    report = LoadReport()
    graphs = list(load_traces(f, report=report))
    assert len(graphs) == 1
    g = graphs[0]
    assert [e.rpc_id for e in g.edges] == ["0", "0.1"]
    assert g.by_id["0"].source == "USER" and g.by_id["0.1"].source == "MS_1"
    assert report.dropped == {"disconnected": 1, "inconsistent_times": 1}
    assert report.repaired["merged_duplicate_row"] == 1
    assert report.repaired["rerooted"] == 1
    assert report.repaired["removed_unknown_leaf"] == 1


def test_streaming_flushes_idle_traces(tmp_path):
    f = tmp_path / "t.csv"
    rows = [f"T{i},{i},S_1,0,USER,MS_{i},http,1" for i in range(50)]
    f.write_text("traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n" + "\n".join(rows) + "\n")
    it = load_traces(f, idle_rows=2)
    first = next(it)  # yielded long before the file ends
    assert first.edges[0].destination == "MS_0"
    assert len(list(it)) == 49


def test_dedupe_uses_a_stable_hash(shared_data):
    report = LoadReport()
    unique = list(load_traces(SAMPLES["rpc-casper"], report=report, dedupe=True))
    assert report.dropped["duplicate_graph"] > 0
    assert len({graph_hash(g) for g in unique}) == len(unique)
    assert graph_hash(unique[0]) == graph_hash(unique[0])  # content-based, not id()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty file"),
        ("a,b,c\n1,2,3\n", "not a call-graph trace"),
        (
            "traceid,timestamp,service,rpc_id,um,dm,rpctype\nT,1,S_1,0,USER,MS_1,http\n",
            "missing column 'rt'",
        ),
    ],
)
def test_bad_files(tmp_path, content, problem):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(TraceFormatError, match=problem) as info:
        list(load_traces(f))
    assert str(f) in str(info.value) and "\n" not in str(info.value)


def test_bad_paths(tmp_path):
    with pytest.raises(TraceFormatError, match="no such file"):
        list(load_traces(tmp_path / "missing.csv"))
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(TraceFormatError, match="no trace files"):
        list(load_traces(tmp_path))
