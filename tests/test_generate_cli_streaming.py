"""`tracegrammar generate` in chunks: each chunk's graphs reach the output as it ends, Ctrl-C keeps
the finished ones (exit 130, the message says how many), a log gets plain progress lines per
graph counted across the chunks, and the same seed gives the same file."""

from __future__ import annotations

import pytest

from tracegrammar import check
from tracegrammar.cli import generate as gc
from tracegrammar.cli import main
from tracegrammar.io import read_jsonl


def _generate(tiny_model_dir, out, n: int, *extra: str) -> int:
    args = ["generate", "--model", str(tiny_model_dir), "--adapter", "none", "--seed", "5"]
    args += ["--service", "S_3", "--num-edges", "2", "--depth", "2", "-n", str(n), *extra]
    return main([*args, "--out", str(out)])


@pytest.fixture
def chunk_of_two(monkeypatch):
    monkeypatch.setattr(gc, "CHUNK", 2)


def test_chunks_are_deterministic_distinct_and_logged(
    tiny_model_dir, tmp_path, capsys, chunk_of_two
):
    a, b, first = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "first.jsonl"
    assert _generate(tiny_model_dir, a, 5) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("generate: ")]
    # one count across the chunks, a line per graph (each is 20% of the run; stderr is no tty)
    assert [line.split(" graphs")[0] for line in lines] == [f"generate: {i}/5" for i in range(1, 6)]
    assert lines[-1].startswith("generate: 5/5 graphs (100%), ") and lines[-1].endswith("ETA 0 s")
    assert _generate(tiny_model_dir, b, 5) == 0
    assert a.read_bytes() == b.read_bytes()  # same seed, same file
    graphs = list(read_jsonl(a))
    assert len(graphs) == 5 and all(check(g) == [] and g.num_edges == 2 for g in graphs)
    assert _generate(tiny_model_dir, first, 2) == 0
    assert list(read_jsonl(first)) == graphs[:2]  # the first chunk is what a small run gives
    assert len({tuple(g.edges) for g in graphs}) > 1  # later chunks are not copies of the first


def _interrupt_on_call(monkeypatch, call: int) -> None:
    real = gc._generate_chunk
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gc, "_generate_chunk", flaky)


@pytest.mark.parametrize("fmt", ["jsonl", "zipkin-json"])
def test_ctrl_c_keeps_finished_graphs(
    tiny_model_dir, tmp_path, capsys, monkeypatch, chunk_of_two, fmt
):
    _interrupt_on_call(monkeypatch, 2)
    out = tmp_path / "g.out"
    assert _generate(tiny_model_dir, out, 5, "--format", fmt) == 130
    err = capsys.readouterr().err
    assert "interrupted: kept the 2 finished graphs of 5 in" in err and str(out) in err
    if fmt == "jsonl":
        assert len(list(read_jsonl(out))) == 2
    else:
        assert out.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.out"]  # no temporaries left


def test_ctrl_c_before_any_graph_leaves_the_target_alone(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    _interrupt_on_call(monkeypatch, 1)
    out = tmp_path / "g.jsonl"
    out.write_text("earlier run\n")
    assert _generate(tiny_model_dir, out, 3) == 130
    assert "interrupted" in capsys.readouterr().err
    assert out.read_text() == "earlier run\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "g.jsonl"
    ]
