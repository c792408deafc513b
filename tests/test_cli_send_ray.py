"""The command-line wiring of issue 17: `send`, `export --split`, and `generate`'s `--ray`,
`--workers`, `--send` and `--rate` refusals (one line, exit 2, before any model)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tracegrammar.cli import main
from tracegrammar.io import graph_to_dict
from tracegrammar.types import CallGraph, Edge

from .test_exports_send import GRAPHS, closed_port, http_receiver, received_spans  # noqa: F401


@pytest.fixture
def graphs_file(tmp_path):
    path = tmp_path / "graphs.jsonl"
    bad = {"service": "S_3", "edges": [], "valid": False, "text": "<layer"}
    lines = [graph_to_dict(g, valid=True) for g in GRAPHS] + [bad]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_send_delivers_the_valid_graphs_and_says_so(graphs_file, http_receiver, capsys):  # noqa: F811
    endpoint, received = http_receiver
    assert main(["send", str(graphs_file), "--endpoint", endpoint, "--rate", "1000/s"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sent 2 traces (5 spans)") and "failed" not in out
    assert len(received_spans(received)) == 5


def test_send_to_an_unreachable_endpoint_is_one_line_exit_2(graphs_file, capsys):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    argv = ["send", str(graphs_file), "--endpoint", endpoint, "--retries", "0", "--timeout", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and endpoint in err[0]
    assert graphs_file.read_text().count("\n") == 3  # the file is untouched


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--ray", "--workers", "0"], ["--workers", "0"]),
        (["--ray", "--actors-per-gpu", "0"], ["--actors-per-gpu", "0"]),
        (["--send", "ftp://127.0.0.1:1"], ["--send", "ftp://"]),
        (["--send", "http://127.0.0.1:1", "--format", "otlp-json"], ["--send", "jsonl"]),
        (["--rate", "fast"], ["--rate", "fast"]),
    ],
)
def test_generate_refuses_bad_ray_and_send_flags(tmp_path, capsys, argv, words):
    base = ["generate", "--service", "S_1", "--num-edges", "2", "--depth", "2"]
    assert main([*base, *argv, "--out", str(tmp_path / "out/")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(w in err for w in words)


def test_generate_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    argv = ["generate", "--service", "S_1", "--ray", "--out", str(tmp_path / "out/")]
    assert main(argv) == 2
    assert "pip install 'tracegrammar[ray]'" in capsys.readouterr().err


def test_export_split_writes_one_zipkin_file_per_trace(graphs_file, tmp_path):
    out = tmp_path / "zipkin"
    argv = ["export", str(graphs_file), "--format", "zipkin-json", "--split", "--out", str(out)]
    assert main(argv) == 0
    files = sorted(out.iterdir())
    assert len(files) == 3  # export reads every record: the empty one is a trace with no span
    first = json.loads(files[0].read_text())
    assert len({s["traceId"] for s in first}) == 1 and len(first) == 4


def test_export_split_is_for_zipkin_only(graphs_file, tmp_path, capsys):
    argv = [
        "export",
        str(graphs_file),
        "--format",
        "jaeger-json",
        "--split",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "--split" in capsys.readouterr().err


def test_a_single_graph_file_also_works(tmp_path, http_receiver):  # noqa: F811
    endpoint, received = http_receiver
    path = tmp_path / "one.jsonl"
    path.write_text(
        json.dumps(graph_to_dict(CallGraph("S_1", (Edge("0", "USER", "MS_1", "http", 0, 5),))))
        + "\n"
    )
    assert (
        main(["send", str(path), "--endpoint", endpoint + "/v1/traces", "--protocol", "http"]) == 0
    )
    assert len(received_spans(received)) == 1
