"""`tracegrammar workload`: bad windows are refused in one line naming the flag and the value,
exit 2, before torch is imported; the baseline method writes stamped graphs and an export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tracegrammar.cli import main
from tracegrammar.io import read_jsonl
from tracegrammar.times import parse_time

from .test_cli_refusals import ROOT, RUNNER

CSV = (
    "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"
    "T1,1000,S_1,0,USER,MS_1,http,9\nT1,1001,S_1,0.1,MS_1,MS_2,rpc,3\n"
    "T2,3000,S_2,0,USER,MS_1,http,7\nT2,3002,S_2,0.1,MS_1,MS_3,db,2\n"
    "T3,9000,S_1,0,USER,MS_1,http,5\n"
)
T0, T1 = "2025-03-01T12:00:00Z", "2025-03-01T12:00:10Z"


def test_bad_windows_refused_before_torch(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text(CSV)
    (tmp_path / "file").write_text("")
    out = str(tmp_path / "w")
    win = ["workload", "--out", out, "--num-traces", "3"]
    base = [*win, "--method", "baseline", "--data", str(data)]
    cases = [
        ([*win, "--start", T1, "--end", T0], ["--end", T0, "after start"]),
        ([*win, "--start", T0, "--end", T0], ["--end", T0]),
        ([*win, "--start", "yesterday", "--end", T1], ["--start", "yesterday"]),
        ([*win, "--start", T0, "--end", "12:99"], ["--end", "12:99"]),
        (
            ["workload", "--out", out, "--num-traces", "0", "--start", T0, "--end", T1],
            ["--num-traces", "0"],
        ),
        ([*win, "--start", T0, "--end", T1, "--include", "S_999999999999"], ["S_999999999999"]),
        ([*base, "--start", T0, "--end", T1, "--include", "S_7"], ["--include", "S_7"]),
        ([*base, "--start", T0, "--end", T1, "--include", "X_7"], ["--include", "X_7"]),
        (
            [*base, "--start", T0, "--end", T1, "--include", "S_1,S_2,S_3,S_4"],
            ["--include", "S_1,S_2,S_3,S_4", "num_traces=3"],
        ),
        ([*win, "--method", "baseline", "--start", T0, "--end", T1], ["--data"]),
        ([*win, "--start", T0, "--end", T1, "--temperature", "nan"], ["--temperature", "nan"]),
        (
            [
                "workload",
                "--out",
                str(tmp_path / "file"),
                "--num-traces",
                "2",
                "--start",
                T0,
                "--end",
                T1,
            ],
            [str(tmp_path / "file")],
        ),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps([argv for argv, _ in cases])],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (argv, needles), (code, err, torch_loaded) in zip(
        cases, json.loads(proc.stdout), strict=True
    ):
        assert code == 2, (argv, err)
        assert len(err) == 1 and err[0].startswith("tracegrammar: error: "), (argv, err)
        assert all(n in err[0] for n in needles), (argv, err[0], needles)
        assert not torch_loaded, (argv, "torch was imported before the refusal")
    assert not (tmp_path / "w").exists()


def test_baseline_workload_writes_stamped_graphs(tmp_path, capsys):
    data = tmp_path / "t.csv"
    data.write_text(CSV)
    out = tmp_path / "w"
    argv = ["workload", "--start", T0, "--end", T1, "--num-traces", "6", "--include", "S_2"]
    argv += ["--out", str(out), "--method", "baseline", "--data", str(data), "--seed", "4"]
    assert main([*argv, "--format", "alibaba-csv"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["traces"] == 6 and summary["seed"] == 4
    graphs = list(read_jsonl(out / "graphs.jsonl"))
    assert len(graphs) == 6 and "S_2" in {g.service for g in graphs}
    stamps = [g.timestamp for g in graphs]
    assert stamps == sorted(stamps)
    assert all(parse_time(T0) <= t < parse_time(T1) for t in stamps)  # type: ignore[operator]
    assert (out / "graphs.csv").read_text().count("\n") >= 7
    first = (out / "graphs.jsonl").read_text()
    assert main([*argv]) == 0
    assert (out / "graphs.jsonl").read_text() == first  # same seed, same workload
