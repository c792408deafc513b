"""Command-line entry points for exports: `tracegrammar draw` (and `tracegrammar export`).

`register_draw` / `register_export` fill an argparse sub-parser; the main CLI wires them in.
Failures raise UsageError (an InputError) with a one-line message; the main CLI prints it, exit 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from ..errors import UsageError
from ..types import CallGraph


def register_draw(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="graphs (.jsonl) or a trace file or directory")
    p.add_argument("--index", type=int, default=0, help="which graph (0-based, default 0)")
    p.add_argument("--out", required=True, metavar="FILE", help="picture to write (.png or .svg)")
    p.set_defaults(func=cmd_draw)


def register_export(p: argparse.ArgumentParser) -> None:
    from . import FORMATS

    p.add_argument("path", metavar="PATH", help="graphs (.jsonl) or a trace file or directory")
    p.add_argument("--format", required=True, choices=FORMATS, help="output format")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.set_defaults(func=cmd_export)


def read_graphs(path: str | Path) -> Iterator[CallGraph]:
    """JSON Lines of graphs when the name ends in .jsonl, otherwise real traces."""
    if str(path).endswith(".jsonl"):
        from ..io import read_jsonl

        return read_jsonl(path)
    from ..traces import load_traces

    return load_traces(path)


def cmd_draw(args: argparse.Namespace) -> int:
    from .draw import check_suffix, draw

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
    from . import write

    graphs = list(read_graphs(args.path))
    write(graphs, args.out, args.format)
    print(f"wrote {args.out} ({len(graphs)} graph(s), {args.format})")
    return 0
