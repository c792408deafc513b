"""`tracegrammar` command line. Every failure on bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence

from .traces import LoadReport, TraceFormatError, load_traces


class CliError(Exception):
    """An expected failure: printed as one line, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CliError, TraceFormatError, ValueError, FileNotFoundError) as exc:
        print(f"tracegrammar: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tracegrammar: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracegrammar", description=__doc__)
    sub = p.add_subparsers(metavar="COMMAND")

    data = sub.add_parser("data", help="inspect real traces").add_subparsers(metavar="ACTION")
    stats = data.add_parser("stats", help="graphs, edges, depth/width histograms, drops by reason")
    stats.add_argument("paths", nargs="+", metavar="PATH")
    stats.add_argument("--dedupe", action="store_true", help="drop duplicate graphs")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(func=cmd_data_stats)
    show = data.add_parser("show", help="one graph as layers (or tabular)")
    show.add_argument("path", metavar="PATH")
    show.add_argument("--index", type=int, default=0, help="which graph (0-based)")
    show.add_argument("--format", default="layer", choices=("layer", "layer_instruct", "tabular"))
    show.set_defaults(func=cmd_data_show)

    for name, help_text, register in _commands():
        register(sub.add_parser(name, help=help_text))
    return p


def _commands() -> list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]]:
    """The other commands; each module imports its heavy dependencies only when run."""
    from .benchmark import register_bench
    from .eval_cli import register_baseline, register_eval
    from .exports.cli import register_draw, register_export
    from .generate_cli import register_generate
    from .training.cli import register_train

    return [
        ("generate", "generate call graphs (constrained by default)", register_generate),
        ("train", "LoRA fine-tuning on layer samples", register_train),
        ("eval", "fidelity metrics of synthetic graphs against real ones", register_eval),
        ("baseline", "fit the probabilistic baseline and sample from it", register_baseline),
        ("export", "convert graphs to another trace format", register_export),
        ("draw", "draw one call graph (PNG or SVG)", register_draw),
        ("bench", "benchmarks (validity over the papers' grid; fidelity)", register_bench),
    ]


def histogram(values: Sequence[int]) -> dict[int, int]:
    return dict(sorted(Counter(values).items()))


def cmd_data_stats(args: argparse.Namespace) -> int:
    report = LoadReport()
    depths: list[int] = []
    widths: list[int] = []
    sizes: list[int] = []
    for path in args.paths:
        for g in load_traces(path, report=report, dedupe=args.dedupe):
            sizes.append(g.num_edges)
            depths.append(g.depth)
            widths.append(max((len(k) for k in g.children.values()), default=1))
    out = {
        **report.as_dict(),
        "edges": sum(sizes),
        "edges_per_graph": histogram(sizes),
        "depth": histogram(depths),
        "width": histogram(widths),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"files:   {', '.join(report.files)}")
    print(f"rows:    {report.rows}    traces: {report.traces}")
    print(f"graphs:  {report.graphs}    edges: {sum(sizes)}")
    for key in ("edges_per_graph", "depth", "width"):
        print(f"{key + ':':9}{_fmt_hist(out[key])}")  # type: ignore[arg-type]
    print(f"dropped: {_fmt_counts(report.dropped)}")
    print(f"repaired:{_fmt_counts(report.repaired)}")
    return 0


def _fmt_hist(h: dict[int, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in h.items()) or "-"


def _fmt_counts(c: Counter[str]) -> str:
    return " " + (", ".join(f"{k}={v}" for k, v in sorted(c.items())) or "none")


def cmd_data_show(args: argparse.Namespace) -> int:
    from .encode import render_layers, render_tabular
    from .layers import decompose

    for n, g in enumerate(load_traces(args.path)):
        if n == args.index:
            text = (
                render_tabular(g)
                if args.format == "tabular"
                else render_layers(decompose(g), args.format)
            )
            print(
                f"# graph {n}: service {g.service}, {g.num_edges} edges, depth {g.depth}, latency {g.latency} ms"
            )
            print(text, end="" if text.endswith("\n") else "\n")
            return 0
    raise CliError(f"{args.path}: has no graph with index {args.index}")


if __name__ == "__main__":
    sys.exit(main())
