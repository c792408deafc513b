"""A workload's graphs on Ray actors (`run_workload_distributed`, `workload --ray`): the contexts
are written here, the graphs on a local 2-actor cluster started by the test (the tiny model), and
the result is the single-process workload of the same seed: the same graphs, timestamps and files;
a rerun after a lost shard makes only that shard. The single-process graph phase is seeded chunk
by chunk as the job's shards are (checked in-process, without Ray, across chunk boundaries)."""

from __future__ import annotations

import json

from tracegrammar.cli import main
from tracegrammar.distributed import JobOptions, ShardWorker, plan, run_workload_distributed
from tracegrammar.io import graph_from_dict
from tracegrammar.workloads import graph_requests, run_workload

from .test_distributed_ray import cluster  # noqa: F401

START, END = "2025-03-01T12:00:00Z", "2025-03-01T12:01:00Z"
SEED = 7
KW = dict(max_edges=2, seed=SEED)  # small graphs keep a busy 2-core machine quick


def test_the_graph_phase_is_seeded_as_the_job_shards_are(tiny_model, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(plan, "CHUNK", 2)  # 4 graphs: two chunks, each with its own seed
    run = run_workload(START, END, 4, model=tiny_model, **KW)
    wanted = graph_requests(run.contexts)
    worker = ShardWorker(JobOptions(model=str(tiny_model_dir), adapter=None), model=tiny_model)
    records = []
    for shard in plan.plan_shards(len(wanted), 3):  # shards cross the chunk boundaries
        records += worker.run(plan.chunk_requests(wanted, shard, SEED), SEED, shard).records
    assert [graph_from_dict(r) for r in records] == run.graphs


def test_two_actors_give_the_single_process_workload(cluster, tiny_model, tmp_path):  # noqa: F811
    here = run_workload(START, END, 4, model=tiny_model, **KW)
    out, lines = tmp_path / "shards", []

    def on_ray():
        lines.clear()
        return run_workload_distributed(
            START, END, 4, model=tiny_model, out_dir=out, workers=2, shard_size=2,
            progress=lines.append, **KW,
        )  # fmt: skip

    there = on_ray()
    assert there.stats["workers"] == 2 and there.stats["shards_run"] == 2 and len(lines) == 2
    assert there.contexts == here.contexts and there.graphs == here.graphs
    assert [g.timestamp for g in there.graphs] == [g.timestamp for g in here.graphs]
    (out / "shard-00001.jsonl").unlink()  # as if the job had died before writing it
    again = on_ray()
    assert (again.stats["shards_run"], again.stats["shards_skipped"]) == (1, 1)
    assert again.graphs == here.graphs


def test_workload_ray_writes_the_single_process_files(cluster, tiny_model_dir, tmp_path, capsys):  # noqa: F811
    argv = ["workload", "--start", START, "--end", END, "--num-traces", "2", "--seed", "9",
            "--max-edges", "2", "--model", str(tiny_model_dir), "--adapter", "none",
            "--format", "otlp-json"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--out", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ray"]["shards_run"] == 1 and summary["seed"] == 9
    for name in ("graphs.jsonl", "otlp.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert (tmp_path / "ray" / "shards" / "manifest.json").is_file()
