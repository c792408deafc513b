"""Pictures of call graphs: PNG and SVG are written whole, bad suffixes fail before any work, and
the `draw` command reads JSON Lines or traces and fails in one line."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tracegrammar.cli.export import register_draw
from tracegrammar.exports.draw import draw
from tracegrammar.io import write_jsonl
from tracegrammar.types import USER, CallGraph, Edge

from .strategies import call_graphs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRAPH = CallGraph(
    "S_3",
    (
        Edge("0", USER, "MS_1", "http", 0, 50),
        Edge("0.1", "MS_1", "a" * 64, "rpc", 4, 20),
        Edge("0.1.1", "a" * 64, "MS_9", "db", 6, 6),
        Edge("0.2", "MS_1", "MS_2", "mc", 22, 30),
    ),
)


def test_png_and_svg_are_written(tmp_path):
    draw(GRAPH, tmp_path / "g.png")
    draw(GRAPH, tmp_path / "g.SVG")
    assert (tmp_path / "g.png").read_bytes().startswith(PNG_MAGIC)
    svg = (tmp_path / "g.SVG").read_text()
    assert "<svg" in svg and svg.rstrip().endswith("</svg>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.SVG", "g.png"]


def test_unsupported_suffix_is_refused(tmp_path):
    for name in ("g.jpg", "g"):
        with pytest.raises(ValueError, match="suffix"):
            draw(GRAPH, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_graphs(max_edges=80))
def test_any_valid_graph_draws(graph):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.png"
        draw(graph, path)
        assert path.read_bytes().startswith(PNG_MAGIC)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register_draw(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def test_draw_command_reads_jsonl_and_traces(tmp_path, capsys):
    other = CallGraph("S_4", (Edge("0", USER, "MS_5", "rpc", 0, 3),))
    write_jsonl([GRAPH, other], tmp_path / "g.jsonl")
    assert _run([str(tmp_path / "g.jsonl"), "--index", "1", "--out", str(tmp_path / "a.svg")]) == 0
    assert "S_4" in (tmp_path / "a.svg").read_text() and "a.svg" in capsys.readouterr().out
    (tmp_path / "t.csv").write_text(
        "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"
        "T1,100,S_5,0,USER,MS_1,http,10\n"
        "T1,102,S_5,0.1,MS_1,MS_2,rpc,3\n"
    )
    assert _run([str(tmp_path / "t.csv"), "--out", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--index", "5", "--out", "x.png"], "no graph with index 5"),
        (["--index", "-1", "--out", "x.png"], "--index"),
        (["--out", "x.gif"], "suffix"),
    ],
)
def test_draw_command_errors_are_one_line(tmp_path, extra, message):
    write_jsonl([GRAPH], tmp_path / "g.jsonl")
    extra = [str(tmp_path / a) if a.startswith("x.") else a for a in extra]
    with pytest.raises(ValueError, match=message) as info:
        _run([str(tmp_path / "g.jsonl"), *extra])
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("x.*"))


def test_oversized_graphs_are_refused_before_drawing(tmp_path):
    from tracegrammar import CallGraph, Edge
    from tracegrammar.errors import UsageError
    from tracegrammar.exports.draw import MAX_DRAW_CALLS, MAX_DRAW_DEPTH, draw

    wide = CallGraph(
        "S_1",
        (
            Edge("0", "USER", "MS_1", "http", 0, 9),
            *(Edge(f"0.{k}", "MS_1", "MS_2", "rpc", 1, 2) for k in range(1, MAX_DRAW_CALLS + 1)),
        ),
    )
    ids = ["0" + ".1" * k for k in range(MAX_DRAW_DEPTH + 1)]
    deep = CallGraph(
        "S_1", tuple(Edge(r, "USER" if r == "0" else "MS_1", "MS_1", "rpc", 0, 9) for r in ids)
    )
    for graph, what in ((wide, "calls;"), (deep, "calls deep;")):
        out = tmp_path / "g.png"
        with pytest.raises(UsageError, match=f"g.png: the graph .* {what}"):
            draw(graph, out)
        assert not out.exists()
