"""`tracegrammar workload`: a window of traffic, coarse to fine (the window's graph contexts, then
each graph), written to a folder as graphs.jsonl (each line stamped with its arrival) and, with
`--format`, one export file.

Every flag is checked before torch is imported: times that do not parse, an end not after the
start, zero traces, a required id the model's reference (or the baseline's data) does not know,
an output folder that cannot hold the files. Each is one line naming the flag and the value,
exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import ConstraintError, UsageError
from ..exports import EXPORT_FORMATS
from ..io import check_output_writable
from ..workloads import WORKLOAD_METHODS, WindowRequest
from .common import check_model_flags, comma_list, read_all, resolve_adapter

#: The file each export format is written to in `--out` (graphs.jsonl is always written).
EXPORT_FILES = {
    "alibaba-csv": "graphs.csv",
    "otlp-json": "otlp.json",
    "jaeger-json": "jaeger.json",
    "zipkin-json": "zipkin.json",
}
FLAGS = {
    "start": "--start",
    "end": "--end",
    "num_traces": "--num-traces",
    "include": "--include",
    "data": "--data",
}


def register_workload(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", required=True, help="window start: ISO 8601 (UTC if no zone) or now")
    p.add_argument("--end", required=True, help="window end (exclusive), ISO 8601")
    p.add_argument("--num-traces", type=int, required=True, help="traces in the window")
    p.add_argument(
        "--include",
        type=comma_list,
        default=[],
        metavar="S_1,S_2",
        help="service ids that must appear (each at least once)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the files to")
    p.add_argument(
        "--format",
        choices=tuple(EXPORT_FILES),
        help="also write this export (graphs.jsonl is always written)",
    )
    p.add_argument("--method", choices=WORKLOAD_METHODS, default="model", help="(model)")
    p.add_argument("--data", metavar="PATH", help="traces the baseline is fitted on (baseline)")
    p.add_argument("--seed", type=int, help="same seed, same workload")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0.8)")
    p.add_argument("--top-k", type=int, default=50, help="top-k sampling (50; 0: off)")
    p.add_argument("--max-edges", type=int, help="largest num_edges a context may ask for")
    p.add_argument("--model", help="base model directory (default: the embedded one)")
    p.add_argument("--adapter", help="LoRA adapter folder (default: shipped; `none`: bare base)")
    p.set_defaults(func=cmd_workload)


def check_request(args: argparse.Namespace) -> tuple[WindowRequest, object | None]:
    """The window and the known services (a fitted baseline for `--method baseline`), or a
    UsageError naming the flag and the value; nothing heavy is imported."""
    from ..times import parse_time

    start = parse_time(args.start, "--start")
    end = parse_time(args.end, "--end")
    try:
        request = WindowRequest(start, end, args.num_traces, tuple(args.include))
    except ConstraintError as exc:
        raise UsageError(_flag_message(exc, args)) from None
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0, got {args.top_k}")
    if args.max_edges is not None and args.max_edges < 1:
        raise UsageError(f"--max-edges must be >= 1, got {args.max_edges}")
    baseline = None
    if args.method == "baseline":
        if args.data is None:
            raise UsageError("--method baseline needs --data (traces to fit the baseline on)")
        from ..baseline import ProbabilisticBaseline

        baseline = ProbabilisticBaseline.fit(read_all([args.data]))
        known: frozenset[str] | None = baseline.services
    else:
        check_model_flags(args.model, args.adapter)
        known = _adapter_services(resolve_adapter(args.adapter))
    try:
        request.check_known(known)
    except ConstraintError as exc:
        raise UsageError(_flag_message(exc, args)) from None
    return request, baseline


def _flag_message(exc: ConstraintError, args: argparse.Namespace) -> str:
    flag = FLAGS.get(exc.field or "", "--num-traces")
    value = {
        "--start": args.start,
        "--end": args.end,
        "--num-traces": args.num_traces,
        "--include": ",".join(args.include),
    }.get(flag, "")
    return f"{flag} {value}: {exc}"


def _adapter_services(adapter: str | None) -> frozenset[str] | None:
    """The services of the adapter's reference (what the model's contexts may name)."""
    from ..reference import REFERENCE_FILE, Reference

    if adapter is None or not (Path(adapter) / REFERENCE_FILE).is_file():
        return None
    ref = Reference.load(Path(adapter) / REFERENCE_FILE)
    return frozenset(s for s, *_ in ref.service_calls) or None


def cmd_workload(args: argparse.Namespace) -> int:
    request, baseline = check_request(args)
    out = Path(args.out)
    jsonl = check_output_writable(out / "graphs.jsonl")
    export = check_output_writable(out / EXPORT_FILES[args.format]) if args.format else None
    from ..workloads import run_workload

    model = None
    if args.method == "model":
        from ..decoding.models import load_model

        adapter = resolve_adapter(args.adapter)
        model = load_model(args.model, adapter) if args.model or args.adapter else None
    run = run_workload(
        request.start,
        request.end,
        request.num_traces,
        request.include,
        method=args.method,
        seed=args.seed,
        model=model,
        temperature=args.temperature,
        top_k=args.top_k,
        data=baseline,
        max_edges=args.max_edges,
    )
    from ..io import write_jsonl

    write_jsonl(run.graphs, jsonl)
    written = [str(jsonl)]
    if export is not None:
        from ..exports import write

        write(run.graphs, export, args.format)
        written.append(str(export))
    summary = {
        "method": run.method,
        "traces": len(run.graphs),
        "services": len({g.service for g in run.graphs}),
        "seed": run.seed,
        "files": written,
    }
    print(json.dumps(summary))
    return 0


__all__ = ["EXPORT_FORMATS", "register_workload"]
