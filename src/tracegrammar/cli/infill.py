"""`tracegrammar infill FILE --out OUT`: fill the unknown values of incomplete graphs.

FILE is JSON Lines (a `null` field is unknown) or real traces (read with `keep_incomplete`: the
unknown names and the one missing call the loader would have dropped). Every graph is checked
before a model is loaded; a graph that cannot be infilled (nothing missing, too many missing
parts, no value can make it valid) stops the run with one line naming it, and OUT is written
only when every graph was filled (atomically).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError
from ..infilling import Chooser
from ..reference import REFERENCE_FILE, Reference
from ..types import CallGraph
from .common import check_model_flags, resolve_adapter

METHODS = ("model", "frequency")


def register_infill(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="incomplete graphs: .jsonl (null = unknown) or real traces")
    p.add_argument("--out", required=True, help="output .jsonl (written only when all succeed)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="model",
        help="who picks among the allowed values: the model (default) or the most frequent "
        "value in --data",
    )
    p.add_argument(
        "--data",
        help="training traces: the semantic rules and, for --method frequency, the counts "
        "(default for the model: the adapter's reference)",
    )
    p.add_argument("--max-parts", type=int, default=8, help="most missing parts per graph")
    p.add_argument(
        "--pass-complete",
        action="store_true",
        help="copy graphs with nothing missing unchanged instead of refusing them",
    )
    p.add_argument("--model", help="base model directory (default: embedded SmolLM2)")
    p.add_argument("--adapter", help="LoRA adapter (default: shipped; 'none' for the bare base)")
    p.set_defaults(func=cmd_infill)


def read_incomplete(path: str) -> list[CallGraph]:
    if path.endswith(".jsonl"):
        from ..io import read_jsonl

        return list(read_jsonl(path, keep_missing=True))
    from ..traces import load_traces

    return list(load_traces(path, keep_incomplete=True))


def cmd_infill(args: argparse.Namespace) -> int:
    from ..infilling import InfillError, check_feasible, check_parts
    from ..io import check_output_writable, write_jsonl

    if args.max_parts < 1:
        raise UsageError(f"--max-parts must be >= 1, got {args.max_parts}")
    if args.method == "frequency" and not args.data:
        raise UsageError("--method frequency needs --data (the traces to count values in)")
    if not Path(args.file).exists():
        raise UsageError(f"{args.file}: no such file or folder")
    if args.data and not Path(args.data).exists():
        raise UsageError(f"--data {args.data}: no such file or folder")
    check_model_flags(args.model, args.adapter)
    target = check_output_writable(args.out)
    graphs = read_incomplete(args.file)
    if not graphs:
        raise UsageError(f"{args.file}: no graphs")
    todo: list[tuple[int, list]] = []
    for i, g in enumerate(graphs):
        if not g.missing and args.pass_complete:
            continue
        try:
            todo.append((i, check_parts(g, args.max_parts)))
        except InfillError as exc:
            raise InfillError(f"{args.file}: graph {i + 1}: {exc}") from None
    reference, load_chooser = _reference(args)
    for i, _ in todo:  # a dry run: refuse what cannot be filled before a model is loaded
        try:
            check_feasible(graphs[i], reference, args.max_parts)
        except InfillError as exc:
            raise InfillError(f"{args.file}: graph {i + 1}: {exc}") from None
    chooser = load_chooser()
    out = list(graphs)
    from ..infilling import fill

    for i, parts in todo:
        try:
            out[i] = fill(graphs[i], parts, reference, chooser)
        except InfillError as exc:
            raise InfillError(f"{args.file}: graph {i + 1}: {exc}") from None
    write_jsonl(out, target)
    print(f"infilled {len(todo)} of {len(graphs)} graphs -> {target}", file=sys.stderr)
    return 0


def _reference(args: argparse.Namespace) -> tuple[Reference, Callable[[], Chooser]]:
    """The semantic rules, and how to make the chooser (the model is loaded only when called)."""
    from ..infilling import Frequencies, FrequencyChooser

    train = None
    if args.data:
        from ..traces import load_traces

        train = list(load_traces(args.data))
    if args.method == "frequency":
        assert train is not None
        freq = Frequencies.from_graphs(train)
        return Reference.from_graphs(train), lambda: FrequencyChooser(freq)
    if train is not None:
        reference = Reference.from_graphs(train)
    else:
        adapter = resolve_adapter(args.adapter)
        path = Path(adapter) / REFERENCE_FILE if adapter else None
        reference = Reference.load(path) if path is not None and path.is_file() else Reference()

    def load() -> Chooser:
        from ..decoding.infill import ModelChooser
        from ..decoding.models import load_model

        return ModelChooser(load_model(args.model, resolve_adapter(args.adapter)))

    return reference, load
