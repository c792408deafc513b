"""The oracle on wrong-typed and extreme graphs: `check` always returns a list, never raises, and
never passes a graph whose times are not whole milliseconds or whose fields have the wrong type."""

from __future__ import annotations

import math
import numbers
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracegrammar import CallGraph, Constraints, Edge, check
from tracegrammar.oracle import CODES, MAX_ID_PART_DIGITS, MAX_NAME_CHARS, Violation

from .strategies import call_graphs

OK = CallGraph(
    "S_1",
    (Edge("0", "USER", "MS_1", "http", 0, 10), Edge("0.1", "MS_1", "MS_2", "rpc", 1, 4)),
)


def _child(**changes: object) -> CallGraph:
    return CallGraph(OK.service, (OK.edges[0], replace(OK.edges[1], **changes)))


CASES = {
    "E_TIME_TYPE": [
        _child(finish=math.nan),
        _child(start=math.inf),
        _child(finish=-math.inf),
        _child(start=1.5),
        _child(start=1.0),  # a float is not whole milliseconds, even an integral one
        _child(start=True),
        _child(finish="4"),
        _child(start=None),
    ],
    "E_FIELD_TYPE": [
        _child(source=None),
        _child(destination=3),
        _child(type=b"http"),
        _child(rpc_id=1),
        CallGraph(None, OK.edges),  # type: ignore[arg-type]
        CallGraph("S_1", (*OK.edges, ("0.2", "MS_1"))),  # type: ignore[arg-type]
    ],
    "E_TOO_LONG": [
        _child(rpc_id="0." + "9" * 5000),  # int() refuses 4,300+ digits
        _child(rpc_id="0." + "1" * (MAX_ID_PART_DIGITS + 1)),
        _child(destination="MS_" + "1" * MAX_NAME_CHARS),
        CallGraph("S_" + "1" * MAX_NAME_CHARS, OK.edges),
    ],
}


def test_the_unbroken_graph_is_valid():
    assert check(OK) == []


@pytest.mark.parametrize(
    ("code", "graph"), [(code, g) for code, graphs in CASES.items() for g in graphs]
)
def test_new_codes(code, graph):
    found = check(graph)
    assert code in {v.code for v in found}, found
    assert all(v.code in CODES for v in found)
    assert all(len(str(v)) < 400 for v in found)  # a huge value is summarised, not printed


@pytest.mark.parametrize("thing", [None, 3, {"service": "S_1"}, [OK], b"<graph", OK.edges])
def test_not_a_graph(thing):
    assert [v.code for v in check(thing)] == ["E_FIELD_TYPE"]  # type: ignore[arg-type]


def test_wrong_constraints_and_reference_types():
    codes = {v.where for v in check(OK, "S_1", {("USER", "MS_1", "http")})}  # type: ignore[arg-type]
    assert codes == {"constraints", "reference"}


def test_numpy_integers_are_whole_milliseconds():
    np = pytest.importorskip("numpy")
    assert check(_child(start=np.int64(1), finish=np.int32(4))) == []


# ------------------------------------------------------------------------------------------------
# the fuzzer
# ------------------------------------------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**40, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.text(alphabet="0123456789.", max_size=60),
    st.sampled_from(
        ["0", "0.1", "0.1.1", "USER", "MS_1", "http", "S_1", "9" * 5000, "MS_" + "0" * 300]
    ),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
)
FIELDS = ("rpc_id", "source", "destination", "type", "start", "finish")


@st.composite
def damaged_graphs(draw: st.DrawFn) -> CallGraph:
    graph = draw(call_graphs())
    edges = list(graph.edges)
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, len(edges) - 1))
        edges[k] = replace(edges[k], **{draw(st.sampled_from(FIELDS)): draw(ANY_VALUE)})
    service = draw(st.one_of(st.just(graph.service), ANY_VALUE))
    return CallGraph(service, tuple(edges))  # type: ignore[arg-type]


@given(damaged_graphs())
def test_check_never_raises_and_never_passes_bad_times(graph):
    found = check(graph)
    assert isinstance(found, list) and all(isinstance(v, Violation) for v in found)
    assert all(v.code in CODES for v in found)
    bad_time = any(
        isinstance(t, bool) or not isinstance(t, numbers.Integral)
        for e in graph.edges
        for t in (e.start, e.finish)
    )
    if bad_time:
        assert "E_TIME_TYPE" in {v.code for v in found}


@given(damaged_graphs(), st.one_of(st.none(), st.builds(Constraints, st.just("S_1"))))
def test_check_with_constraints_never_raises(graph, constraints):
    assert isinstance(check(graph, constraints), list)
