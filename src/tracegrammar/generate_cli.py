"""`tracegrammar generate`: constraints as flags or as a JSON/YAML file of many requests, output
in any export format, a progress bar and a closing summary."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from .constraints import (
    MAX_GRAPHS_PER_RUN,
    MAX_NUM_EDGES,
    ConstraintError,
    Constraints,
    check_request_size,
)
from .errors import UsageError
from .io import check_output_writable


def register_generate(p: argparse.ArgumentParser) -> None:
    from .exports import FORMATS

    p.add_argument("--service", help="service id, e.g. S_32048416")
    p.add_argument("--num-edges", type=int, help=f"exact number of calls (1 to {MAX_NUM_EDGES})")
    p.add_argument("--depth", type=int, help="exact depth (1: only the root call)")
    p.add_argument("--latency", type=int, help="upper bound on the root call's finish (ms)")
    p.add_argument(
        "--requests",
        metavar="FILE",
        help="JSON or YAML list of requests ({service, num_edges?, depth?, latency?, n?})",
    )
    p.add_argument(
        "-n",
        type=int,
        default=1,
        help=f"graphs per request (default 1; at most {MAX_GRAPHS_PER_RUN} in all)",
    )
    p.add_argument("--seed", type=int, help="random seed (same seed, same output)")
    p.add_argument(
        "--temperature", type=float, default=0.8, help="sampling temperature, 0: greedy (0.8)"
    )
    p.add_argument(
        "--top-k", type=int, default=50, help="sample among the k likeliest, 0: all (50)"
    )
    p.add_argument(
        "--fmt",
        default="layer",
        choices=("layer", "layer_instruct", "tabular"),
        help="text encoding",
    )
    p.add_argument(
        "--unconstrained", action="store_true", help="no grammar or numeric rules (for comparison)"
    )
    p.add_argument(
        "--semantic", metavar="PATH", help="restrict calls to those seen in these traces"
    )
    p.add_argument(
        "--model", metavar="DIR", help="base model directory (default: embedded SmolLM2)"
    )
    p.add_argument(
        "--adapter",
        metavar="DIR",
        help="LoRA adapter (default: the shipped adapter; 'none' for none)",
    )
    p.add_argument(
        "--format", default="jsonl", choices=FORMATS, help="output format (default jsonl)"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output file, or a directory (graphs.<ext> inside)",
    )
    p.set_defaults(func=cmd_generate)


def load_requests(args: argparse.Namespace) -> list[tuple[Constraints, int]]:
    """(constraints, n) pairs from --requests or from the flags, each within the documented
    limits; errors name the flag (or the file and request) and the value."""
    if args.requests:
        requests = _requests_file(Path(args.requests), args.n)
    elif not args.service:
        raise UsageError(
            "give --service (and optionally --num-edges, --depth, --latency) or --requests FILE"
        )
    else:
        try:
            c = Constraints(args.service, args.num_edges, args.depth, args.latency)
            check_request_size(c, args.n)
        except ConstraintError as exc:
            raise UsageError(f"{_flag(exc.field)}: {exc}") from None
        requests = [(c, args.n)]
    total = sum(n for _, n in requests)
    if total > MAX_GRAPHS_PER_RUN:
        raise UsageError(
            f"{args.requests}: asks for {total} graphs in all; at most {MAX_GRAPHS_PER_RUN} per run"
        )
    return requests


def _flag(field: str | None) -> str:
    return "-n" if field == "n" else f"--{(field or 'service').replace('_', '-')}"


def check_args(args: argparse.Namespace) -> tuple[list[tuple[Constraints, int]], Path]:
    """Every flag, file and the output path, checked before torch is imported or a model loaded:
    a bad value is refused in a second, not after minutes of loading or generating."""
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (0: no limit), got {args.top_k}")
    if not 1 <= args.n <= MAX_GRAPHS_PER_RUN:
        raise UsageError(f"-n must be from 1 to {MAX_GRAPHS_PER_RUN}, got {args.n}")
    requests = load_requests(args)
    if args.model is not None:
        _check_dir("--model", args.model, "config.json", "a Hugging Face model directory")
    if args.adapter is not None and args.adapter.lower() != "none":
        _check_dir("--adapter", args.adapter, "adapter_config.json", "a LoRA adapter directory")
    if args.semantic:
        from .traces import trace_files

        trace_files(args.semantic)
    target = check_output_writable(output_path(args.out, args.format))
    return requests, target


def _check_dir(flag: str, value: str, marker: str, what: str) -> None:
    if not (Path(value) / marker).is_file():
        raise UsageError(f"{flag} {value}: not {what} (no {marker})")


def _requests_file(path: Path, default_n: int) -> list[tuple[Constraints, int]]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    text = path.read_text()
    try:
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            data: Any = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise UsageError(
            f"{path}: not valid {path.suffix[1:] or 'JSON'}: {str(exc).splitlines()[0]}"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise UsageError(f"{path}: expected a non-empty list of requests")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise UsageError(f"{path}: request {i} is not a mapping")
        item = dict(item)
        n = item.pop("n", default_n)
        try:
            c = Constraints.from_dict(item)
            check_request_size(c, n)
        except ConstraintError as exc:
            raise UsageError(f"{path}: request {i}: {exc}") from None
        out.append((c, n))
    return out


def output_path(out: str, fmt: str) -> Path:
    ext = {"jsonl": "jsonl", "alibaba-csv": "csv"}.get(fmt, "json")
    path = Path(out)
    return path / f"graphs.{ext}" if path.is_dir() or out.endswith("/") else path


def cmd_generate(args: argparse.Namespace) -> int:
    requests, target = check_args(args)  # before torch is imported
    from . import exports
    from .decoding.driver import default_adapter_dir, run_generation
    from .decoding.models import load_model
    from .io import graph_to_dict, write_jsonl

    reference = None
    if args.semantic:
        from .reference import Reference
        from .traces import load_traces

        reference = Reference.from_graphs(load_traces(args.semantic))
    adapter = args.adapter if args.adapter is not None else default_adapter_dir()
    if isinstance(adapter, str) and adapter.lower() == "none":
        adapter = None
    lm = load_model(args.model, adapter)
    start = time.perf_counter()
    constraints = [c for c, n in requests for _ in range(n)]
    run = run_generation(
        constraints,
        1,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        model=lm,
        constrained=not args.unconstrained,
        fmt=args.fmt,
        reference=reference,
        progress=sys.stderr.isatty(),
    )
    seconds = time.perf_counter() - start
    valid = [g for g in run.generations if g.valid]
    if args.format == "jsonl":
        records = [
            graph_to_dict(
                g.graph,
                valid=g.valid,
                constraints=g.constraints.as_dict(),
                violations=[str(v) for v in g.violations[:5]],
            )
            if g.graph is not None
            else {
                "service": g.constraints.service,
                "edges": [],
                "valid": False,
                "text": g.text[:2000],
            }
            for g in run.generations
        ]
        write_jsonl(records, target)
    else:
        exports.write([g.graph for g in valid], target, args.format)
    s = run.stats
    print(
        f"requested {len(run.generations)}, valid {len(valid)}, {seconds:.1f} s, "
        f"{len(valid) / seconds if seconds else 0:.3f} valid graphs/s; "
        f"{s.forward_passes} forward passes, {s.sampled_tokens} sampled + {s.forced_tokens} forced "
        f"tokens ({100 * s.forced_share:.0f}% forced) -> {target}"
    )
    return 0
