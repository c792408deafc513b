"""The context task's text (grammars/context.lark): render and parse round-trip, the lenient
reader of free output, and the compliance check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracegrammar.encode import ParseError
from tracegrammar.errors import ConstraintError
from tracegrammar.workloads import (
    WindowContext,
    WindowRequest,
    parse_window,
    parse_window_output,
    read_window_output,
    render_window,
    render_window_output,
    window_violations,
)

services = st.integers(0, 10**9).map(lambda i: f"S_{i}")
contexts = st.builds(
    WindowContext,
    st.integers(0, 10**7),
    services,
    st.integers(1, 200),
    st.integers(1, 50),
    st.integers(0, 10**6),
)


@given(st.integers(1, 10**8), st.lists(contexts, max_size=12), st.lists(services, max_size=4))
def test_window_text_round_trips(length: int, items: list[WindowContext], include: list[str]):
    text = render_window(length, items, include)
    parsed = parse_window(text)
    assert parsed.length_ms == length
    assert parsed.num_traces == len(items)
    assert parsed.include == tuple(include)
    assert parsed.contexts == tuple(items)
    assert parse_window_output(render_window_output(items)) == tuple(items)
    assert read_window_output(render_window_output(items)) == (items, True)


def test_example_and_rejections() -> None:
    text = (
        "<window length_ms:60000 traces:2 include:S_1,S_2>\n"
        "(at:0 service:S_1 num_edges:3 depth:2 latency:12)\n"
        "(at:20417 service:S_2 num_edges:1 depth:1 latency:4)\n"
        "</window>\n"
    )
    parsed = parse_window(text)
    assert parsed.contexts[1] == WindowContext(20417, "S_2", 1, 1, 4)
    with pytest.raises(ParseError):
        parse_window(text.replace("at:0", "at:-1"))
    with pytest.raises(ParseError):
        parse_window_output("(at:0 service:MS_1 num_edges:1 depth:1 latency:4)\n</window>\n")


def test_lenient_reader_keeps_good_lines() -> None:
    text = "(at:5 service:S_1 num_edges:1 depth:1 latency:4)\ngarbage\n"
    assert read_window_output(text) == ([WindowContext(5, "S_1", 1, 1, 4)], False)


def test_violations() -> None:
    req = WindowRequest(100.0, 101.0, 3, ("S_1", "S_02"))
    assert req.include == ("S_1", "S_2")
    ok = [
        WindowContext(0, "S_2", 1, 1, 0),
        WindowContext(0, "S_1", 4, 3, 10),
        WindowContext(999, "S_3", 2, 2, 10),
    ]
    assert window_violations(req, ok, {"S_1", "S_2", "S_3"}) == []
    bad = [
        WindowContext(10, "S_9", 1, 2, 0),
        WindowContext(5, "S_1", 4, 3, 10),
        WindowContext(1000, "S_3", 2, 2, 10),
    ]
    assert window_violations(req, bad, {"S_1", "S_2", "S_3"}) == [
        "window",
        "order",
        "include",
        "service",
        "shape",
    ]
    assert window_violations(req, ok[:2], well_formed=False) == ["format", "count"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((5.0, 5.0, 1), "end"),
        ((5.0, 1.0, 1), "end"),
        ((0.0, 1.0, 0), "num_traces"),
        ((0.0, 1.0, 1, ("S_1", "S_2")), "include"),
        ((0.0, 1.0, 1, ("X_1",)), "include"),
        ((float("nan"), 1.0, 1), "start"),
    ],
)
def test_requests_refused_naming_the_field(args: tuple, field: str) -> None:
    with pytest.raises(ConstraintError) as info:
        WindowRequest(*args)
    assert info.value.field == field


def test_unknown_ids_refused() -> None:
    with pytest.raises(ConstraintError, match="S_7"):
        WindowRequest(0.0, 1.0, 2, ("S_7",)).check_known({"S_1"})
