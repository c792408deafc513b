"""Graphs per second on an accelerator with hundreds of graphs in flight: constrained (valid graphs
per second) and unconstrained (raw graphs per second) side by side, and the share of step time
spent in the engine. For a lent GPU, in one command of a 10-minute device call; never run by the
tests or CI.

    PYTHONUNBUFFERED=1 python3 bench/gpu_throughput.py --data DATA --out "$OUT" \\
        [--model DIR | --random-base DIR] [--adapter DIR|none] [--widths 256,512,1024] \\
        [--dtype bfloat16] [--budget-s 480] [--processes 1,8]

On a lent device: `bash bench/device/prepare.sh` here, then the two calls that
`bench/device/README.md` gives (the second runs `bash bench/device/run.sh throughput`).

- prompts: the validation prompt mix (`recipe_split(DATA).validation`, 2-12 calls, as
  bench/generation.py), drawn with replacement up to the width; T=0.8, top-k 50, one seed;
- width W: W graphs in one `run_generation` call (every layer of a wave shares the passes);
- per width, constrained then unconstrained; a width whose first mode would start after
  `--budget-s` is skipped (both modes or neither), so the command ends inside the device call;
- `--processes K`: the width's graphs split into K contiguous shards (`run_generation(only=)`:
  together exactly the graphs of one process), each run by its own process with its own model
  on the same GPU, pinned to its share of the CPU cores: the engine's per-row work is Python on
  one core, so on a machine with many cores K generators keep one GPU busier than one can. A
  list (`1,8`) measures each K side by side; rates are of the whole (graphs over the wall time
  from the shards' start to the last one's end), the engine's share is of the processes' time;
- writes OUT/gpu_throughput.json and .md after every width (a cut-short run keeps what it did).

What travels to the device is the working tree alone (64 MiB a call): the data (the validation
split is drawn from it), the missing Python packages as wheels, and the model, whose GGUF (98 MB)
travels in two parts over two calls (bench/device/base.py). Where only one call is possible,
`--random-base DIR` builds the same architecture (DIR: its config.json and tokenizer, 4 MB) with
random weights: the same compute per token and the same constraint engine, so graphs per second
and the engine's share are measured as with the trained model; only what the graphs look like
differs (they are still all valid). The prior and the semantic rules still come from the adapter
folder (its prior.json and reference.json), so the layers have the shapes and names of real ones.
Unconstrained, random weights never close a layer and write to the free writer's token budget,
so with `--random-base` compare tokens per second, not raw graphs per second (the ratio column
is then meaningless).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA, machine
from tracegrammar import Constraints
from tracegrammar.benchmark import table_lines
from tracegrammar.decoding.driver import GenerationRun, default_adapter_dir, run_generation
from tracegrammar.decoding.models import LoadedModel, load_model
from tracegrammar.training.datasets import recipe_split


def prompt_mix(data: str, count: int, seed: int) -> list[Constraints]:
    val = [g for g in recipe_split(data).validation if 2 <= g.num_edges <= 12]
    rng = random.Random(seed)
    return [
        Constraints(g.service, g.num_edges, g.depth, g.latency)
        for g in (rng.choice(val) for _ in range(count))
    ]


def stats_of(run: GenerationRun) -> dict[str, Any]:
    s = run.stats
    return {"graphs": len(run.generations), "valid": sum(g.valid for g in run.generations),
            "wall_s": s.wall_s, "engine_s": s.engine_s, "forward_passes": s.forward_passes,
            "sampled_tokens": s.sampled_tokens, "forced_tokens": s.forced_tokens}  # fmt: skip


def row(parts: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """One mode at one width: the shards' stats (one per process) over the whole wall time."""
    total = {k: sum(p[k] for p in parts) for k in parts[0]}
    passes = max(p["forward_passes"] for p in parts)  # the longest shard's steps
    busy = total["wall_s"]  # the processes' time, summed
    return {
        "graphs": total["graphs"],
        "valid": total["valid"],
        "processes": len(parts),
        "wall_s": wall_s,
        "engine_s": total["engine_s"],
        "engine_share": total["engine_s"] / busy if busy else 0.0,
        "forward_passes": total["forward_passes"],
        "step_ms": 1e3 * max(p["wall_s"] for p in parts) / max(passes, 1),
        "engine_ms_per_step": 1e3 * total["engine_s"] / max(total["forward_passes"], 1),
        "sampled_tokens": total["sampled_tokens"],
        "forced_tokens": total["forced_tokens"],
        "graphs_per_s": total["graphs"] / wall_s,
        "tokens_per_s": (total["sampled_tokens"] + total["forced_tokens"]) / wall_s,
        "valid_graphs_per_s": total["valid"] / wall_s,
    }


def shards(count: int, k: int) -> list[range]:
    """`count` requests cut into `k` contiguous ranges of near-equal size (none empty)."""
    k = max(1, min(k, count))
    bounds = [round(i * count / k) for i in range(k + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def load(args: argparse.Namespace, device: str) -> LoadedModel:
    import torch

    adapter = None if args.adapter == "none" else (args.adapter or default_adapter_dir())
    if args.random_base:
        return random_base(Path(args.random_base), adapter, device, args.dtype)
    lm = load_model(args.model, adapter, device=device)
    if device != "cpu":
        lm.model.to(getattr(torch, args.dtype))
    return lm


# -- processes sharing the device -----------------------------------------------------------

_LM: LoadedModel | None = None


def _start_worker(args: argparse.Namespace, device: str, cores: list[list[int]], slot: Any) -> None:
    """A pool process: pinned to its cores, with its own model."""
    global _LM
    import torch

    with slot.get_lock():
        index = slot.value
        slot.value += 1
    mine = cores[index % len(cores)]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))
    _LM = load(args, device)


def _warm(barrier: Any) -> int:
    """Held until every process has one, so each process loads and warms up exactly once."""
    barrier.wait()
    assert _LM is not None
    run_generation([Constraints("S_0", 1, 1)], 1, seed=0, model=_LM)
    return os.getpid()


def _shard(cs: list[Constraints], only: range, args: argparse.Namespace, constrained: bool):
    assert _LM is not None
    run = run_generation(cs, 1, temperature=args.temperature, seed=args.seed, model=_LM,
                         constrained=constrained, only=only)  # fmt: skip
    return stats_of(run)


class Pool:
    """`k` processes, each with a model, pinned to its share of the cores."""

    def __init__(self, k: int, args: argparse.Namespace, device: str) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        cores = cores or list(range(os.cpu_count() or 1))
        per = max(1, len(cores) // k)
        groups = [cores[i * per : (i + 1) * per] or cores for i in range(k)]
        self.k = k
        self.executor = ProcessPoolExecutor(
            k, mp_context=ctx, initializer=_start_worker,
            initargs=(args, device, groups, ctx.Value("i", 0)),
        )  # fmt: skip
        self.manager = ctx.Manager()  # serves the barrier: kept while the pool lives
        barrier = self.manager.Barrier(k)
        pids = [f.result() for f in [self.executor.submit(_warm, barrier) for _ in range(k)]]
        if len(set(pids)) != k:
            raise SystemExit(f"{k} processes asked for, {len(set(pids))} warmed up")

    def run(self, cs: list[Constraints], args: argparse.Namespace, constrained: bool):
        t0 = time.perf_counter()
        futures = [self.executor.submit(_shard, cs, only, args, constrained)
                   for only in shards(len(cs), self.k)]  # fmt: skip
        parts = [f.result() for f in futures]
        return row(parts, time.perf_counter() - t0)

    def close(self) -> None:
        self.executor.shutdown()
        self.manager.shutdown()


def random_base(folder: Path, adapter: str | Path | None, device: str, dtype: str) -> LoadedModel:
    """The base architecture of `folder` with random weights; the adapter folder lends only its
    prior and reference (its LoRA weights would mean nothing on random weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    kind = torch.float32 if device == "cpu" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=kind).to(device).eval()
    return LoadedModel(model, tok, f"random:{folder.name}", str(adapter) if adapter else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--model", default=None, help="base model folder (default: the default base)")
    ap.add_argument(
        "--random-base",
        default=None,
        metavar="DIR",
        help="config.json + tokenizer of the base: same architecture, random weights",
    )
    ap.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float16", "float32"),
        help="weights' dtype on an accelerator (a CPU always uses float32)",
    )
    ap.add_argument("--adapter", default=None, help="'none' for the bare base")
    ap.add_argument("--widths", default="256,512,1024")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--out", default="bench/results/gpu_throughput")
    ap.add_argument(
        "--processes", default="1",
        help="generator processes sharing the device, comma-separated to compare (e.g. 1,8)",
    )  # fmt: skip
    args = ap.parse_args()
    start = time.perf_counter()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = load(args, device)
    widths = [int(w) for w in args.widths.split(",")]
    ks = [int(k) for k in args.processes.split(",")]
    data: dict[str, Any] = {"machine": machine(), "device": device, "model": lm.name,
                            "temperature": args.temperature, "seed": args.seed,
                            "dtype": str(next(lm.model.parameters()).dtype),
                            "setup_s": time.perf_counter() - start, "widths": []}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pools: dict[int, Pool] = {}
    try:
        for k in ks:
            for width in widths:
                if time.perf_counter() - start > args.budget_s:
                    print(f"width {width}, {k} process(es): skipped (budget of "
                          f"{args.budget_s:.0f} s spent)", flush=True)  # fmt: skip
                    continue
                if k > 1 and k not in pools:
                    pools[k] = Pool(k, args, device)
                cs = prompt_mix(args.data, width, args.seed)
                result: dict[str, Any] = {"width": width, "processes": k}
                for name, constrained in (("constrained", True), ("unconstrained", False)):
                    if k == 1:
                        t0 = time.perf_counter()
                        run = run_generation(cs, 1, temperature=args.temperature, seed=args.seed,
                                             model=lm, constrained=constrained)  # fmt: skip
                        result[name] = row([stats_of(run)], time.perf_counter() - t0)
                    else:
                        result[name] = pools[k].run(cs, args, constrained)
                    print(f"width {width}, {k} process(es), {name}: {result[name]}", flush=True)
                c, u = result["constrained"], result["unconstrained"]
                result["valid_per_s_over_raw_per_s"] = c["valid_graphs_per_s"] / u["graphs_per_s"]
                data["widths"].append(result)
                data["total_s"] = time.perf_counter() - start
                (out / "gpu_throughput.json").write_text(json.dumps(data, indent=1) + "\n")
                (out / "gpu_throughput.md").write_text(markdown(data))
    finally:
        for pool in pools.values():
            pool.close()
    print(markdown(data))


def markdown(data: dict[str, Any]) -> str:
    md = [
        f"# Throughput with many graphs in flight ({data['model']}, {data['device']}, "
        f"{data.get('dtype', '')}, T={data['temperature']}, seed {data['seed']})",
        "",
        f"Machine: {data['machine']}",
        "",
    ]
    md += table_lines(
        ["width", "processes", "valid graphs / s (constrained)", "raw graphs / s (unconstrained)", "ratio",
         "validity", "engine share of step time", "step ms (engine ms)",
         "tokens / s (constrained, unconstrained)"],
        [
            [r["width"], r.get("processes", 1), f"{r['constrained']['valid_graphs_per_s']:.1f}",
             f"{r['unconstrained']['graphs_per_s']:.1f}",
             f"{r['valid_per_s_over_raw_per_s']:.2f}",
             f"{r['constrained']['valid']}/{r['constrained']['graphs']}",
             f"{r['constrained']['engine_share']:.1%}",
             f"{r['constrained']['step_ms']:.1f} ({r['constrained']['engine_ms_per_step']:.1f})",
             f"{r['constrained'].get('tokens_per_s', 0):.0f}, "
             f"{r['unconstrained'].get('tokens_per_s', 0):.0f}"]
            for r in data["widths"]
        ],
    )  # fmt: skip
    md += ["", "Targets (issue 18): >= 100 valid graphs / s, engine <= 10% of step time, "
           "ratio >= 3.", ""]  # fmt: skip
    return "\n".join(md)


if __name__ == "__main__":
    main()
