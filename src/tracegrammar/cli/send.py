"""`tracegrammar send`: graphs as spans to an OTLP endpoint (a collector, Jaeger or Zipkin through
their OTLP receivers) at a target rate, through the OpenTelemetry SDK's exporters
(`tracegrammar.exports.send`). Exit 1 when any trace failed; an unreachable endpoint is one line,
exit 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import UsageError
from ..types import CallGraph
from .common import read_graphs


def register_send(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path", metavar="FILE", help="graphs (.jsonl; invalid records skipped) or traces"
    )
    p.add_argument(
        "--endpoint", required=True, metavar="URL", help="OTLP endpoint, e.g. http://127.0.0.1:4318"
    )
    p.add_argument("--protocol", choices=("http", "grpc"), default="http", help="OTLP transport")
    p.add_argument("--rate", help="traces per second, e.g. 50/s or 3000/min (default: at once)")
    p.add_argument("--duration", type=float, help="seconds to send for (cycling over the graphs)")
    p.add_argument("--count", type=int, help="traces to send (default: each graph once)")
    p.add_argument("--start", default="now", help="start of the first trace: now or an ISO time")
    p.add_argument("--retries", type=int, default=2, help="re-exports of a failed batch")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per export attempt")
    p.set_defaults(func=cmd_send)


def valid_graphs(path: str | Path) -> Iterator[CallGraph]:
    """`read_graphs`, without the records `generate` marked invalid."""
    if not str(path).endswith(".jsonl"):
        yield from read_graphs(path)
        return
    from ..io import graph_from_dict, read_jsonl

    next(iter(read_jsonl(path)), None)  # a bad file fails here, with read_jsonl's message
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                if record.get("valid", True):
                    yield graph_from_dict(record)


def check_send_flags(args: argparse.Namespace) -> None:
    """Every flag, before the file is read or the SDK imported; an error names the flag."""
    from ..errors import InputError
    from ..exports import send

    checks: tuple[tuple[str, Callable[[], object]], ...] = (
        ("--endpoint", lambda: send.check_endpoint(args.endpoint, args.protocol)),
        ("--rate", lambda: send.parse_rate(args.rate) if args.rate is not None else None),
        ("--start", lambda: send.parse_start(args.start)),
        ("--duration", lambda: send.check_duration(args.duration)),
        ("--count", lambda: send.check_count(args.count)),
        ("--retries", lambda: send.check_retries(args.retries)),
        ("--timeout", lambda: send.check_timeout(args.timeout)),
    )
    for flag, check in checks:
        try:
            check()
        except InputError as exc:
            raise UsageError(f"{flag}: {exc}") from None


def cmd_send(args: argparse.Namespace) -> int:
    from ..exports.send import parse_rate, send_graphs

    check_send_flags(args)
    rate = parse_rate(args.rate) if args.rate is not None else None
    graphs = list(valid_graphs(args.path))
    if not graphs:
        raise UsageError(f"{args.path}: no valid graph to send")
    report = send_graphs(
        graphs,
        args.endpoint,
        protocol=args.protocol,
        rate=rate,
        duration=args.duration,
        count=args.count,
        start=args.start,
        retries=args.retries,
        timeout=args.timeout,
    )
    print(report.summary())
    return 0 if not report.traces_failed else 1
