"""An audit of the CLI's error messages: bad invocations of every command each end with exit
status 2 and exactly one line on stderr naming the flag, field or file and the value, no
traceback, before torch is imported (each runs with `import torch` made to fail).

`test_cli_refusals.py` checks the generate/train/baseline/infill refusals in a fresh interpreter;
this file covers the rest in-process, argparse's own errors included."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tracegrammar.cli import main

CSV = "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\nT1,0,S_1,0,USER,MS_1,http,5\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracegrammar.io import write_jsonl
    from tracegrammar.traces import load_traces

    tmp = tmp_path_factory.mktemp("bad-invocations")
    (tmp / "file").write_text("x")
    (tmp / "t.csv").write_text(CSV)
    write_jsonl(load_traces(tmp / "t.csv"), tmp / "g.jsonl")
    return tmp


# (argv, strings the one error line must hold); "{T}" is the folder of the files above
CASES: list[tuple[list[str], list[str]]] = [
    # argparse's own refusals: one line too, naming the flag and the value
    (["generate", "--service", "S_1", "--out", "{T}/o.jsonl", "-n", "abc"], ["-n", "'abc'"]),
    (["generate", "--service", "S_1", "--out", "{T}/o.jsonl", "-n", "inf"], ["-n", "'inf'"]),
    (
        ["generate", "--service", "S_1", "--out", "{T}/o.jsonl", "--format", "xml"],
        ["--format", "'xml'"],
    ),
    (["generate", "--service", "S_1"], ["--out", "required"]),
    (["export", "{T}/g.jsonl", "--format", "xml", "--out", "{T}/o.json"], ["--format", "'xml'"]),
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--protocol", "udp"],
        ["--protocol", "'udp'"],
    ),
    (["bench", "validity", "--modes", "magic"], ["--modes", "'magic'"]),
    (["bench", "validity", "--only", "3y4"], ["--only", "'3y4'"]),
    (["bench", "validity", "--temperatures", "warm"], ["--temperatures", "'warm'"]),
    ([], ["COMMAND"]),
    (["bench"], ["BENCH"]),
    (["data"], ["ACTION"]),
    (["nosuch"], ["COMMAND", "'nosuch'"]),
    # generate
    (
        ["generate", "--service", "S_1", "--out", "{T}/o.jsonl", "--temperature", "nan"],
        ["--temperature", "nan"],
    ),
    (["generate", "--service", "S_abc", "--out", "{T}/o.jsonl"], ["--service", "S_abc"]),
    (["generate", "--service", "S_1", "--out", "{T}/file/o.jsonl"], ["{T}/file/o.jsonl"]),
    (["generate", "--service", "S_1", "--out", "{T}/o.jsonl", "--rate", "0/s"], ["--rate", "0/s"]),
    # send
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--rate", "inf"],
        ["--rate", "inf"],
    ),
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--start", "yesterday"],
        ["--start", "yesterday"],
    ),
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--start", "1960-01-01"],
        ["--start", "1960-01-01"],
    ),
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--duration", "inf"],
        ["--duration", "inf"],
    ),
    (["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--count", "0"], ["--count", "0"]),
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--retries", "-1"],
        ["--retries", "-1"],
    ),
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--timeout", "0"],
        ["--timeout", "0"],
    ),
    (
        ["send", "{T}/g.jsonl", "--endpoint", "http://127.0.0.1:9", "--timeout", "inf"],
        ["--timeout", "inf"],
    ),
    (["send", "{T}/g.jsonl", "--endpoint", "ftp://x"], ["--endpoint", "ftp://x"]),
    (["send", "{T}/missing.jsonl", "--endpoint", "http://127.0.0.1:9"], ["{T}/missing.jsonl"]),
    # export, draw, data, eval, baseline
    (
        ["export", "{T}/g.jsonl", "--format", "jaeger-json", "--out", "{T}/file/o.json"],
        ["{T}/file/o.json"],
    ),
    (
        ["export", "{T}/missing.jsonl", "--format", "jaeger-json", "--out", "{T}/o.json"],
        ["{T}/missing.jsonl"],
    ),
    (["draw", "{T}/g.jsonl", "--out", "{T}/x.gif"], ["{T}/x.gif", ".gif"]),
    (["draw", "{T}/g.jsonl", "--out", "{T}/x.png", "--index", "-1"], ["--index", "-1"]),
    (["draw", "{T}/g.jsonl", "--out", "{T}/x.png", "--index", "9" * 23], ["{T}/g.jsonl", "9" * 23]),
    (["data", "stats", "{T}/missing.csv"], ["{T}/missing.csv"]),
    (["data", "show", "{T}/t.csv", "--index", "9"], ["{T}/t.csv", "9"]),
    (
        ["eval", "--real", "{T}/t.csv", "--synthetic", "{T}/g.jsonl", "--out", "{T}/file"],
        ["{T}/file"],
    ),
    (
        [
            "baseline",
            "--data",
            "{T}/t.csv",
            "--service",
            "S_1",
            "--out",
            "{T}/o.jsonl",
            "--latency",
            "-1",
        ],
        ["--latency", "-1"],
    ),
    (
        ["generate", "--service", "S_1", "--out", "{T}/o.jsonl", "--rate", "-5/s"],
        ["--rate", "--rate=VALUE"],
    ),
    # train: refused before torch
    (
        ["train", "--data", "{T}/t.csv", "--out", "{T}/a", "--stop-after", "0"],
        ["--stop-after", "0"],
    ),
    (["train", "--data", "{T}/t.csv", "--out", "{T}/a", "--base", "{T}"], ["--base", "{T}"]),
    (["train", "--data", "{T}/t.csv", "--out", "{T}/a", "--epochs", "inf"], ["--epochs", "inf"]),
    (["train", "--data", "{T}/t.csv", "--out", "{T}/a", "--lr", "-1"], ["--lr", "-1"]),
    (
        ["train", "--data", "{T}/t.csv", "--out", "{T}/a", "--batch-size", "30"],
        ["--batch-size", "30"],
    ),
    # bench
    (["bench", "validity", "--data", "{T}/t.csv", "--samples", "0"], ["--samples", "0"]),
    (["bench", "validity", "--data", "{T}/t.csv", "--cells", "-1"], ["--cells", "-1"]),
    (
        ["bench", "validity", "--data", "{T}/t.csv", "--temperatures", "inf"],
        ["--temperatures", "inf"],
    ),
    (["bench", "validity", "--data", "{T}/t.csv", "--time-limit", "nan"], ["--time-limit", "nan"]),
    (["bench", "validity", "--data", "{T}/missing"], ["--data", "{T}/missing"]),
    (["bench", "validity", "--data", "{T}/t.csv", "--out", "{T}/file"], ["--out", "{T}/file"]),
    (["bench", "validity", "--data", "{T}/t.csv", "--model", "{T}"], ["--model", "{T}"]),
    (
        ["bench", "fidelity", "--data", "{T}/t.csv", "--temperature", "inf"],
        ["--temperature", "inf"],
    ),
    (["bench", "fidelity", "--data", "{T}/t.csv", "--out", "{T}/file"], ["--out", "{T}/file"]),
    (["bench", "fidelity", "--data", "{T}/t.csv", "--adapter", "{T}"], ["--adapter", "{T}"]),
    (["bench", "infill", "--data", "{T}/t.csv", "--out", "{T}/file"], ["--out", "{T}/file"]),
    (["bench", "infill", "--data", "{T}/t.csv", "--time-limit", "-1"], ["--time-limit", "-1"]),
]


@pytest.mark.parametrize(
    "argv, needles", CASES, ids=[" ".join(a)[:70] or "(no command)" for a, _ in CASES]
)
def test_one_line_naming_the_flag_and_value(argv, needles, files, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
    if argv[:1] == ["bench"] and len(argv) > 1 and "--out" not in argv:
        argv = [*argv, "--out", "{T}/bench"]  # never the default folder in the checkout
    argv = [a.replace("{T}", str(files)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("tracegrammar: error: "), (argv, err)
    for needle in needles:
        assert needle.replace("{T}", str(files)) in lines[0], (argv, lines[0], needle)
    assert not any((files / name).exists() for name in ("o.jsonl", "o.json", "a", "bench"))
