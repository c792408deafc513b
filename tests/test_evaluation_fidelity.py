"""`tracegrammar bench fidelity` end to end on the tiny model: files, resume, tolerance of a cut
record, `--summary-only`; and the plan, producers and option checks on their own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from tracegrammar.cli import main
from tracegrammar.evaluation import fidelity
from tracegrammar.evaluation.fidelity import SOURCES, plan, read_lines
from tracegrammar.types import CallGraph, Edge


def _graph(service: str, n: int) -> CallGraph:
    edges = [Edge("0", "USER", "MS_1", "http", 0, 10)]
    edges += [Edge(f"0.{i}", "MS_1", "MS_2", "rpc", 1, 2) for i in range(1, n)]
    return CallGraph(service, tuple(edges))


def test_plan_repeats_the_validation_prompts_with_one_seed_per_chunk():
    val = [_graph("S_1", 1), _graph("S_2", 2), _graph("S_3", 3)]
    chunks = plan(val, 7, 3)
    assert [(c.index, c.seed, c.start, len(c.prompts)) for c in chunks] == [
        (0, 0, 0, 3), (1, 1, 3, 3), (2, 2, 6, 1),
    ]  # fmt: skip
    flat = [p for c in chunks for p in c.prompts]
    assert [p.service for p in flat] == ["S_1", "S_2", "S_3"] * 2 + ["S_1"]
    assert [p.num_edges for p in flat[:3]] == [1, 2, 3]
    assert {p.service for c in plan(val, 4, 3, max_edges=2) for p in c.prompts} == {"S_1", "S_2"}


def _argv(data: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "bench", "fidelity", "--data", str(data), "--out", str(out), "--graphs", "3",
        "--slow-graphs", "2", "--chunk", "2", "--bootstrap", "10", "--model", str(model),
        "--adapter", "none", "--max-edges", "2", *extra,
    ]  # fmt: skip


@pytest.fixture
def counted(monkeypatch, tiny_model) -> Counter[str]:
    """Count each source's chunks; the session's tiny model instead of a fresh load (its
    engine is then built once for all tests)."""
    calls: Counter[str] = Counter()
    for name, src in SOURCES.items():

        def produce(ctx, chunk, _inner=src.produce, _name=name):
            calls[_name] += 1
            return _inner(ctx, chunk)

        monkeypatch.setitem(SOURCES, name, replace(src, produce=produce))
    monkeypatch.setattr(fidelity.Context, "model", property(lambda self: tiny_model))
    return calls


def test_bench_fidelity_runs_resumes_and_rerenders(
    shared_data, tiny_model_dir, tmp_path, counted, capsys
):
    data, out = shared_data / "alibaba-v2022-tracellm", tmp_path / "fid"
    argv = _argv(data, out, tiny_model_dir)
    assert main(argv) == 0
    # fast sources: 3 graphs = chunks of 2 and 1; slow ones: 2 graphs = one chunk
    assert counted == {
        "default": 2, "global": 1, "novel": 1, "unconstrained": 1, "baseline": 2, "floor": 2
    }  # fmt: skip
    records, cut = read_lines(out / "records.jsonl")
    assert len(records) == 9 and not cut
    assert sum(r["valid"] for r in records if r["source"] == "default") == 3
    assert "chunk 2/2" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sources"]) == list(SOURCES)
    assert summary["sources"]["default"]["metrics"]["validity"]["value"] == 1.0
    md = (out / "summary.md").read_text()
    assert "| KL top-100 |" in md and "## Usefulness" in md and "at most 2 calls" in md

    # resume: the last chunk's record gone (its graphs stay on disk): only that chunk reruns
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    last = json.loads(lines[-1])
    (out / "records.jsonl").write_text("".join(lines[:-1]))
    counted.clear()
    assert main(argv) == 0
    assert counted == {last["source"]: 1}
    graphs = read_lines(out / f"graphs-{last['source']}.jsonl")[0]
    assert len(graphs) == len({(g["chunk"], g["prompt"]) for g in graphs})  # no duplicates

    # a record cut short by a killed run: dropped and its chunk redone
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    cut_source = json.loads(lines[-1])["source"]
    (out / "records.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    counted.clear()
    assert main(argv) == 0
    assert counted == {cut_source: 1}
    assert read_lines(out / "records.jsonl") == (read_lines(out / "records.jsonl")[0], False)
    assert len(read_lines(out / "records.jsonl")[0]) == 9

    # --summary-only: the same summary from the files alone, nothing generated
    before = (out / "summary.md").read_text()
    (out / "summary.md").unlink()
    counted.clear()
    assert main([*argv, "--summary-only"]) == 0
    assert not counted
    assert (out / "summary.md").read_text() == before


def test_floor_and_baseline_chunks_are_seeded(shared_data):
    from tracegrammar.training.datasets import recipe_split

    split = recipe_split(shared_data / "alibaba-v2022-tracellm")
    ctx = fidelity.Context(split, 0.8, None, None)
    chunk = plan(split.validation, 4, 4)[0]
    for produce in (fidelity.floor, fidelity.baseline):
        a, b = produce(ctx, chunk), produce(ctx, chunk)
        assert a.graphs == b.graphs and a.asked == a.accurate == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--graphs", "0"], "--graphs must be >= 1, got 0"),
        (["--sources", "default,nope"], "--sources: unknown source 'nope'"),
        (["--data", "/no/such/folder"], "--data /no/such/folder: no such file or folder"),
    ],
)
def test_bad_options_fail_in_one_line_before_torch(extra, message, tmp_path):
    code = (
        "import sys; from tracegrammar.cli import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules; sys.exit(rc)"
    )
    argv = ["bench", "fidelity", "--out", str(tmp_path / "x"), *extra]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"tracegrammar: error: {message}")
    assert not (tmp_path / "x").exists()


def _call(service: str, dest: str, latency: int) -> CallGraph:
    return CallGraph(service, (Edge("0", "USER", dest, "rpc", 0, latency),))


def test_real_context_and_split_memorization_by_graph_size():
    from tracegrammar.evaluation.scoring import Real, diagnostics, real_context

    train = (
        _call("S_1", "MS_1", 5), _call("S_1", "MS_1", 5), _call("S_1", "MS_2", 7),
        _graph("S_2", 3),
    )  # fmt: skip
    validation = (
        _call("S_1", "MS_3", 5),  # same service and latency as a one-call training graph
        _call("S_1", "MS_9", 6),  # MS_9 is never named in training
        _call("S_3", "MS_1", 5),  # another service
        _graph("S_2", 2),
    )  # fmt: skip
    real = Real(validation, train)
    ctx = real_context(real, ks=(1, 3))
    assert ctx["train_graphs"] == 4 and ctx["train_repeated"] == 0.5  # the two S_1/MS_1/5 copies
    assert (ctx["one_call_prompts"], ctx["one_call_prompts_copyable"]) == (3, 1)
    # destinations in validation: MS_1 x2 (one-call S_3 and the S_2 graph's root), MS_2 x1
    # (S_2's child), MS_3 x1, MS_9 x1: the top-3 is MS_1 and two of the three one-call ties
    top1, top3 = ctx["heavy_hitters"]["1"], ctx["heavy_hitters"]["3"]
    assert top1 == {"in_training": 1.0, "cutoff_calls": 2, "tied_at_cutoff": 1, "tied_in_top": 1}
    assert top3["cutoff_calls"] == 1 and top3["tied_at_cutoff"] == 3 and top3["tied_in_top"] == 2
    assert top3["in_training"] == 2 / 3  # MS_1, MS_2 named in training, MS_3 not; MS_9 cut

    synthetic = [
        _call("S_1", "MS_1", 5),
        _call("S_1", "MS_2", 5),
        _graph("S_2", 3),
        _graph("S_2", 2),
    ]
    diag = diagnostics(real, synthetic)
    assert diag["memorized_one_call"] == 0.5  # the first is a training graph, the second is not
    assert diag["memorized_more_calls"] == 0.5  # the 3-call S_2 graph is a training graph
