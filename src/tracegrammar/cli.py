"""`tracegrammar` command line.

Every failure on bad input (an `InputError`: a bad flag, file, constraint or output path; an
`OSError` on a named path) is one line on stderr naming the flag or file and the value, with exit
code 2; flags are checked before torch is imported or a model loaded. Anything else is a bug and
shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence

from .errors import InputError, UsageError, os_error_message
from .traces import LoadReport, load_traces

#: The CLI's own refusals (kept under this name for callers of earlier versions).
CliError = UsageError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return run_command(args.func, args)


def run_command(
    func: Callable[[argparse.Namespace], int | None],
    args: argparse.Namespace,
    interrupted: str = "interrupted",
) -> int:
    """Run one command: user errors become one line and exit 2, Ctrl-C exit 130; bugs (any
    other exception) keep their traceback."""
    try:
        return int(func(args) or 0)
    except InputError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if exc.filename is None:  # not about a path the user named: a bug or the machine
            raise
        return _fail(f"{exc.filename}: {os_error_message(exc)}")
    except KeyboardInterrupt:
        print(f"tracegrammar: {interrupted}", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"tracegrammar: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tracegrammar")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracegrammar",
        description="Synthetic microservice call graphs from a grammar-constrained LLM.",
    )
    p.add_argument("--version", action="version", version=f"tracegrammar {version()}")
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
