"""Bad flags, files and output paths are refused with one line naming the flag or file and the
value, exit 2, before torch is imported (so before any model is loaded or anything generated)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracegrammar.constraints import MAX_GRAPHS_PER_RUN, MAX_NUM_EDGES

ROOT = Path(__file__).resolve().parents[1]

#: Runs each argv through main() in one fresh interpreter; after each, records the exit code, the
#: stderr lines and whether torch has been imported so far.
RUNNER = """
import contextlib, io, json, sys
from tracegrammar.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    out.append([code, err.getvalue().splitlines(), "torch" in sys.modules])
print(json.dumps(out))
"""


def _cases(tmp: Path) -> list[tuple[list[str], list[str]]]:
    """(argv, strings the one error line must hold)."""
    (tmp / "file").write_text("")
    os.mkfifo(tmp / "fifo")
    (tmp / "victim").write_text("keep")
    (tmp / "link.jsonl").symlink_to(tmp / "victim")
    (tmp / "huge.yaml").write_text("- {service: S_1, n: 100000000000}\n")
    (tmp / "wide.yaml").write_text(f"- {{service: S_1, num_edges: {MAX_NUM_EDGES + 1}}}\n")
    (tmp / "calls.yaml").write_text(
        "- {service: S_1823467, include_calls: ['MS_51779,MS_1860,rpc', 'MS_1,MS_2,rpc']}\n"
    )
    (tmp / "typo.yaml").write_text("- {service: S_1, include_calls: ['MS_1,MS_2,grpc']}\n")
    data = tmp / "t.csv"
    data.write_text(
        "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\nT1,0,S_1,0,USER,MS_1,http,5\n"
    )
    out = str(tmp / "g.jsonl")
    gen = ["generate", "--service", "S_1", "--out", out]
    train = ["train", "--data", str(data), "--out", str(tmp / "adapter")]
    base = ["baseline", "--data", str(data), "--service", "S_1", "--out", out]
    n_big = str(MAX_GRAPHS_PER_RUN + 1)
    e_big = str(MAX_NUM_EDGES + 1)
    return [
        ([*gen, "--temperature", "inf"], ["--temperature", "inf"]),
        ([*gen, "--temperature", "nan"], ["--temperature", "nan"]),
        ([*gen, "--temperature", "-1"], ["--temperature", "-1"]),
        ([*gen, "--top-k", "-1"], ["--top-k", "-1"]),
        ([*gen, "-n", "0"], ["-n", "got 0"]),
        ([*gen, "-n", n_big], ["-n", n_big, str(MAX_GRAPHS_PER_RUN)]),
        ([*gen, "--num-edges", e_big], ["--num-edges", e_big, str(MAX_NUM_EDGES)]),
        ([*gen, "--num-edges", "0"], ["--num-edges", "got 0"]),
        ([*gen, "--depth", "4", "--num-edges", "2"], ["--depth", "depth=4"]),
        (["generate", "--service", "X_1", "--out", out], ["--service", "X_1"]),
        (
            ["generate", "--requests", str(tmp / "huge.yaml"), "--out", out],
            ["huge.yaml", "100000000000"],
        ),
        (["generate", "--requests", str(tmp / "wide.yaml"), "--out", out], ["wide.yaml", e_big]),
        ([*gen[:-1], str(tmp / "file" / "g.jsonl")], [str(tmp / "file" / "g.jsonl")]),
        ([*gen[:-1], str(tmp / "fifo")], [str(tmp / "fifo"), "FIFO"]),
        ([*gen[:-1], str(tmp / "link.jsonl")], [str(tmp / "link.jsonl"), "symbolic link"]),
        ([*gen, "--model", str(tmp / "nomodel")], ["--model", "nomodel"]),
        ([*gen, "--adapter", str(tmp)], ["--adapter", str(tmp)]),
        ([*gen, "--semantic", str(tmp / "missing")], [str(tmp / "missing")]),
        # requested attributes: malformed, or impossible under the adapter's reference
        ([*gen, "--include-call", "MS_1,MS_2"], ["--include-call", "'MS_1,MS_2'"]),
        ([*gen, "--include-call", "MS_1,MS_2,grpc"], ["--include-call", "'grpc'"]),
        (
            [*gen, "--include-call", "MS_1,MS_2,rpc", "--include-call", "MS_1,MS_02,rpc"],
            ["--include-call", "listed twice"],
        ),
        (
            ["generate", "--service", "S_1823467", "--include-call", "MS_1,MS_2,rpc", "--out", out],
            ["--include-call", "MS_1,MS_2,rpc", "never seen for S_1823467"],
        ),
        (
            [
                "generate",
                "--service",
                "S_1823467",
                "--high-latency",
                "--latency",
                "1",
                "--out",
                out,
            ],
            ["--latency", "latency=1", "90th percentile"],
        ),
        (
            ["generate", "--service", "S_1", "--uncommon-call", "--out", out],
            ["--service", "S_1"],  # not in the training data: no statistics to judge by
        ),
        (
            [*gen[:2], "S_1823467", "--high-latency", "--encoding", "tabular", *gen[3:]],
            ["--encoding", "tabular"],
        ),
        (
            ["generate", "--requests", str(tmp / "calls.yaml"), "--out", out],
            ["calls.yaml", "request 0", "MS_1,MS_2,rpc"],
        ),
        (
            ["generate", "--requests", str(tmp / "typo.yaml"), "--out", out],
            ["typo.yaml", "request 0", "'grpc'"],
        ),
        ([*train, "--epochs", "inf"], ["epochs", "inf"]),
        ([*train, "--device", "tpu"], ["device", "tpu"]),
        ([*train, "--lr", "nan"], ["lr", "nan"]),
        (["train", "--data", str(data), "--out", str(tmp / "file")], ["--out", str(tmp / "file")]),
        ([*base, "-n", "0"], ["-n", "got 0"]),
        ([*base, "--num-edges", e_big], ["--num-edges", e_big]),
        ([*base[:-1], str(tmp / "fifo")], [str(tmp / "fifo")]),
        (["bench", "attributes", "--n", "0"], ["--n", "got 0"]),
        (["bench", "attributes", "--attributes", "slow"], ["--attributes", "'slow'"]),
        (["bench", "attributes", "--data", str(tmp / "nodata")], ["--data", "nodata"]),
        (["infill", str(tmp / "none.jsonl"), "--out", out], ["none.jsonl"]),
        (["infill", str(data), "--out", out, "--max-parts", "0"], ["--max-parts", "0"]),
        (["infill", str(data), "--out", out], ["t.csv", "graph 1", "no missing field"]),
    ]


def test_refused_in_one_line_before_torch(tmp_path):
    cases = _cases(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps([argv for argv, _ in cases])],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    for (argv, needles), (code, err, torch_loaded) in zip(cases, results, strict=True):
        assert code == 2, (argv, err)
        assert len(err) == 1 and err[0].startswith("tracegrammar: error: "), (argv, err)
        assert all(n in err[0] for n in needles), (argv, err[0], needles)
        assert not torch_loaded, (argv, "torch was imported before the refusal")
    assert not (tmp_path / "g.jsonl").exists() and (tmp_path / "victim").read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused_before_generating(tmp_path, capsys):
    from tracegrammar.cli import main

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["generate", "--service", "S_1", "--out", str(folder / "g.jsonl")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


def test_eval_checks_out_first_and_writes_metrics(tmp_path, capsys):
    from tracegrammar.cli import main
    from tracegrammar.io import write_jsonl
    from tracegrammar.traces import load_traces

    real = tmp_path / "real.csv"
    real.write_text(
        "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"
        "T1,0,S_1,0,USER,MS_1,http,9\nT1,1,S_1,0.1,MS_1,MS_2,rpc,3\n"
        "T2,0,S_1,0,USER,MS_1,http,7\nT2,2,S_1,0.1,MS_1,MS_3,db,2\n"
    )
    synthetic = tmp_path / "syn.jsonl"
    write_jsonl(load_traces(real), synthetic)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = ["eval", "--real", str(real), "--synthetic", str(synthetic)]
    assert main([*args, "--out", str(fifo)]) == 2
    assert str(fifo) in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert os.listdir(tmp_path / "ev") == ["metrics.json"]
