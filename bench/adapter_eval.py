"""Base model vs the shipped adapter, side by side on validation prompts (temperature 0.8):

- unconstrained layer validity: the model writes one layer for real conditions taken from
  validation graphs; valid = parses and passes `check_layer` against those conditions;
- unconstrained graph validity and instruction accuracy: whole graphs for (service, num_edges,
  depth, latency) of validation graphs;
- semantic validity of constrained output (constrained validity is 100% by construction):
  share of valid graphs whose every call is in the training split's calls.

    .venv/bin/python bench/adapter_eval.py [--layers 48] [--graphs 16]

Writes bench/results/adapter_eval.{json,md}.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA, machine, write
from tracegrammar import Constraints, Reference, check_layer
from tracegrammar.decoding.driver import complete_layers, default_adapter_dir, run_generation
from tracegrammar.decoding.models import load_model
from tracegrammar.encode import ParseError, parse_layer_output
from tracegrammar.layers import decompose
from tracegrammar.metrics import Outcome, instruction_accuracy, semantic_validity, validity
from tracegrammar.training.datasets import recipe_split


def layer_valid(text: str, cond) -> bool:
    for fmt in ("layer", "layer_instruct"):
        try:
            parsed = parse_layer_output(text, fmt)
        except ParseError:
            continue
        return not check_layer(parsed, fmt, conditions=cond)
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--graphs", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    split = recipe_split(args.data)
    reference = Reference.from_graphs(split.train)
    rng = random.Random(args.seed)
    layers = [layer for g in split.validation for layer in decompose(g)]
    conds = [layer.conditions for layer in rng.sample(layers, min(args.layers, len(layers)))]
    small = [g for g in split.validation if g.num_edges <= 10]
    cs = [
        Constraints(g.service, g.num_edges, g.depth, g.latency)
        for g in rng.sample(small, min(args.graphs, len(small)))
    ]
    results = {}
    for name, adapter in (("base", None), ("tuned", default_adapter_dir())):
        lm = load_model(None, adapter)
        texts, _ = complete_layers(
            conds, lm, constrained=False, temperature=args.temperature, seed=args.seed
        )
        layer_validity = sum(layer_valid(t, c) for t, c in zip(texts, conds, strict=True)) / len(
            conds
        )
        free = run_generation(
            cs, 1, temperature=args.temperature, seed=args.seed, model=lm, constrained=False
        )
        bound = run_generation(
            cs, 1, temperature=args.temperature, seed=args.seed, model=lm, constrained=True
        )
        free_o = [Outcome(g.graph, g.constraints) for g in free.generations]
        bound_o = [Outcome(g.graph, g.constraints) for g in bound.generations]
        results[name] = {
            "adapter": str(adapter) if adapter else None,
            "unconstrained_layer_validity": layer_validity,
            "unconstrained_graph_validity": validity(free_o),
            "unconstrained_instruction_accuracy": instruction_accuracy(free_o),
            "constrained_validity": validity(bound_o),
            "constrained_instruction_accuracy": instruction_accuracy(bound_o),
            "constrained_semantic_validity": semantic_validity(bound_o, reference),
            "layer_prompts": len(conds),
            "graph_prompts": len(cs),
            "example_unconstrained_layer": texts[0][:400],
        }
        print(
            name,
            {k: v for k, v in results[name].items() if k != "example_unconstrained_layer"},
            flush=True,
        )
    md = [
        f"# Base vs tuned adapter (T={args.temperature}, validation prompts)",
        "",
        f"Machine: {machine()}",
        "",
        "| model | unconstrained layer validity | unconstrained graph validity | unconstrained instruction acc. "
        "| constrained validity | constrained semantic validity |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        md.append(
            f"| {name} | {r['unconstrained_layer_validity']:.1%} ({r['layer_prompts']} layers) | "
            f"{r['unconstrained_graph_validity']:.1%} | {r['unconstrained_instruction_accuracy']:.1%} "
            f"({r['graph_prompts']} graphs) | {r['constrained_validity']:.1%} | "
            f"{r['constrained_semantic_validity']:.1%} |"
        )
    write(
        "adapter_eval",
        {"machine": machine(), "temperature": args.temperature, "results": results},
        "\n".join(md) + "\n",
    )


if __name__ == "__main__":
    main()
