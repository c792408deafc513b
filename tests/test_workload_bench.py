"""The measures of `bench workload` (evaluation.workload): service-mix JS, arrival position EMD,
burstiness, and the summary table."""

from __future__ import annotations

import math

from tracegrammar.evaluation.workload import (
    burstiness,
    positions,
    realism_row,
    service_js,
    summary_lines,
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
