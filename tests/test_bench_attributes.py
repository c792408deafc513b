"""`tracegrammar bench attributes` without a model: prompts, the verdict of one graph, the
summary table."""

from __future__ import annotations

from dataclasses import dataclass

from tracegrammar import CallGraph, Constraints, Edge, Reference
from tracegrammar.evaluation.attributes import (
    AttributeOptions,
    draw_prompts,
    judge,
    render_summary,
    summarize,
)
from tracegrammar.oracle import Violation
from tracegrammar.types import USER


def _s1(i: int) -> CallGraph:
    calls = [("0", USER, "MS_1", "http"), ("0.1", "MS_1", "MS_2", "rpc")]
    if i == 0:
        calls.append(("0.1.1", "MS_2", "MS_3", "db"))
    edges = tuple(Edge(r, s, d, t, 0, (i + 1) if r == "0" else 1) for r, s, d, t in calls)
    return CallGraph("S_1", edges)


GRAPHS = [_s1(i) for i in range(20)]
REF = Reference.from_graphs(GRAPHS)


def test_prompts_keep_the_real_shape_and_ask_one_attribute():
    prompts = draw_prompts(GRAPHS, REF, AttributeOptions(n=3))
    names = [name for name, _ in prompts]
    # the uncommon call (MS_2 -> MS_3) needs three levels: only the one graph that deep gives it
    assert names == ["high_latency"] * 3 + ["include_calls"] * 3 + ["uncommon_call"]
    for name, c in prompts:
        assert c.num_edges in (2, 3) and c.depth in (2, 3)
        if name == "include_calls":
            assert c.include_calls[0][0] != USER  # a call below the root call


@dataclass
class _Gen:
    constraints: Constraints
    graph: CallGraph | None
    violations: tuple[Violation, ...] = ()


def test_judge_separates_validity_from_the_attribute():
    c = Constraints("S_1", 2, 2, high_latency=True)
    slow, fast = _s1(19), _s1(1)  # root latency 20 (p90 is 18) and 2
    assert judge(_Gen(c, slow), "high_latency", REF)["accurate"]
    rec = judge(_Gen(c, fast), "high_latency", REF)
    assert rec["valid"] and not rec["met"] and not rec["accurate"]
    broken = _Gen(c, slow, (Violation("E_DEPTH", "graph", 3, "depth == 2"),))
    rec = judge(broken, "high_latency", REF)
    assert rec["met"] and not rec["valid"] and not rec["accurate"]
    assert not judge(_Gen(c, None), "high_latency", REF)["accurate"]


def test_summary_puts_modes_side_by_side():
    records = [
        {"attribute": "high_latency", "mode": m, "temperature": 0.2, "valid": True,
         "met": m == "constrained", "accurate": m == "constrained"}
        for m in ("constrained", "unconstrained")
    ]  # fmt: skip
    summary = summarize(records)
    assert summary["high_latency"]["constrained@0.2"]["accuracy"] == 1.0
    assert summary["high_latency"]["unconstrained@0.2"]["accuracy"] == 0.0
    meta = {
        "model": "m", "prompts": 2, "validation_graphs": 9, "machine": "x", "date": "d",
        "seconds": 1.0, "skipped": [], "commands": ["tracegrammar bench attributes --n 1"],
        "options": {**AttributeOptions().__dict__, "temperatures": [0.2]},
    }  # fmt: skip
    text = render_summary(meta, summary)
    assert "| high_latency | 100% / 0% | fig. only (1st paper §4.4) |" in text
    assert "    tracegrammar bench attributes --n 1" in text


def test_a_rerun_resumes_only_with_the_same_prompts(tmp_path):
    import json
    from dataclasses import asdict

    from tracegrammar.evaluation.attributes import _resume

    opts = AttributeOptions(out=str(tmp_path), temperatures=(0.2,))
    record = {"attribute": "high_latency", "mode": "constrained", "temperature": 0.2}
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    meta = {"model": "m", "options": asdict(opts), "command": "tracegrammar bench attributes"}
    (tmp_path / "summary.json").write_text(json.dumps(meta))
    later = AttributeOptions(out=str(tmp_path), temperatures=(0.5, 0.8))
    assert _resume(tmp_path, later, "m")[0] == [record]
    assert _resume(tmp_path, later, "other model") == ([], {})
    assert _resume(tmp_path, AttributeOptions(out=str(tmp_path), n=5), "m") == ([], {})
