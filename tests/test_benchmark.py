"""The validity benchmark: the papers' grid, resumable records, summary and heat maps."""

from __future__ import annotations

import json

from tracegrammar.cli import main
from tracegrammar.evaluation.grid import grid
from tracegrammar.evaluation.validity_report import summarize


def test_grid_is_the_papers_136_cells():
    cells = grid()
    assert len(cells) == 136
    assert all(c.depth <= c.num_edges for c in cells)
    assert [c for c in cells if c.depth == 1] == [cells[0]] and cells[0].num_edges == 1


def test_bench_validity_runs_and_resumes(tiny_model_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEGRAMMAR_ADAPTER", "none")
    out = tmp_path / "bench"
    argv = [
        "bench", "validity", "--data", str(shared_data / "alibaba-v2022-tracellm"), "--out", str(out),
        "--samples", "2", "--cells", "2", "--max-edges", "4", "--max-depth", "3",
        "--temperatures", "0.8", "--formats", "layer", "--model", str(tiny_model_dir), "--adapter", "none",
    ]  # fmt: skip
    assert main(argv) == 0
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4  # 2 cells x 2 modes
    assert all(
        r["validity"] == 1.0 and r["instruction_accuracy"] == 1.0
        for r in records
        if r["mode"] == "constrained"
    )
    assert main(argv) == 0  # resumes: nothing new
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
    assert (out / "summary.md").read_text().count("| constrained |") == 1
    assert list(out.glob("heatmap_*.png"))
    rows = summarize(records)
    assert {r["mode"] for r in rows} == {"constrained", "unconstrained"}


def _argv(data, out, model, *extra):
    return [
        "bench", "validity", "--data", str(data), "--out", str(out), "--samples", "2",
        "--cells", "3", "--max-edges", "4", "--max-depth", "3", "--temperatures", "0.8",
        "--formats", "layer", "--modes", "constrained", "--model", str(model), "--adapter", "none",
        *extra,
    ]  # fmt: skip


def _outcomes(out):
    keep = ("num_edges", "depth", "mode", "validity", "instruction_accuracy", "sampled_tokens")
    rows = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    return sorted(tuple(r[k] for k in keep) for r in rows)


def test_worker_processes_give_the_same_records(tiny_model_dir, shared_data, tmp_path):
    data = shared_data / "alibaba-v2022-tracellm"
    assert main(_argv(data, tmp_path / "one", tiny_model_dir)) == 0
    assert main(_argv(data, tmp_path / "two", tiny_model_dir, "--workers", "2")) == 0
    assert len(_outcomes(tmp_path / "one")) == 3
    assert _outcomes(tmp_path / "one") == _outcomes(tmp_path / "two")
    assert "2 worker process(es)" in (tmp_path / "two" / "summary.md").read_text()


def test_time_limit_leaves_the_rest_for_a_rerun(tiny_model_dir, shared_data, tmp_path, capsys):
    data = shared_data / "alibaba-v2022-tracellm"
    out = tmp_path / "limited"
    assert main(_argv(data, out, tiny_model_dir, "--time-limit", "1e-9")) == 0
    assert "3 left for a rerun" in capsys.readouterr().out
    assert not (out / "records.jsonl").read_text().strip()
    assert main(_argv(data, out, tiny_model_dir)) == 0  # the rerun does them
    assert len(_outcomes(out)) == 3


def test_only_picks_cells_and_refuses_ones_off_the_grid(capsys):
    from tracegrammar.evaluation.grid import Cell
    from tracegrammar.evaluation.validity import ValidityOptions, plan

    opts = ValidityOptions(max_edges=30, max_depth=6, cells=0, seed=0, temperatures=(0.8,),
                           modes=("constrained",), encodings=("layer",),
                           only=(Cell(14, 6), Cell(3, 2)))  # fmt: skip
    assert [p[0] for p in plan(opts)] == [Cell(3, 2), Cell(14, 6)]
    assert main(["bench", "validity", "--only", "3x7"]) == 2
    assert "3x7 is not in the grid" in capsys.readouterr().err


def test_a_failing_cell_is_reported_and_left_for_a_rerun(
    tiny_model_dir, shared_data, tmp_path, capsys, monkeypatch
):
    import tracegrammar.evaluation.validity as bench

    real_run_cell = bench.run_cell

    def flaky(cell, *args, **kwargs):
        if cell.num_edges == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_run_cell(cell, *args, **kwargs)

    monkeypatch.setattr(bench, "run_cell", flaky)
    data, out = shared_data / "alibaba-v2022-tracellm", tmp_path / "flaky"
    argv = _argv(data, out, tiny_model_dir)
    argv[argv.index("--cells") + 1] = "0"  # all 6 cells of the 4 x 3 grid
    assert main(argv) == 1
    text = capsys.readouterr()
    assert "failed: cell 3x2, T=0.8, constrained, layer: RuntimeError: CUDA out of memory" in (
        text.out + text.err
    )
    assert len(_outcomes(out)) == 4  # 1x1, 2x2, 4x2, 4x3 written; 3x2, 3x3 left for a rerun
    monkeypatch.setattr(bench, "run_cell", real_run_cell)
    assert main(argv) == 0 and len(_outcomes(out)) == 6


def _rec(n, d, mode, validity, wall, samples=10, fmt="layer", t=0.8):
    return {"num_edges": n, "depth": d, "mode": mode, "format": fmt, "temperature": t,
            "samples": samples, "validity": validity, "wall_s": wall}  # fmt: skip


def test_speed_pools_the_cells_run_in_both_modes():
    from tracegrammar.evaluation.validity_report import speed

    records = [
        _rec(2, 2, "constrained", 1.0, 4.0),
        _rec(3, 2, "constrained", 0.5, 6.0),
        _rec(4, 2, "constrained", 1.0, 100.0),  # no unconstrained twin: left out
        _rec(2, 2, "unconstrained", 0.2, 10.0),
        _rec(3, 2, "unconstrained", 0.0, 30.0),
        _rec(2, 2, "constrained", 1.0, 1.0, t=0.2),  # a group with one mode only: no row
    ]
    (row,) = speed(records)
    # constrained: (10 + 5) valid in 10 s; unconstrained: 20 raw graphs in 40 s
    assert (row["format"], row["temperature"], row["cells"], row["max_num_edges"]) == (
        "layer", 0.8, 2, 3,
    )  # fmt: skip
    assert row["constrained_valid_per_s"] == 1.5 and row["unconstrained_raw_per_s"] == 0.5
    assert row["ratio"] == 3.0


def test_summary_only_keeps_the_machine_the_records_ran_on(tmp_path, capsys):
    out = tmp_path / "grid"
    out.mkdir()
    records = [
        {**_rec(2, 2, "constrained", 1.0, 4.0), "instruction_accuracy": 1.0,
         "semantic_validity": None, "forward_passes": 8},
        {**_rec(2, 2, "unconstrained", 0.5, 8.0), "instruction_accuracy": 0.1,
         "semantic_validity": None, "forward_passes": 80},
    ]  # fmt: skip
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["bench", "validity", "--out", str(out), "--summary-only"]
    assert main(argv) == 2  # no summary.json: nothing says where the records ran
    assert "no summary.json" in capsys.readouterr().err
    meta = {"model": "m", "machine": "a GPU box", "samples_per_cell": 10, "workers": 4,
            "date": "2026-01-01"}  # fmt: skip
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": []}))
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"] == meta and len(summary["rows"]) == 2
    assert summary["speed"][0]["ratio"] == 2.0  # 2.5 valid/s over 1.25 raw/s
    text = (out / "summary.md").read_text()
    assert "a GPU box" in text and "| layer | 0.8 | 1 (2) | 2.50 | 1.25 | 2.00 |" in text
