"""Cost of generation on the default model, measured side by side in one run:

- constrained with forced-token spans (the default), constrained feeding forced tokens one per
  forward pass, and unconstrained sampling, on the same prompts and seeds;
- per mode: forward passes and wall time per valid graph, share of layer tokens forced, engine
  time as a share of decoding time.

    .venv/bin/python bench/generation.py [--graphs 12] [--adapter none]

Writes bench/results/generation.{json,md}.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write
from tracegrammar import Constraints, load_traces
from tracegrammar.decoding.driver import default_adapter_dir, run_generation
from tracegrammar.decoding.models import load_model
from tracegrammar.training.datasets import split_graphs


def prompts(data: str, count: int, seed: int) -> list[Constraints]:
    graphs = list(load_traces(data))
    val = [
        g for g in split_graphs(graphs, fraction=0.1, seed=0).validation if 2 <= g.num_edges <= 12
    ]
    picks = random.Random(seed).sample(val, min(count, len(val)))
    return [Constraints(g.service, g.num_edges, g.depth, g.latency) for g in picks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--graphs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--adapter", default=None, help="'none' for the bare base")
    args = ap.parse_args()
    adapter = None if args.adapter == "none" else (args.adapter or default_adapter_dir())
    lm = load_model(None, adapter)
    cs = prompts(args.data, args.graphs, args.seed)
    modes = {
        "constrained": {"constrained": True, "fast_forward": True},
        "constrained, forced tokens one per pass": {"constrained": True, "fast_forward": False},
        "unconstrained": {"constrained": False, "fast_forward": True},
    }
    rows = {}
    for name, kw in modes.items():
        run = run_generation(cs, 1, temperature=args.temperature, seed=args.seed, model=lm, **kw)
        s = run.stats
        valid = sum(g.valid for g in run.generations)  # valid: oracle with the constraints
        rows[name] = {
            "graphs": len(cs),
            "valid": valid,
            "forward_passes": s.forward_passes,
            "sampled_tokens": s.sampled_tokens,
            "forced_tokens": s.forced_tokens,
            "forced_share": s.forced_share,
            "wall_s": s.wall_s,
            "engine_s": s.engine_s,
            "engine_share": s.engine_s / s.wall_s if s.wall_s else 0.0,
            "forward_passes_per_valid": s.forward_passes / valid if valid else None,
            "wall_s_per_valid": s.wall_s / valid if valid else None,
            "graphs_per_s": len(cs) / s.wall_s,
            "valid_graphs_per_s": valid / s.wall_s,
        }
        print(name, rows[name], flush=True)
    c, u = rows["constrained"], rows["unconstrained"]
    ratio = c["valid_graphs_per_s"] / u["graphs_per_s"]
    data = {"machine": machine(), "model": lm.name, "temperature": args.temperature, "rows": rows,
            "valid_per_s_constrained_over_raw_per_s_unconstrained": ratio}  # fmt: skip
    md = [
        f"# Generation cost ({lm.name}, T={args.temperature}, {len(cs)} validation prompts)",
        "",
        f"Machine: {data['machine']}",
        "",
        "| mode | valid | forward passes / valid | s / valid | forced share | engine share of wall |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        fpv = (
            "-" if r["forward_passes_per_valid"] is None else f"{r['forward_passes_per_valid']:.1f}"
        )
        spv = "-" if r["wall_s_per_valid"] is None else f"{r['wall_s_per_valid']:.2f}"
        share = f"{r['forced_share']:.0%} | {r['engine_share']:.1%}"
        md.append(f"| {name} | {r['valid']}/{r['graphs']} | {fpv} | {spv} | {share} |")
    md += [
        "",
        f"Valid graphs per second, constrained: {c['valid_graphs_per_s']:.3f}; raw graphs per second, "
        f"unconstrained: {u['graphs_per_s']:.3f}; ratio {ratio:.2f} (target >= 2).",
        f"Forced share of layer tokens (constrained): {c['forced_share']:.0%} (target >= 50%). "
        f"Engine time: {c['engine_share']:.1%} of wall time (target <= 5% of a decoding step).",
        "",
    ]
    write("generation", data, "\n".join(md))


if __name__ == "__main__":
    main()
