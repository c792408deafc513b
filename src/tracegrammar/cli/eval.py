"""The `eval` and `baseline` commands: argument wiring only, the work is in `metrics` and
`baseline`. Every expected failure raises an InputError with a one-line message (the CLI prints
it and exits 2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from .common import constraints_from_flags, read_all, read_graphs

# ------------------------------------------------------------------------------------------------
# tracegrammar eval
# ------------------------------------------------------------------------------------------------


def register_eval(p: argparse.ArgumentParser) -> None:
    p.description = "Score synthetic call graphs against real ones (all metrics of the brief)."
    p.add_argument(
        "--real",
        action="append",
        required=True,
        metavar="PATH",
        help="real traces or .jsonl (repeatable)",
    )
    p.add_argument("--synthetic", required=True, metavar="FILE.jsonl", help="graphs to score")
    p.add_argument(
        "--training",
        action="append",
        metavar="PATH",
        help="training graphs: memorization and the semantic reference (repeatable)",
    )
    p.add_argument("--out", metavar="DIR", help="write metrics.json (and plots) here")
    p.add_argument("--plots", action="store_true", help="also write PNG plots to --out")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..io import atomic_writer, check_output_writable
    from ..metrics import evaluate, format_report, plot

    if args.plots and not args.out:
        raise UsageError("--plots needs --out DIR")
    if args.out:  # before reading and scoring: a bad --out fails at once
        check_output_writable(Path(args.out) / "metrics.json")
    real = read_all(args.real)
    synthetic = list(read_graphs(args.synthetic))
    training = read_all(args.training) if args.training else None
    report = evaluate(real, synthetic, training)
    print(format_report(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_writer(out / "metrics.json") as fh:  # never a half-written file
            fh.write(json.dumps(report, indent=2) + "\n")
        written = [out / "metrics.json"]
        if args.plots:
            written += plot(real, synthetic, out)
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


# ------------------------------------------------------------------------------------------------
# tracegrammar baseline
# ------------------------------------------------------------------------------------------------


def register_baseline(p: argparse.ArgumentParser) -> None:
    p.description = "Fit the probabilistic baseline on real traces and sample constrained graphs."
    p.add_argument(
        "--data", nargs="+", required=True, metavar="PATH", help="training traces or .jsonl"
    )
    p.add_argument("--service", required=True, help="service id, S_<n>")
    p.add_argument("--num-edges", type=int, help="exact number of calls (default: drawn)")
    p.add_argument("--depth", type=int, help="exact depth (default: drawn)")
    p.add_argument("--latency", type=int, help="upper bound on the root finish time (ms)")
    p.add_argument("-n", type=int, default=1, dest="n", help="number of graphs to sample")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same graphs)")
    p.add_argument(
        "--out", required=True, metavar="FILE.jsonl", help="graphs to write (JSON Lines)"
    )
    p.add_argument("--save-model", metavar="FILE.json", help="also write the fitted model")
    p.set_defaults(func=cmd_baseline)


def cmd_baseline(args: argparse.Namespace) -> int:
    from ..baseline import ProbabilisticBaseline
    from ..io import check_output_writable, graph_to_dict, write_jsonl

    constraints = constraints_from_flags(
        args.service, args.num_edges, args.depth, args.latency, args.n
    )
    check_output_writable(args.out)  # before fitting: a bad --out fails at once
    if args.save_model:
        check_output_writable(args.save_model)
    model = ProbabilisticBaseline.fit(read_all(args.data))
    if args.save_model:
        model.save(args.save_model)
    graphs = model.sample(constraints, args.n, args.seed)
    records = (graph_to_dict(g, constraints=constraints.as_dict()) for g in graphs)
    count = write_jsonl(records, args.out)
    print(f"wrote {count} graphs to {args.out}")
    return 0
