"""Cost of generation on the default model, measured side by side in one run:

- constrained with forced-token spans (the default), constrained feeding forced tokens one per
  forward pass, and unconstrained sampling, on the same prompts and seeds;
- per mode: forward passes and wall time per valid graph, share of layer tokens forced, engine
  time as a share of decoding time.

    .venv/bin/python bench/generation.py [--graphs 24] [--seeds 0,1] [--adapter none]

Writes bench/results/generation.{json,md}.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA, machine, write
from tracegrammar import Constraints
from tracegrammar.decoding.driver import default_adapter_dir, run_generation
from tracegrammar.decoding.models import load_model
from tracegrammar.training.datasets import recipe_split


def prompts(data: str, count: int, seed: int) -> list[Constraints]:
    val = [g for g in recipe_split(data).validation if 2 <= g.num_edges <= 12]
    picks = random.Random(seed).sample(val, min(count, len(val)))
    return [Constraints(g.service, g.num_edges, g.depth, g.latency) for g in picks]


def _row(runs: list, graphs: int) -> dict:
    valid = sum(g.valid for run in runs for g in run.generations)  # oracle with the constraints
    wall = sum(run.stats.wall_s for run in runs)
    passes = sum(run.stats.forward_passes for run in runs)
    sampled = sum(run.stats.sampled_tokens for run in runs)
    forced = sum(run.stats.forced_tokens for run in runs)
    engine = sum(run.stats.engine_s for run in runs)
    return {
        "graphs": graphs * len(runs),
        "valid": valid,
        "forward_passes": passes,
        "sampled_tokens": sampled,
        "forced_tokens": forced,
        "forced_share": forced / (sampled + forced) if sampled + forced else 0.0,
        "wall_s": wall,
        "engine_s": engine,
        "engine_share": engine / wall if wall else 0.0,
        "forward_passes_per_valid": passes / valid if valid else None,
        "wall_s_per_valid": wall / valid if valid else None,
        "graphs_per_s": graphs * len(runs) / wall,
        "valid_graphs_per_s": valid / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--graphs", type=int, default=24)
    ap.add_argument("--seeds", default="0,1", help="comma-separated; every mode runs every seed")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--adapter", default=None, help="'none' for the bare base")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    adapter = None if args.adapter == "none" else (args.adapter or default_adapter_dir())
    lm = load_model(None, adapter)
    cs = prompts(args.data, args.graphs, 0)
    modes = {
        "constrained": {"constrained": True, "fast_forward": True},
        "constrained, forced tokens one per pass": {"constrained": True, "fast_forward": False},
        "unconstrained": {"constrained": False, "fast_forward": True},
    }
    rows, per_seed = {}, []
    for name, kw in modes.items():
        runs = []
        for seed in seeds:
            run = run_generation(cs, 1, temperature=args.temperature, seed=seed, model=lm, **kw)
            runs.append(run)
            print(name, seed, _row([run], len(cs)), flush=True)
        rows[name] = _row(runs, len(cs))
        rows[name]["per_seed"] = [_row([run], len(cs)) for run in runs]
    for i, seed in enumerate(seeds):
        c, u = rows["constrained"]["per_seed"][i], rows["unconstrained"]["per_seed"][i]
        per_seed.append((seed, c["valid_graphs_per_s"] / u["graphs_per_s"]))
    c, u = rows["constrained"], rows["unconstrained"]
    ratio = c["valid_graphs_per_s"] / u["graphs_per_s"]
    data = {"machine": machine(), "model": lm.name, "adapter": lm.adapter,
            "temperature": args.temperature, "seeds": seeds, "rows": rows,
            "valid_per_s_constrained_over_raw_per_s_unconstrained": ratio,
            "ratio_per_seed": dict(per_seed)}  # fmt: skip
    md = [
        f"# Generation cost ({lm.name}, adapter {lm.adapter}, T={args.temperature}, "
        f"{len(cs)} validation prompts x seeds {seeds})",
        "",
        f"Machine: {data['machine']}",
        "",
        "`.venv/bin/python bench/generation.py` (all modes run here, one after the other).",
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
    seeds_md = ", ".join(f"seed {s}: {r:.2f}" for s, r in per_seed)
    md += [
        "",
        f"Valid graphs per second, constrained: {c['valid_graphs_per_s']:.3f}; raw graphs per second, "
        f"unconstrained: {u['graphs_per_s']:.3f}; ratio {ratio:.2f} (target >= 2; {seeds_md}).",
        f"Forced share of layer tokens (constrained): {c['forced_share']:.0%} (target >= 50%). "
        f"Engine time: {c['engine_share']:.1%} of wall time (target <= 5% of a decoding step).",
        "",
        "An unconstrained graph's cost varies a lot from draw to draw: it ends at its first "
        "unparseable layer, or runs a layer to its token budget when the model does not close it.",
        "",
    ]
    write("generation", data, "\n".join(md))


if __name__ == "__main__":
    main()
