"""`generate_workload` coarse to fine with the tiny random model: the window's contexts under the
window rules, then every graph under the layer constraints, each stamped with its arrival."""

from __future__ import annotations

import pytest

from tracegrammar import check, generate_workload
from tracegrammar.errors import ConstraintError
from tracegrammar.times import parse_time
from tracegrammar.workloads import run_workload

from .test_decoding_context import KNOWN, REFERENCE

START, END = "2025-03-01T12:00:00Z", "2025-03-01T12:01:00Z"


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_model_workload_meets_the_window_and_every_context(tiny_model, temperature):
    run = run_workload(
        START,
        END,
        5,
        ["S_30", "S_5000"],
        model=tiny_model,
        reference=REFERENCE,
        max_edges=5,
        seed=11,
        temperature=temperature,
    )
    assert len(run.graphs) == len(run.contexts) == 5
    start, end = parse_time(START), parse_time(END)
    stamps = [g.timestamp for g in run.graphs]
    assert stamps == sorted(stamps) and all(start <= t < end for t in stamps)  # type: ignore[operator]
    assert {"S_30", "S_5000"} <= {g.service for g in run.graphs} <= set(KNOWN)
    for g, c in zip(run.graphs, run.contexts, strict=True):
        assert check(g) == []
        assert (g.service, g.num_edges, g.depth) == (c.service, c.num_edges, c.depth)
        assert g.latency <= c.latency
        assert g.timestamp == pytest.approx(start + c.at / 1000)


def test_same_seed_same_workload(tiny_model):
    kwargs = dict(model=tiny_model, reference=REFERENCE, max_edges=4, seed=3)
    a = generate_workload(START, END, 2, **kwargs)
    b = generate_workload(START, END, 2, **kwargs)
    assert a == b and [g.timestamp for g in a] == [g.timestamp for g in b]


def test_refused_before_any_model_call():
    # no model is loaded: the request is refused first
    with pytest.raises(ConstraintError) as info:
        generate_workload(END, START, 3, model="/nonexistent")
    assert info.value.field == "end"
    with pytest.raises(ConstraintError) as info:
        generate_workload(START, END, 0, model="/nonexistent")
    assert info.value.field == "num_traces"
    with pytest.raises(ValueError, match="start"):
        generate_workload("not a time", END, 3, model="/nonexistent")
    with pytest.raises(ConstraintError) as info:
        generate_workload(START, END, 3, method="baseline")
    assert info.value.field == "data"


def test_the_prior_is_the_one_asked_for(tiny_model):
    """`prior` reaches the contexts: each mode writes the window `write_windows` writes with it,
    and the data prior's window is not the model's own."""
    from tracegrammar.decoding.context import write_windows
    from tracegrammar.workloads import WindowRequest

    request = WindowRequest(parse_time(START), parse_time(END), 4, ())
    texts = {}
    for prior in ("data", "off"):
        run = run_workload(
            START, END, 4, model=tiny_model, reference=REFERENCE, max_edges=3, seed=7,
            prior=prior,
        )  # fmt: skip
        windows, _ = write_windows(
            [request], tiny_model, seed=7, reference=REFERENCE, max_edges=3, prior=prior
        )
        assert run.window_text == windows[0].text
        texts[prior] = run.window_text
    assert texts["data"] != texts["off"]


def test_an_unknown_prior_is_refused_before_any_model_call():
    with pytest.raises(ConstraintError) as info:
        generate_workload(START, END, 3, model="/nonexistent", prior="learned")
    assert info.value.field == "prior" and "learned" in str(info.value)
