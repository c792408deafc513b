"""Cost of generation on the default model, measured side by side in one run:

- constrained with forced-token spans (the default: semantic rules from the adapter's call table),
  the same with novel calls allowed (no call table: the cost of the semantic rules), constrained
  feeding forced tokens one per forward pass, and unconstrained sampling, on the same prompts and
  seeds;
- at several batch widths: the prompts go to `run_generation` in consecutive groups of B (B=24:
  all at once), since how wide a batch is decides what a forced token saves on a CPU;
- per mode: forward passes and wall time per valid graph, share of layer tokens forced, engine
  time as a share of decoding time; per batch width, valid graphs per second constrained over raw
  graphs per second unconstrained.

    .venv/bin/python bench/generation.py [--graphs 24] [--seeds 0,1] [--batches 24,6,1]
                                         [--adapter none]

The forced-tokens-one-per-pass ablation runs at the widest batch only (at B=1 it alone would
take longer than everything else). Writes bench/results/generation.{json,md}.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA, machine, write
from tracegrammar import Constraints
from tracegrammar.decoding.driver import GenerationRun, default_adapter_dir, run_generation
from tracegrammar.decoding.models import LoadedModel, load_model
from tracegrammar.evaluation.tables import table_lines
from tracegrammar.training.datasets import recipe_split

MODES = {
    "constrained": {"constrained": True, "fast_forward": True},
    "constrained, forced tokens one per pass": {"constrained": True, "fast_forward": False},
    "unconstrained": {"constrained": False, "fast_forward": True},
    # the semantic rules' cost: the same engine with any call allowed (novel_calls), which is what
    # constrained decoding cost before the adapter's call table became the default
    "constrained, novel calls allowed": {
        "constrained": True,
        "fast_forward": True,
        "novel_calls": True,
    },
}
ABLATION = "constrained, forced tokens one per pass"


def prompts(data: str, count: int, seed: int) -> list[Constraints]:
    val = [g for g in recipe_split(data).validation if 2 <= g.num_edges <= 12]
    picks = random.Random(seed).sample(val, min(count, len(val)))
    return [Constraints(g.service, g.num_edges, g.depth, g.latency) for g in picks]


def _row(runs: list[GenerationRun]) -> dict:
    graphs = sum(len(run.generations) for run in runs)
    valid = sum(g.valid for run in runs for g in run.generations)  # oracle with the constraints
    wall = sum(run.stats.wall_s for run in runs)
    passes = sum(run.stats.forward_passes for run in runs)
    sampled = sum(run.stats.sampled_tokens for run in runs)
    forced = sum(run.stats.forced_tokens for run in runs)
    engine = sum(run.stats.engine_s for run in runs)
    return {
        "graphs": graphs,
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
        "graphs_per_s": graphs / wall,
        "valid_graphs_per_s": valid / wall,
    }


def run_batched(
    lm: LoadedModel, cs: list[Constraints], batch: int, seed: int, temperature: float, **kw: bool
) -> list[GenerationRun]:
    """The prompts in consecutive groups of `batch`, one `run_generation` call per group."""
    return [
        run_generation(cs[i : i + batch], 1, temperature=temperature, seed=seed, model=lm, **kw)
        for i in range(0, len(cs), batch)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--graphs", type=int, default=24)
    ap.add_argument("--seeds", default="0,1", help="comma-separated; every mode runs every seed")
    ap.add_argument("--batches", default="24,6,1", help="batch widths, comma-separated")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--adapter", default=None, help="'none' for the bare base")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    batches = sorted({int(x) for x in args.batches.split(",")}, reverse=True)
    if not seeds or min(batches) < 1:
        ap.error(f"--seeds and --batches need at least one value, batches >= 1: {args.batches!r}")
    adapter = None if args.adapter == "none" else (args.adapter or default_adapter_dir())
    lm = load_model(None, adapter)
    cs = prompts(args.data, args.graphs, 0)
    results = []
    for batch in batches:
        rows = {}
        for name, kw in MODES.items():
            if name == ABLATION and batch != batches[0]:
                continue
            per_seed = []
            for seed in seeds:
                runs = run_batched(lm, cs, batch, seed, args.temperature, **kw)
                per_seed.append(runs)
                print(f"B={batch}", name, seed, _row(runs), flush=True)
            rows[name] = _row([r for runs in per_seed for r in runs])
            rows[name]["per_seed"] = [_row(runs) for runs in per_seed]
        c, u = rows["constrained"], rows["unconstrained"]
        ratios = [
            cs_["valid_graphs_per_s"] / us_["graphs_per_s"]
            for cs_, us_ in zip(c["per_seed"], u["per_seed"], strict=True)
        ]
        results.append({"batch": batch, "rows": rows,
                        "valid_per_s_constrained_over_raw_per_s_unconstrained":
                            c["valid_graphs_per_s"] / u["graphs_per_s"],
                        "ratio_per_seed": dict(zip(seeds, ratios, strict=True))})  # fmt: skip
    data = {"machine": machine(), "model": lm.name, "adapter": lm.adapter,
            "temperature": args.temperature, "seeds": seeds, "graphs": len(cs),
            "batches": results}  # fmt: skip
    write("generation", data, _markdown(data, args))


def _num(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _markdown(data: dict, args: argparse.Namespace) -> str:
    md = [
        f"# Generation cost ({data['model']}, adapter {data['adapter']}, T={data['temperature']}, "
        f"{data['graphs']} validation prompts x seeds {data['seeds']})",
        "",
        f"Machine: {data['machine']}",
        "",
        f"`.venv/bin/python bench/generation.py --batches {args.batches}` (all modes and batch "
        "widths run here, one after the other; B = graphs per `run_generation` call).",
        "",
    ]
    md += table_lines(
        ["B", "mode", "valid", "forward passes / valid", "s / valid", "forced share",
         "engine share"],
        [
            [res["batch"], name, f"{r['valid']}/{r['graphs']}",
             _num(r["forward_passes_per_valid"], 1), _num(r["wall_s_per_valid"], 2),
             f"{r['forced_share']:.0%}", f"{r['engine_share']:.1%}"]
            for res in data["batches"]
            for name, r in res["rows"].items()
        ],
    )  # fmt: skip
    md.append("")
    md += table_lines(
        ["B", "valid graphs / s, constrained", "raw graphs / s, unconstrained",
         "ratio (target >= 2)", "per seed"],
        [
            [res["batch"], f"{res['rows']['constrained']['valid_graphs_per_s']:.3f}",
             f"{res['rows']['unconstrained']['graphs_per_s']:.3f}",
             f"{res['valid_per_s_constrained_over_raw_per_s_unconstrained']:.2f}",
             ", ".join(f"{s}: {r:.2f}" for s, r in res["ratio_per_seed"].items())]
            for res in data["batches"]
        ],
    )  # fmt: skip
    c = data["batches"][0]["rows"]["constrained"]
    novel = data["batches"][0]["rows"].get("constrained, novel calls allowed")
    if novel and novel["wall_s_per_valid"] and c["wall_s_per_valid"]:
        md += [
            "",
            f"Semantic rules (the default) cost {c['wall_s_per_valid'] / novel['wall_s_per_valid']:.2f}x "
            f"the wall time per valid graph of the same engine with novel calls allowed "
            f"(B={data['batches'][0]['batch']}; target <= 1.2x).",
        ]
    md += [
        "",
        f"Forced share of layer tokens (constrained, B={data['batches'][0]['batch']}): "
        f"{c['forced_share']:.0%} (target >= 50%). Engine time: {c['engine_share']:.1%} of wall "
        "time (target <= 5% of a decoding step).",
        "",
        "An unconstrained graph's cost varies a lot from draw to draw: it ends at its first "
        "unparseable layer, or runs a layer to its token budget when the model does not close it.",
        "",
    ]
    return "\n".join(md)


if __name__ == "__main__":
    main()
