"""The baseline's window contexts (`baseline.draw_window_contexts`): drawn from the data's counts,
under the same contract as the context decoder."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar.baseline import ProbabilisticBaseline, draw_window_contexts
from tracegrammar.errors import ConstraintError
from tracegrammar.traces import load_traces
from tracegrammar.types import CallGraph, Edge
from tracegrammar.workloads import WindowRequest, window_violations

from .conftest import SAMPLES


def _graph(service: str, ts: float, n: int) -> CallGraph:
    edges = [Edge("0", "USER", "MS_1", "http", 0, 10)]
    edges += [Edge(f"0.{i}", "MS_1", "MS_2", "rpc", 1, 2) for i in range(1, n)]
    return CallGraph(service, tuple(edges), ts)


GRAPHS = [_graph("S_1", 100.0 + i, 1 + i % 3) for i in range(8)] + [
    _graph("S_2", 100.5, 2),
    _graph("S_3", 103.25, 1),
]
MODEL = ProbabilisticBaseline.fit(GRAPHS)


def test_gap_table_from_arrival_times() -> None:
    # arrivals 100, 100.5, 101, 102, 103, 103.25, 104 ... 107 s
    assert MODEL.tables["gap"]["*"] == {"1000": 5, "250": 1, "500": 2, "750": 1}
    assert "gap" not in ProbabilisticBaseline.fit([_graph("S_1", None, 1)]).tables  # type: ignore[arg-type]
    assert MODEL.services == {"S_1", "S_2", "S_3"}


@settings(max_examples=60)
@given(
    st.floats(1e9, 2e9),
    st.sampled_from([0.001, 0.002, 1.0, 60.0, 3600.0]),
    st.integers(1, 40),
    st.lists(st.sampled_from(["S_1", "S_2", "S_3"]), max_size=3, unique=True),
    st.integers(0, 2**31),
)
def test_windows_meet_the_request(start, length, n, include, seed) -> None:
    include = include[:n]
    contexts = draw_window_contexts(MODEL, start, start + length, n, include, seed)
    request = WindowRequest(start, start + length, n, tuple(include))
    assert window_violations(request, contexts, MODEL.services) == []


def test_mix_follows_the_counts_and_seed_repeats() -> None:
    contexts = draw_window_contexts(MODEL, 0.0, 60.0, 2000, (), seed=1)
    mix = Counter(c.service for c in contexts)
    assert 0.7 < mix["S_1"] / 2000 < 0.9  # 8 of 10 fitted graphs
    assert contexts == draw_window_contexts(MODEL, 0.0, 60.0, 2000, (), seed=1)
    assert contexts != draw_window_contexts(MODEL, 0.0, 60.0, 2000, (), seed=2)


def test_refusals_name_the_field() -> None:
    with pytest.raises(ConstraintError) as info:
        draw_window_contexts(MODEL, 0.0, 1.0, 2, ["S_9"])
    assert info.value.field == "include"
    with pytest.raises(ConstraintError) as info:
        draw_window_contexts(MODEL, 1.0, 1.0, 2)
    assert info.value.field == "end"


def test_real_sample(shared_data) -> None:
    graphs = list(load_traces(SAMPLES["rpc-casper"]))
    model = ProbabilisticBaseline.fit(graphs)
    contexts = draw_window_contexts(model, 0.0, 10.0, 50, ("S_94321059",), seed=0)
    request = WindowRequest(0.0, 10.0, 50, ("S_94321059",))
    assert window_violations(request, contexts, model.services) == []
