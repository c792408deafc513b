"""The measures of `bench workload` (evaluation.workload): service-mix JS, arrival position EMD,
burstiness, and the summary table."""

from __future__ import annotations

import math
import sys

import pytest

from tracegrammar.errors import InputError
from tracegrammar.evaluation.workload import (
    WorkloadBenchOptions,
    baseline_spread,
    burstiness,
    check_options,
    command_line,
    positions,
    realism_row,
    service_js,
    summary_lines,
    typed_command,
)
from tracegrammar.workloads import WindowContext


def _w(*pairs: tuple[int, str]) -> list[WindowContext]:
    return [WindowContext(at, s, 1, 1, 1) for at, s in pairs]


def test_service_js() -> None:
    a = _w((0, "S_1"), (1, "S_2"))
    assert service_js(a, a) < 1e-9
    assert abs(service_js(_w((0, "S_1")), _w((0, "S_2"))) - math.log(2)) < 1e-4


def test_positions_and_burstiness() -> None:
    even = [(1.0, _w(*[(i * 100 + 5, "S_1") for i in range(10)]))]
    lump = [(1.0, _w(*[(5, "S_1")] * 10))]
    assert positions(even)[0] == 0.005
    assert burstiness(even) == 0.0
    assert burstiness(lump) == 3.0  # one tenth holds all ten: std 3, mean 1
    row = realism_row("x", even, lump)
    assert row["service_js"] < 1e-9 and row["arrival_emd"] > 0.4


def test_summary_lines_render() -> None:
    s = {
        "options": {
            "data": "d.csv", "seed": 0, "compliance_windows": 1, "compliance_s": 1.0,
            "compliance_traces": 4, "max_include": 2, "realism_s": 2.0, "max_traces": 8,
            "temperature": 0.8,
        },
        "model": "m", "data_traces": 3, "data_span_s": 2.0, "machine": "cpu", "date": "now",
        "wall_s": 1.0, "command": "bench",
        "compliance": [
            {"temperature": 0.2, "constrained": True, "windows": 1, "compliant": 1.0,
             "count": 1.0, "window": 1.0, "include": 1.0, "wall_s": 3.0}
        ],
        "realism": [],
        "targets": [],
    }  # fmt: skip
    text = "\n".join(summary_lines(s))
    assert "| 0.2 | constrained | 1 | 100% | 100% | 100% | 100% | 3 |" in text
    assert "71.8%-93.2%" in text
    assert "predates the data priors" in text  # options without `priors`: a run from before


def test_recorded_command_reads_as_typed() -> None:
    old = "/work/wt/context/src/tracegrammar/__main__.py bench workload --seed 0"
    assert typed_command(old) == "tracegrammar bench workload --seed 0"
    assert typed_command("tracegrammar bench workload") == "tracegrammar bench workload"


def test_summary_says_what_writes_services_and_the_baseline_spread(monkeypatch) -> None:
    s = {
        "options": {
            "data": "d.csv", "seed": 0, "compliance_windows": 0, "compliance_s": 1.0,
            "compliance_traces": 4, "max_include": 2, "realism_s": 2.0, "max_traces": 8,
            "temperature": 0.8, "priors": ["data", "off"],
        },
        "model": "m", "data_traces": 3, "data_span_s": 2.0, "machine": "cpu", "date": "now",
        "wall_s": 1.0, "command": "tracegrammar bench workload", "compliance": [],
        "realism": [], "targets": [{"traces": 3}, {"traces": 4}],
        "target_pool": {"windows": 46, "traces": 470},
        "baseline_spread": {
            "draws": 2, "service_js": {"mean": 0.5, "min": 0.4, "max": 0.6},
            "arrival_emd": {"mean": 0.1, "min": 0.05, "max": 0.15},
        },
    }  # fmt: skip
    text = "\n".join(summary_lines(s))
    assert "the service is drawn digit by digit from the data's service mix" in text
    assert "2 target windows of 2 s from the second half of the data (7 traces" in text
    assert "service JS 0.500 (0.400-0.600); arrival EMD 0.100 (0.050-0.150)" in text
    assert "Not measured in this run" in text
    assert "the second half holds 46 windows of this length, 470 traces" in text
    monkeypatch.setattr(sys, "argv", ["/x/src/tracegrammar/__main__.py", "bench", "workload"])
    assert command_line() == "tracegrammar bench workload"


def test_baseline_spread_and_bad_options(tmp_path) -> None:
    rows = [
        {"service_js": 0.2, "arrival_emd": 0.1, "burstiness": float("nan")},
        {"service_js": 0.4, "arrival_emd": None, "burstiness": 1.0},
    ]
    spread = baseline_spread(rows)
    assert spread["draws"] == 2
    assert spread["service_js"] == {"mean": pytest.approx(0.3), "min": 0.2, "max": 0.4}
    assert spread["arrival_emd"]["mean"] == 0.1 and spread["burstiness"]["max"] == 1.0
    data = tmp_path / "d.csv"
    data.write_text("")
    with pytest.raises(InputError, match="--priors"):
        check_options(WorkloadBenchOptions(data=str(data), priors=("data", "sometimes")))
    with pytest.raises(InputError, match="--baseline-draws"):
        check_options(WorkloadBenchOptions(data=str(data), baseline_draws=0))
