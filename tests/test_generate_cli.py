"""`tracegrammar generate`: flags or a request file, every export format, atomic output,
one-line errors."""

from __future__ import annotations

import json

import pytest

from tracegrammar import check, load_traces
from tracegrammar.cli import main
from tracegrammar.exports import EXPORT_FORMATS
from tracegrammar.io import read_jsonl


def _run(tiny_model_dir, *args: str) -> int:
    return main(
        ["generate", "--model", str(tiny_model_dir), "--adapter", "none", "--seed", "3", *args]
    )


def _request(tiny_model_dir, flags: str, out) -> int:
    """`generate` with space-separated flags and `--out out`."""
    return _run(tiny_model_dir, *flags.split(), "--out", str(out))


def test_flags_to_jsonl(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "g.jsonl"
    assert _request(tiny_model_dir, "--service S_5 --num-edges 4 --depth 3 -n 2", out) == 0
    graphs = list(read_jsonl(out))
    assert len(graphs) == 2 and all(
        g.num_edges == 4 and g.depth == 3 and not check(g) for g in graphs
    )
    assert "requested 2, valid 2" in capsys.readouterr().out


def test_request_file_and_directory_output(tiny_model_dir, tmp_path):
    req = tmp_path / "requests.yaml"
    req.write_text(
        "- {service: S_1, num_edges: 3, depth: 2, n: 2}\n- {service: S_2, num_edges: 1, depth: 1}\n"
    )
    assert (
        _run(
            tiny_model_dir,
            "--requests",
            str(req),
            "--format",
            "alibaba-csv",
            "--out",
            str(tmp_path) + "/",
        )
        == 0
    )
    graphs = list(load_traces(tmp_path / "graphs.csv"))
    assert sorted(g.num_edges for g in graphs) == [1, 3, 3]


@pytest.mark.parametrize("fmt", [f for f in EXPORT_FORMATS if f not in {"jsonl", "alibaba-csv"}])
def test_trace_formats(tiny_model_dir, tmp_path, fmt):
    out = tmp_path / "g.json"
    assert (
        _request(tiny_model_dir, f"--service S_5 --num-edges 2 --depth 2 --format {fmt}", out) == 0
    )
    assert json.loads(out.read_text())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- {service: S_1, width: 3}\n", "request 0: unknown constraint field 'width'"),
        ("- {service: S_1, num_edges: 2, depth: 5}\n", "request 0: depth=5 needs at least 5 edges"),
        ("[: not yaml\n", "not valid yaml"),
        ("[]\n", "non-empty list"),
    ],
)
def test_bad_request_files(tiny_model_dir, tmp_path, capsys, content, message):
    req = tmp_path / "r.yaml"
    req.write_text(content)
    out = tmp_path / "never.jsonl"
    assert _run(tiny_model_dir, "--requests", str(req), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
