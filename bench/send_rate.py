"""Sending at a rate: traces sent to a local OTLP/HTTP receiver (127.0.0.1) at `--rate`, the rate
measured on the receiver's clock (first to last arrival), for the acceptance check "within 10%".

    .venv/bin/python bench/send_rate.py [--rate 50] [--count 250] [--protocol http]

The graphs are a fixed 4-call graph (the sending cost does not depend on the model). Writes
bench/results/send_rate.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from common import machine, write
from tracegrammar.exports.send import send_graphs
from tracegrammar.types import CallGraph, Edge

GRAPH = CallGraph("S_1", (
    Edge("0", "USER", "MS_1", "http", 0, 20),
    Edge("0.1", "MS_1", "MS_2", "rpc", 2, 10),
    Edge("0.1.1", "MS_2", "MS_4", "mc", 3, 4),
    Edge("0.2", "MS_1", "MS_3", "db", 11, 15),
))  # fmt: skip


class Receiver(BaseHTTPRequestHandler):
    arrivals: ClassVar[list[tuple[float, int]]] = []  # (time, root spans in the request)

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        roots = sum(1 for rs in request.resource_spans for ss in rs.scope_spans
                    for s in ss.spans if not s.parent_span_id)  # fmt: skip
        Receiver.arrivals.append((time.monotonic(), roots))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--count", type=int, default=250)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    report = send_graphs([GRAPH], endpoint, rate=args.rate, count=args.count)
    server.shutdown()
    arrivals = sorted(Receiver.arrivals)
    traces = sum(n for _, n in arrivals)
    span = arrivals[-1][0] - arrivals[0][0]
    measured = (traces - arrivals[0][1]) / span if span > 0 else float("inf")
    error = measured / args.rate - 1
    data = {
        "args": vars(args), "machine": machine(), "traces_received": traces,
        "exports": len(arrivals), "first_to_last_s": round(span, 3),
        "measured_rate": round(measured, 2), "relative_error": round(error, 4),
        "report": report.summary(),
    }  # fmt: skip
    md = "\n".join([
        "# Sending at a rate (OTLP/HTTP to a local receiver)",
        "",
        f"Target {args.rate:g} traces/s, {args.count} traces; {data['machine']['cpu']}, "
        f"{data['machine']['cores']} cores; {data['machine']['date']}.",
        "",
        f"- received {traces} traces in {len(arrivals)} exports, first to last arrival "
        f"{span:.2f} s",
        f"- measured rate {measured:.2f} traces/s: {100 * error:+.1f}% from the target "
        f"({'within' if abs(error) <= 0.10 else 'NOT within'} 10%)",
        f"- sender: {report.summary()}",
        "",
        "The rate is measured on the receiver's clock over the arrivals after the first "
        "(n - 1 intervals), so the sender's start-up is not counted.",
        "",
    ])  # fmt: skip
    write("send_rate", data, md)


if __name__ == "__main__":
    main()
