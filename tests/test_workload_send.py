"""`tracegrammar workload --send`: once the files are written, every span reaches an OTLP receiver
started here, each trace keeping its arrival offset in the window (`--send-start window`: the very
times of graphs.jsonl); an unreachable endpoint is one line, a non-zero exit, the files kept. And
`--ray`/`--send`/`--rate`/`--send-start` refusals: one line, exit 2, before torch."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tracegrammar.cli import main
from tracegrammar.io import read_jsonl
from tracegrammar.times import parse_time

from .test_cli_refusals import ROOT, RUNNER
from .test_exports_send import closed_port, http_receiver, received_spans  # noqa: F401
from .test_workload_cli import CSV, T0, T1


@pytest.fixture
def argv(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text(CSV)
    out = tmp_path / "w"
    return [
        "workload", "--start", T0, "--end", T1, "--num-traces", "6", "--out", str(out),
        "--method", "baseline", "--data", str(data), "--seed", "4",
    ]  # fmt: skip


def _roots(received) -> list[int]:
    """The root spans' start times (ns), in order."""
    return sorted(s.start_time_unix_nano for s, _ in received_spans(received).values()
                  if not s.parent_span_id)  # fmt: skip


@pytest.mark.parametrize("send_start", ["now", "window"])
def test_every_span_arrives_keeping_the_arrival_offsets(
    argv,
    tmp_path,
    http_receiver,  # noqa: F811
    capsys,
    send_start,
):
    endpoint, received = http_receiver
    extra = ["--send", endpoint, "--rate", "1000/s", "--send-start", send_start]
    assert main([*argv, *extra]) == 0
    summary, sent = capsys.readouterr().out.strip().splitlines()
    graphs = list(read_jsonl(tmp_path / "w" / "graphs.jsonl"))
    assert json.loads(summary)["traces"] == len(graphs) == 6
    spans = sum(g.num_edges for g in graphs)
    assert sent.startswith(f"sent 6 traces ({spans} spans)") and "failed" not in sent
    assert len(received_spans(received)) == spans
    stamps_ns = [round(g.timestamp * 1e9) for g in graphs]  # type: ignore[operator]
    roots = _roots(received)
    offsets = [t - roots[0] for t in roots]
    assert offsets == pytest.approx([t - stamps_ns[0] for t in stamps_ns], abs=1e6)
    assert offsets[-1] > 0  # the arrivals are spread, so the check above can fail
    if send_start == "window":  # the spans carry the times written in graphs.jsonl
        assert roots == pytest.approx(stamps_ns, abs=1e6)
    else:
        assert roots[0] > parse_time(T1) * 1e9  # sent now, not in 2025


def test_an_unreachable_endpoint_is_one_line_and_keeps_the_files(
    argv, tmp_path, capsys, monkeypatch
):
    from tracegrammar.exports import send

    # no retries and a short timeout, so a refused connection fails in a second
    quick = functools.partial(send.send_graphs, retries=0, timeout=1.0)
    monkeypatch.setattr(send, "send_graphs", quick)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    assert main([*argv, "--send", endpoint]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and endpoint in err[0]
    assert len(list(read_jsonl(tmp_path / "w" / "graphs.jsonl"))) == 6


def test_bad_ray_and_send_flags_refused_before_torch(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text(CSV)
    out = str(tmp_path / "w")
    win = ["workload", "--out", out, "--num-traces", "3", "--start", T0, "--end", T1]
    base = [*win, "--method", "baseline", "--data", str(data)]
    cases = [
        ([*win, "--ray", "--workers", "0"], ["--workers", "0"]),
        ([*base, "--send", "ftp://127.0.0.1:1"], ["--send", "ftp://"]),
        ([*base, "--send", "http://"], ["--send", "http://"]),
        ([*base, "--send", "http://127.0.0.1:1", "--rate", "fast"], ["--rate", "fast"]),
        ([*base, "--send", "http://127.0.0.1:1", "--send-start", "soon"], ["--send-start", "soon"]),
        ([*base, "--ray"], ["--ray", "baseline"]),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps([a for a, _ in cases])],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (args, needles), (code, err, torch_loaded) in zip(
        cases, json.loads(proc.stdout), strict=True
    ):
        assert code == 2, (args, err)
        assert len(err) == 1 and err[0].startswith("tracegrammar: error: "), (args, err)
        assert all(n in err[0] for n in needles), (args, err[0], needles)
        assert not torch_loaded, (args, "torch was imported before the refusal")
    assert not (tmp_path / "w").exists()


def test_ray_without_the_extra_names_it(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    argv = ["workload", "--start", T0, "--end", T1, "--num-traces", "2", "--ray"]
    assert main([*argv, "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'tracegrammar[ray]'" in err


def test_offsets_keep_the_span_times_when_a_rate_sets_the_pace(http_receiver, monkeypatch):  # noqa: F811
    from tracegrammar.exports import send

    from .test_exports_send import GRAPHS, START_NS, FakeClock

    fake = FakeClock()  # the schedule sleeps on this clock: nothing waits
    made = functools.partial(send.Schedule, clock=fake.clock, sleep=fake.sleep)
    monkeypatch.setattr(send, "Schedule", made)
    endpoint, received = http_receiver
    offsets = [0.0, 7.25]
    report = send.send_graphs(
        GRAPHS, endpoint, rate=1000, offsets=offsets, start="2025-03-01T12:00:00Z"
    )
    assert report.traces_sent == 2
    assert _roots(received) == [START_NS, START_NS + 7_250_000_000]  # the offsets' times
    assert sum(fake.sleeps) <= 0.001 + 1e-9  # at 1000/s, not the 7.25 s the offsets span
    fake.sleeps.clear()
    send.send_graphs(GRAPHS, endpoint, offsets=offsets, start="2025-03-01T12:00:00Z")
    assert sum(fake.sleeps) == 7.25  # without a rate, the arrivals set the pace
