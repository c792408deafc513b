"""`send_graphs`: spans reach an OTLP receiver started here on 127.0.0.1 (HTTP/protobuf, and gRPC
when grpcio is there) with the graphs' ids, parents and times moved to the start; the rate is
checked on the schedule with an injected clock, never on the wall clock."""

from __future__ import annotations

import gzip
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracegrammar.errors import InputError, SendError
from tracegrammar.exports._spans import spans
from tracegrammar.exports.send import Schedule, parse_rate, parse_start, send_graphs
from tracegrammar.types import CallGraph, Edge

GRAPHS = [
    CallGraph("S_1", (
        Edge("0", "USER", "MS_1", "http", 0, 20),
        Edge("0.1", "MS_1", "MS_2", "rpc", 2, 10),
        Edge("0.1.1", "MS_2", "MS_4", "mc", 3, 4),
        Edge("0.2", "MS_1", "MS_3", "db", 11, 15),
    )),
    CallGraph("S_2", (Edge("0", "USER", "MS_9", "rpc", 0, 7),)),
]  # fmt: skip
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
START_NS = int(START.timestamp()) * 10**9


class FakeClock:
    """time.monotonic and time.sleep for a schedule: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# ------------------------------------------------------------------------------------------------
# receivers
# ------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append((self.path, request))  # type: ignore[attr-defined]
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.received  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_receiver():
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    received: list[tuple[str, ExportTraceServiceRequest]] = []

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            received.append(("grpc", request))
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(None)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def received_spans(received):
    out = {}
    for _, request in received:
        for rs in request.resource_spans:
            service = next(a.value.string_value for a in rs.resource.attributes
                           if a.key == "service.name")  # fmt: skip
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out[s.span_id.hex()] = (s, service)
    return out


def expected_spans(count: int, offset_s):
    return [
        s
        for i in range(count)
        for s in spans(GRAPHS[i % len(GRAPHS)], i, START_NS + round(offset_s(i) * 1e9))
    ]


# ------------------------------------------------------------------------------------------------
# laws
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("rate", [None, 40.0])
def test_every_span_arrives_with_its_ids_parents_and_times(
    protocol, rate, http_receiver, grpc_receiver
):
    endpoint, received = http_receiver if protocol == "http" else grpc_receiver
    fake = FakeClock()
    schedule = Schedule(rate, clock=fake.clock, sleep=fake.sleep)
    report = send_graphs(
        GRAPHS, endpoint, protocol=protocol, rate=rate, count=5, start=START, schedule=schedule
    )
    want = expected_spans(5, schedule.offset)
    got = received_spans(received)
    assert report.traces_sent == 5 and report.spans_sent == len(want) == len(got)
    assert report.traces_failed == report.spans_failed == 0
    for s in want:
        pb, service = got[s.span_id]
        assert pb.trace_id.hex() == s.trace_id
        assert (pb.parent_span_id.hex() or None) == s.parent_id
        assert (pb.start_time_unix_nano, pb.end_time_unix_nano) == (s.start_ns, s.end_ns)
        assert service == s.local and pb.name == s.name
    if protocol == "http":
        assert {path for path, _ in received} == {"/v1/traces"}
    roots = sorted(s.start_ns for s in want if s.parent_id is None)
    step = 0 if rate is None else round(1e9 / rate)
    assert roots == [START_NS + i * step for i in range(5)]


def test_the_schedule_paces_sends_at_the_rate():
    fake = FakeClock()
    schedule = Schedule(50.0, clock=fake.clock, sleep=fake.sleep)
    for i in range(100):
        schedule.wait(i)
        assert fake.now == pytest.approx(i / 50)
        assert schedule.due(i, 100 - i) == 1
    assert fake.now / 99 == pytest.approx(1 / 50)


def test_a_late_sender_sends_the_backlog_at_once():
    fake = FakeClock()
    schedule = Schedule(50.0, clock=fake.clock, sleep=fake.sleep)
    schedule.wait(0)
    fake.now += 0.1  # the first export took 100 ms: traces 1..5 are due
    assert schedule.due(1, 1000) == 5
    assert schedule.due(1, 3) == 3
    schedule.wait(6)
    assert fake.sleeps == [pytest.approx(0.02)]


def test_a_duration_at_a_rate_sends_rate_times_duration(http_receiver):
    endpoint, received = http_receiver
    fake = FakeClock()
    schedule = Schedule(20.0, clock=fake.clock, sleep=fake.sleep)
    report = send_graphs(GRAPHS, endpoint, rate="20/s", duration=1.5, schedule=schedule)
    assert report.traces_sent == 30
    assert len({pb.trace_id for pb, _ in received_spans(received).values()}) == 30


def test_an_unreachable_endpoint_is_one_line():
    endpoint = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(SendError) as info:
        send_graphs(GRAPHS, endpoint, retries=0, timeout=1.0)
    assert endpoint in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("50/s", 50.0), ("50", 50.0), ("3000/min", 50.0), ("2/h", 2 / 3600), ("0.5 / s", 0.5)],
)
def test_rates_parse(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "0/s", "-1/s", "fast", "50/d", "50/s/s"])
def test_bad_rates_are_refused(text):
    with pytest.raises(InputError, match="rate must"):
        parse_rate(text)


def test_start_times_parse():
    assert parse_start("2025-03-01T12:00:00") == START_NS
    assert parse_start("2025-03-01T13:00:00+01:00") == START_NS
    assert parse_start(START) == START_NS
    with pytest.raises(InputError, match="start must"):
        parse_start("yesterday")


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1:1", "127.0.0.1:4318", "http://"])
def test_bad_endpoints_are_refused(endpoint):
    with pytest.raises(InputError, match="endpoint must"):
        send_graphs(GRAPHS, endpoint)


def test_a_huge_count_without_a_rate_looks_ahead_one_batch_at_most():
    """count=10**23 at once used to make `due` count every trace before the first export."""

    class Counting(Schedule):
        looked = 0

        def offset(self, i: int) -> float:
            Counting.looked += 1
            return super().offset(i)

    endpoint = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(SendError):
        send_graphs(GRAPHS, endpoint, count=10**23, retries=0, timeout=1.0, schedule=Counting())
    assert 0 < Counting.looked <= 2 * 512
