"""`tracegrammar generate`: constraints as flags or as a JSON/YAML file of many requests, output
in any export format, a progress bar and a closing summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .constraints import Constraints
from .errors import UsageError


def register_generate(p: argparse.ArgumentParser) -> None:
    from .exports import FORMATS

    p.add_argument("--service", help="service id, e.g. S_32048416")
    p.add_argument("--num-edges", type=int, help="exact number of calls")
    p.add_argument("--depth", type=int, help="exact depth (1: only the root call)")
    p.add_argument("--latency", type=int, help="upper bound on the root call's finish (ms)")
    p.add_argument(
        "--requests",
        metavar="FILE",
        help="JSON or YAML list of requests ({service, num_edges?, depth?, latency?, n?})",
    )
    p.add_argument("-n", type=int, default=1, help="graphs per request (default 1)")
    p.add_argument("--seed", type=int, help="random seed (same seed, same output)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
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
    """(constraints, n) pairs from --requests or from the flags; errors name the field."""
    if args.requests:
        return _requests_file(Path(args.requests), args.n)
    if not args.service:
        raise UsageError(
            "give --service (and optionally --num-edges, --depth, --latency) or --requests FILE"
        )
    c = Constraints(args.service, args.num_edges, args.depth, args.latency)
    return [(c, args.n)]


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
        if not isinstance(n, int) or n < 1:
            raise UsageError(f"{path}: request {i}: n must be a positive integer, got {n!r}")
        try:
            out.append((Constraints.from_dict(item), n))
        except ValueError as exc:
            raise UsageError(f"{path}: request {i}: {exc}") from None
    return out


def output_path(out: str, fmt: str) -> Path:
    ext = {"jsonl": "jsonl", "alibaba-csv": "csv"}.get(fmt, "json")
    path = Path(out)
    return path / f"graphs.{ext}" if path.is_dir() or out.endswith("/") else path


def cmd_generate(args: argparse.Namespace) -> int:
    from . import exports
    from .decoding.driver import default_adapter_dir, run_generation
    from .decoding.models import load_model
    from .io import graph_to_dict, write_jsonl

    requests = load_requests(args)
    target = output_path(args.out, args.format)
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
