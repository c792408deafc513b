"""Live sending: call graphs as spans to an OTLP endpoint (a collector, Jaeger's or Zipkin's
OTLP receiver), through the OpenTelemetry SDK's own OTLP exporters (HTTP/protobuf or gRPC).

Spans are those of every file export (`_spans`: ids, parents, kinds, attributes); only their
times move: trace i's root starts at `start` plus its arrival offset (i / rate, or offsets the
caller gives, e.g. a workload's arrival times), and every call keeps its offset from the root.
A graph's own `timestamp` is not read here: pass its offset from the first in `offsets`.
Sending follows the same schedule: trace i leaves when it is due, traces already due leave
together in one export; given both offsets and a rate, the rate sets the pace and the offsets
still set the times (a window of an hour sent in seconds keeps its arrivals). The exporters
retry transient failures within their `timeout`; a batch that still fails is exported again up
to `retries` times, then counted as failed. Nothing is sent before the caller has written its
graphs to a file, so a failure loses nothing.

Needs the `send` extra (`pip install 'tracegrammar[send]'`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from ..errors import InputError, MissingExtraError, SendError
from ..times import parse_datetime
from ..types import CallGraph
from ._spans import Span, spans, tags

PROTOCOLS = ("http", "grpc")
#: Spans per export at most: an OTLP request of a few hundred KiB.
MAX_BATCH_SPANS = 512
_RATE_RE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*")
_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}  # fmt: skip


def parse_rate(text: str) -> float:
    """Traces per second from `50/s`, `3000/min`, `2/h` or a bare number (per second)."""
    m = _RATE_RE.fullmatch(text)
    if m is None or float(m[1]) <= 0:
        raise InputError(f"rate must look like 50/s, 3000/min or 2/h (more than 0), got {text!r}")
    return float(m[1]) / _PER[m[2]]


def parse_start(text: str | datetime) -> int:
    """Epoch ns of `now` or of an ISO 8601 time (no zone: UTC); `tracegrammar.times` parses."""
    delta = parse_datetime(text, "start") - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


class Schedule:
    """When each trace is due: `offsets[i]` seconds after the first (default i / rate, or all
    at once without a rate). `clock` and `sleep` are injectable, so the schedule is tested
    without waiting."""

    def __init__(
        self,
        rate: float | None = None,
        offsets: Sequence[float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise InputError(f"rate must be a finite number of traces per second > 0, got {rate}")
        self.rate = rate
        self.offsets = offsets
        self.clock = clock
        self.sleep = sleep
        self.t0: float | None = None

    def offset(self, i: int) -> float:
        """Seconds after the first trace at which trace i is due (and starts)."""
        if self.offsets is not None:
            return float(self.offsets[i])
        return i / self.rate if self.rate else 0.0

    def elapsed(self) -> float:
        if self.t0 is None:
            self.t0 = self.clock()
        return self.clock() - self.t0

    def wait(self, i: int) -> None:
        """Return when trace i is due."""
        late = self.offset(i) - self.elapsed()
        if late > 0:
            self.sleep(late)

    def due(self, i: int, limit: int) -> int:
        """How many traces from i on (at least 1, at most `limit`) are due now."""
        now = self.elapsed()
        k = 1
        while k < limit and self.offset(i + k) <= now:
            k += 1
        return k


@dataclass
class SendReport:
    """What was sent, and what failed after every retry."""

    endpoint: str
    protocol: str
    traces_sent: int = 0
    spans_sent: int = 0
    traces_failed: int = 0
    spans_failed: int = 0
    seconds: float = 0.0
    last_error: str | None = None

    def summary(self) -> str:
        rate = self.traces_sent / self.seconds if self.seconds else 0.0
        text = (
            f"sent {self.traces_sent} traces ({self.spans_sent} spans) to {self.endpoint} "
            f"over OTLP/{self.protocol} in {self.seconds:.1f} s ({rate:.1f} traces/s)"
        )
        if self.traces_failed:
            text += f"; failed {self.traces_failed} traces ({self.spans_failed} spans)"
            if self.last_error:
                text += f": {self.last_error}"
        return text


def send_graphs(
    graphs: Sequence[CallGraph],
    endpoint: str,
    *,
    protocol: str = "http",
    rate: float | str | None = None,
    duration: float | None = None,
    count: int | None = None,
    start: str | datetime = "now",
    offsets: Sequence[float] | None = None,
    retries: int = 2,
    timeout: float = 10.0,
    schedule: Schedule | None = None,
) -> SendReport:
    """Send the graphs' spans to `endpoint` (`http://host:4318` or its `/v1/traces` for HTTP,
    `http://host:4317` for gRPC; `https` for TLS) and say what was sent and what failed.

    `count` traces are sent (default: each graph once; more cycle over the graphs, each copy a
    trace of its own), or as many as fit in `duration` seconds at `rate` (traces per second, or
    text like `50/s`). `offsets`: trace i's root starts `offsets[i]` seconds after `start`, and
    leaves then, or at i / `rate` when a rate is given too. Raises SendError when nothing could
    be delivered (an unreachable or refusing endpoint), MissingExtraError without the `send`
    extra."""
    plan = _plan(graphs, rate, duration, count, offsets, retries)
    exporter = make_exporter(endpoint, protocol, timeout)
    schedule = schedule or Schedule(plan.rate, None if plan.rate else offsets)
    base = parse_start(start)
    report = SendReport(endpoint, protocol)
    resources: dict[str, Any] = {}
    try:
        with _captured_sdk_logs() as errors:
            i = 0
            while i < plan.count and (duration is None or schedule.elapsed() < duration):
                schedule.wait(i)
                batch: list[Any] = []
                k = schedule.due(i, plan.count - i)
                for j in range(i, i + k):
                    graph = graphs[j % len(graphs)]
                    offset = schedule.offset(j) if offsets is None else float(offsets[j])
                    at = base + round(offset * 1e9)
                    batch.extend(_readable(s, resources) for s in spans(graph, j, at))
                    if len(batch) >= MAX_BATCH_SPANS:
                        k = j - i + 1
                        break
                ok = _export(exporter, batch, retries)
                if ok:
                    report.traces_sent += k
                    report.spans_sent += len(batch)
                else:
                    report.traces_failed += k
                    report.spans_failed += len(batch)
                    report.last_error = errors[-1] if errors else "the exporter reported a failure"
                    if not report.traces_sent:  # nothing ever got through: stop now
                        raise SendError(
                            f"{endpoint}: no span delivered over OTLP/{protocol} "
                            f"({report.last_error}); nothing more was sent"
                        )
                i += k
    finally:
        exporter.shutdown()
        report.seconds = schedule.elapsed()
    return report


@dataclass(frozen=True)
class _Plan:
    rate: float | None
    count: int


def _plan(
    graphs: Sequence[CallGraph],
    rate: float | str | None,
    duration: float | None,
    count: int | None,
    offsets: Sequence[float] | None,
    retries: int,
) -> _Plan:
    if not graphs:
        raise InputError("no graphs to send")
    per_s = parse_rate(rate) if isinstance(rate, str) else rate
    check_retries(retries)
    check_duration(duration)
    check_count(count)
    if count is None:
        count = len(graphs) if offsets is None else len(offsets)
        if duration is not None and offsets is None:  # as many as fit in the duration
            count = math.floor(per_s * duration) if per_s else 2**62
    if offsets is not None and count > len(offsets):
        raise InputError(f"offsets: {len(offsets)} given for {count} traces")
    return _Plan(per_s, count)


def check_retries(retries: int) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InputError(f"retries must be an integer >= 0, got {retries!r}")


def check_duration(duration: float | None) -> None:
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InputError(f"duration must be a finite number of seconds > 0, got {duration}")


def check_count(count: int | None) -> None:
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise InputError(f"count must be an integer >= 1, got {count!r}")


def check_timeout(timeout: float) -> None:
    if isinstance(timeout, bool) or not (
        isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0
    ):
        raise InputError(f"timeout must be a finite number of seconds > 0, got {timeout}")


def check_endpoint(endpoint: str, protocol: str = "http") -> None:
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def make_exporter(endpoint: str, protocol: str = "http", timeout: float = 10.0) -> Any:
    """The SDK's OTLP span exporter for `endpoint` (only http, https or grpc URLs)."""
    check_endpoint(endpoint, protocol)
    check_timeout(timeout)
    parsed = urlparse(endpoint)
    try:
        if protocol == "http":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            url = endpoint if parsed.path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"
            return OTLPSpanExporter(endpoint=url, timeout=timeout)
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        target = parsed.netloc
        return GrpcExporter(endpoint=target, insecure=parsed.scheme == "http", timeout=timeout)
    except ImportError:
        raise MissingExtraError(f"sending spans over OTLP/{protocol}", "send") from None


def _export(exporter: Any, batch: list[Any], retries: int) -> bool:
    from opentelemetry.sdk.trace.export import SpanExportResult

    ok = SpanExportResult.SUCCESS
    return any(exporter.export(batch) == ok for _ in range(retries + 1))


def _readable(s: Span, resources: dict[str, Any]) -> Any:
    """An SDK span (what instrumentation hands an exporter) with our ids and times."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

    from .otlp import SCOPE

    if s.local not in resources:  # one resource per microservice, as otlp-json groups them
        resources[s.local] = Resource({"service.name": s.local})
    trace = int(s.trace_id, 16)
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = SpanContext(trace, int(s.parent_id, 16), False, flags) if s.parent_id else None
    return ReadableSpan(
        name=s.name,
        context=SpanContext(trace, int(s.span_id, 16), False, flags),
        parent=parent,
        resource=resources[s.local],
        attributes=tags(s),
        kind=SpanKind[s.kind],
        start_time=s.start_ns,
        end_time=s.end_ns,
        instrumentation_scope=InstrumentationScope(SCOPE),
    )


@contextmanager
def _captured_sdk_logs() -> Iterator[list[str]]:
    """The SDK logs export failures (with a traceback on some paths); keep their first lines
    for the report instead of printing them."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                lines.append(" ".join(record.getMessage().split())[:300])

    log = logging.getLogger("opentelemetry")
    handler, propagate = Keep(), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
