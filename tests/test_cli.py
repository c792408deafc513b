"""The command line: data stats / show, and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tracegrammar.cli import main

from .conftest import SAMPLES


def test_data_stats_json(shared_data, capsys):
    assert main(["data", "stats", "--json", str(SAMPLES["casper-v2022"])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["graphs"] > 0 and sum(out["depth"].values()) == out["graphs"]
    assert out["dropped"]


def test_data_show(shared_data, capsys):
    assert main(["data", "show", str(SAMPLES["tracellm"]), "--index", "2"]) == 0
    out = capsys.readouterr().out
    assert "<layer service:" in out and "</layer>" in out


@pytest.mark.parametrize("make", ["missing", "empty", "not_trace", "empty_dir"])
def test_bad_input_is_one_line_and_nonzero(tmp_path, make):
    target = tmp_path / "x.csv"
    if make == "empty":
        target.write_text("")
    elif make == "not_trace":
        target.write_text("hello,world\n1,2\n")
    elif make == "empty_dir":
        target = tmp_path
    proc = subprocess.run(
        [sys.executable, "-m", "tracegrammar.cli", "data", "stats", str(target)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and "Traceback" not in proc.stderr
