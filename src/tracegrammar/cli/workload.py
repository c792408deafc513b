"""`tracegrammar workload`: a window of traffic, coarse to fine (the window's graph contexts, then
each graph), written to a folder as graphs.jsonl (each line stamped with its arrival) and, with
`--format`, one export file.

`--ray [ADDRESS] --workers N`: the contexts are written here (one model call), the graphs on Ray
actors (`distributed.run_workload_distributed`; shards and manifest in DIR/shards, a rerun
resumes); same seed, same files as one process. `--send URL`: once the files are written, the
spans go to an OTLP endpoint, each trace at the send start (`--send-start`: now by default, or
`window`, the window's own start, or an ISO time) plus its arrival offset in the window, paced by
the arrivals, or by `--rate`. The window's `--start` stays what graphs.jsonl holds.

Every flag is checked before torch is imported: times that do not parse, an end not after the
start, zero traces, a required id the model's reference (or the baseline's data) does not know,
an output folder that cannot hold the files, a bad `--workers`, `--send`, `--rate` or
`--send-start`, `--ray` without the `ray` extra or with the baseline. Each is one line naming the flag and the value,
exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..context_prior import DEFAULT_PRIOR, PRIOR_MODES
from ..errors import ConstraintError, UsageError
from ..exports import EXPORT_FORMATS
from ..io import check_output_writable
from ..workloads import WORKLOAD_METHODS, WindowRequest
from .common import (
    check_model_flags,
    check_ray_and_send,
    comma_list,
    read_all,
    register_ray_and_send,
    resolve_adapter,
)

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
    p.add_argument(
        "--prior",
        choices=PRIOR_MODES,
        default=DEFAULT_PRIOR,
        help="how the model's contexts draw services and arrivals: data (default: the "
        "reference's service mix, Poisson arrivals), product (the model's logits times that "
        "prior) or off (the model alone; the adapter was never trained on this task)",
    )
    p.add_argument("--model", help="base model directory (default: the embedded one)")
    p.add_argument("--adapter", help="LoRA adapter folder (default: shipped; `none`: bare base)")
    register_ray_and_send(
        p,
        "generate the graphs on Ray actors (the contexts are written here first; no address: a "
        "local cluster; 'auto' or HOST:6379 joins one); shards and manifest.json go to "
        "DIR/shards, a rerun resumes",
        "traces per second when sending, e.g. 50/s (the span times keep the arrivals; "
        "default: sent as they arrive)",
    )
    p.add_argument(
        "--send-start",
        default="now",
        metavar="TIME",
        help="with --send, when the window's start is in the sent spans: now (default), window "
        "(the times in graphs.jsonl) or an ISO 8601 time; each trace keeps its arrival offset",
    )
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
    check_ray_and_send(args)
    if args.ray is not None and args.method != "model":
        raise UsageError(
            f"--ray runs the model's graphs on actors; --method {args.method} needs none"
        )
    if args.send is not None and args.send_start != "window":
        from ..exports.send import parse_start

        try:
            parse_start(args.send_start)
        except ValueError as exc:
            raise UsageError(f"--send-start: {exc}") from None
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
    shards = check_output_writable(out / "shards" / "manifest.json").parent if args.ray else None
    run = (
        _workload_on_ray(args, request, shards)
        if shards is not None
        else _workload_here(args, request, baseline)
    )
    from ..io import write_jsonl

    write_jsonl(run.graphs, jsonl)
    written = [str(jsonl)]
    if export is not None:
        from ..exports import write

        write(run.graphs, export, args.format)
        written.append(str(export))
    summary: dict[str, object] = {
        "method": run.method,
        "traces": len(run.graphs),
        "services": len({g.service for g in run.graphs}),
        "seed": run.seed,
        "files": written,
    }
    if shards is not None:
        summary["ray"] = {
            "shards_run": run.stats["shards_run"],
            "shards_skipped": run.stats["shards_skipped"],
            "workers": run.stats["workers"],
            "seconds": round(run.stats["graph_wall_s"], 1),
            "shards": str(shards),
        }
    print(json.dumps(summary), flush=True)
    if args.send is not None:
        return _send_workload(args, run)
    return 0


def _workload_here(args: argparse.Namespace, request: WindowRequest, baseline: object) -> Any:
    from ..workloads import run_workload

    model = None
    if args.method == "model":
        from ..decoding.models import load_model

        adapter = resolve_adapter(args.adapter)
        model = load_model(args.model, adapter) if args.model or args.adapter else None
    return run_workload(
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
        prior=args.prior,
    )


def _workload_on_ray(args: argparse.Namespace, request: WindowRequest, shards: Path) -> Any:
    """`--ray`: the contexts here, the graphs on actors (shards in DIR/shards). Without --seed a
    rerun takes the seed of the job already there, so it resumes."""
    from ..distributed.workload import run_workload_distributed

    return run_workload_distributed(
        request.start,
        request.end,
        request.num_traces,
        request.include,
        out_dir=shards,
        workers=args.workers,
        actors_per_gpu=args.actors_per_gpu,
        address=None if args.ray == "local" else args.ray,
        seed=args.seed,
        model=args.model,
        adapter="default" if args.adapter is None else resolve_adapter(args.adapter),
        temperature=args.temperature,
        top_k=args.top_k,
        max_edges=args.max_edges,
        prior=args.prior,
    )


def _send_workload(args: argparse.Namespace, run: Any) -> int:
    """`--send`: the graphs' spans, trace i starting at the send start plus its arrival offset
    in the window (so `--send-start window` sends the times written in graphs.jsonl); paced by
    the arrivals, or by `--rate` when given."""
    from ..exports.send import send_graphs
    from ..workloads import arrival_offsets

    start: Any = args.send_start
    if start == "window":
        from datetime import UTC, datetime

        start = datetime.fromtimestamp(run.request.start, UTC)
    report = send_graphs(
        run.graphs,
        args.send,
        protocol=args.protocol,
        rate=args.rate,
        start=start,
        offsets=arrival_offsets(run.graphs, run.request.start),
    )
    print(report.summary())
    return 0 if not report.traces_failed else 1


__all__ = ["EXPORT_FORMATS", "register_workload"]
