"""`tracegrammar data stats` and `tracegrammar data show`: inspect real traces."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence

from ..errors import UsageError
from ..grammar import ENCODINGS
from ..traces import LoadReport, load_traces


def register_data(p: argparse.ArgumentParser) -> None:
    data = p.add_subparsers(metavar="ACTION", required=True, help="what to do with the traces")
    stats = data.add_parser("stats", help="graphs, edges, depth/width histograms, drops by reason")
    stats.add_argument(
        "paths", nargs="+", metavar="PATH", help="trace files or folders (.csv, .csv.gz, .txt)"
    )
    stats.add_argument("--dedupe", action="store_true", help="drop duplicate graphs")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(func=cmd_data_stats)
    show = data.add_parser("show", help="one graph as layers (or tabular)")
    show.add_argument("path", metavar="PATH", help="a trace file or folder")
    show.add_argument("--index", type=int, default=0, help="which graph (0-based)")
    show.add_argument("--encoding", default="layer", choices=tuple(ENCODINGS), help="text encoding")
    # `--format` is the export format in every other command; the old spelling still works here
    show.add_argument("--format", dest="encoding", choices=tuple(ENCODINGS), help=argparse.SUPPRESS)
    show.set_defaults(func=cmd_data_show)


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
    from ..encode import render_layers, render_tabular
    from ..layers import decompose

    for n, g in enumerate(load_traces(args.path)):
        if n == args.index:
            text = (
                render_tabular(g)
                if args.encoding == "tabular"
                else render_layers(decompose(g), args.encoding)
            )
            print(
                f"# graph {n}: service {g.service}, {g.num_edges} edges, depth {g.depth}, latency {g.latency} ms"
            )
            print(text, end="" if text.endswith("\n") else "\n")
            return 0
    raise UsageError(f"{args.path}: has no graph with index {args.index}")
