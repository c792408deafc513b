"""Distributed generation: graphs per second with 1 and 2 Ray actors (one model each) on this
machine, and the shape of the scaling.

    .venv/bin/python bench/distributed.py [--model tiny|default] [--graphs 64] [--workers 1,2]
                                          [--shard-size 16] [--num-edges 6 --depth 3]

Each worker count runs the same job (same requests and seed) into a fresh folder on a local Ray
cluster started for it. Reported per run: the wall time of the whole call (cluster start, model
load and engine build per actor, generation, writing), and the generation time alone (per actor
the sum of its shards' seconds; the job's is the busiest actor's), each as graphs per second.
Every run must write the same records (the check is part of the result). `--model tiny` is the
tests' 2-layer random model: it measures the machinery, not a realistic cost; `default` is the
shipped SmolLM2 + adapter (run by the lead on a quiet machine). On a GPU machine each actor takes
one GPU, so the worker counts are capped at the GPUs. Writes bench/results/distributed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_model
from common import machine, write
from tracegrammar import Constraints
from tracegrammar.distributed import JobOptions, read_records, run_distributed


def options_for(model: str, scratch: Path) -> JobOptions:
    if model == "default":
        return JobOptions()
    from tests.tiny_model import build_tiny_model

    return JobOptions(model=str(build_tiny_model(scratch / "tiny")), adapter=None)


def run_once(requests, options, workers, shard_size, seed, out: Path) -> dict:
    start = time.perf_counter()
    report = run_distributed(
        requests, seed=seed, out_dir=out, workers=workers, options=options,
        shard_size=shard_size, progress=lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    wall = time.perf_counter() - start
    manifest = json.loads((out / "manifest.json").read_text())
    busy: dict[str, float] = {}
    for entry in manifest["shards"]:
        busy[entry["worker"]] = busy.get(entry["worker"], 0.0) + entry["seconds"]
    generation = max(busy.values())
    graphs = report.graphs
    return {
        "workers": report.workers,
        "gpus_per_worker": report.gpus_per_worker,
        "graphs": graphs,
        "shards": report.shards,
        "valid": report.valid,
        "wall_s": round(wall, 2),
        "graphs_per_s_wall": round(graphs / wall, 3),
        "generation_s": round(generation, 2),
        "graphs_per_s_generation": round(graphs / generation, 3),
        "actor_busy_s": {k: round(v, 2) for k, v in sorted(busy.items())},
        "records": list(read_records(out)),
    }


def markdown(args, rows, same: bool, info: dict) -> str:
    base = rows[0]["graphs_per_s_generation"]
    lines = [
        "# Distributed generation (Ray actors, one model each)",
        "",
        f"Model `{args.model}`; {args.graphs} graphs of {args.num_edges} calls, depth "
        f"{args.depth}; shards of {args.shard_size}; seed {args.seed}. Machine: {info['cpu']}, "
        f"{info['cores']} cores, CUDA {info['cuda']}; {info['date']}.",
        "",
        "| actors | wall s | graphs/s (wall) | generation s (busiest actor) | graphs/s (generation) "
        "| speed-up (generation) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['wall_s']} | {r['graphs_per_s_wall']} | {r['generation_s']} "
            f"| {r['graphs_per_s_generation']} | {r['graphs_per_s_generation'] / base:.2f} |"
        )
    lines += [
        "",
        f"Same records from every run: **{'yes' if same else 'NO'}**.",
        "",
        f"Load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in info['load'])} "
        f"on {info['cores']} cores"
        + (
            ": the machine was busy with other work, so these numbers say little about scaling."
            if info["load"][1] > (info["cores"] or 1)
            else "."
        ),
        "",
        "Wall time includes starting the local cluster and, per actor, loading the model and "
        "building its constraint engine; generation time is the busiest actor's shard time. "
        "Actors on one machine share its cores: with 2 cores, 2 actors can at best double the "
        "generation rate, and less when anything else runs (see `load` in the JSON).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("tiny", "default"), default="tiny")
    p.add_argument("--graphs", type=int, default=64)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument("--num-edges", type=int, default=6)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="distributed", help="results file name")
    args = p.parse_args()
    # a local cluster on loopback (Ray gives a Linux node its network address); read when
    # `run_distributed` first imports ray
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    requests = [Constraints("S_32048416", args.num_edges, args.depth)] * args.graphs
    rows = []
    with tempfile.TemporaryDirectory(prefix="tg-bench-distributed-") as tmp:
        scratch = Path(tmp)
        options = options_for(args.model, scratch)
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append(run_once(requests, options, workers, args.shard_size, args.seed,
                                 scratch / f"w{workers}"))  # fmt: skip
    same = all(r["records"] == rows[0]["records"] for r in rows)
    for r in rows:
        del r["records"]
    info = machine()
    info["load"] = list(os.getloadavg())
    data = {"args": vars(args), "machine": info, "runs": rows, "same_records": same}
    write(args.name, data, markdown(args, rows, same, info))


if __name__ == "__main__":
    main()
