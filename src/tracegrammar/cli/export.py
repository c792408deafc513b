"""`tracegrammar export` (graphs to another trace format) and `tracegrammar draw` (one graph as a
picture). Failures raise UsageError (an InputError) with a one-line message; the main CLI prints
it, exit 2.
"""

from __future__ import annotations

import argparse
from itertools import islice

from ..errors import UsageError
from ..exports import EXPORT_FORMATS
from .common import START_HELP, read_graphs, start_ns


def register_draw(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="graphs (.jsonl) or a trace file or directory")
    p.add_argument("--index", type=int, default=0, help="which graph (0-based)")
    p.add_argument("--out", required=True, metavar="FILE", help="picture to write (.png or .svg)")
    p.set_defaults(func=cmd_draw)


def register_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="graphs (.jsonl) or a trace file or directory")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="export format")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.add_argument(
        "--split",
        action="store_true",
        help="zipkin-json: one file per trace in the folder --out (Zipkin's upload reads one)",
    )
    p.add_argument("--start", metavar="TIME", help=START_HELP)
    p.set_defaults(func=cmd_export)


def cmd_draw(args: argparse.Namespace) -> int:
    from ..exports.draw import check_suffix, draw

    check_suffix(args.out)
    if args.index < 0:
        raise UsageError(f"--index must be >= 0, got {args.index}")
    graph = next(islice(read_graphs(args.path), args.index, None), None)
    if graph is None:
        raise UsageError(f"{args.path}: has no graph with index {args.index}")
    draw(graph, args.out)
    print(f"wrote {args.out} ({graph.service}, {graph.num_edges} calls)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..exports import write

    base = start_ns(args.start)
    if args.split and args.format != "zipkin-json":
        raise UsageError(f"--split is for --format zipkin-json, got --format {args.format}")
    graphs = list(read_graphs(args.path))
    if args.split:
        from ..exports.zipkin import write_zipkin_split

        paths = write_zipkin_split(graphs, args.out, base)
        print(f"wrote {len(paths)} trace file(s) in {args.out} (zipkin-json)")
        return 0
    write(graphs, args.out, args.format, base_epoch_ns=base)
    print(f"wrote {args.out} ({len(graphs)} graph(s), {args.format})")
    return 0
