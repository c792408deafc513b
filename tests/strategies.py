"""Hypothesis strategies: valid call graphs and layers, composable into the laws the tests state."""

from __future__ import annotations

from hypothesis import strategies as st

from tracegrammar.layers import decompose
from tracegrammar.types import CALL_TYPES, USER, CallGraph, Edge, Layer

services = st.integers(0, 10**9).map(lambda n: f"S_{n}")
microservices = st.one_of(
    st.integers(0, 99_999).map(lambda n: f"MS_{n}"),
    st.text("0123456789abcdef", min_size=64, max_size=64),
)
call_types = st.sampled_from(CALL_TYPES)


@st.composite
def call_graphs(draw: st.DrawFn, max_edges: int = 25, max_time: int = 5_000) -> CallGraph:
    """A valid call graph: a random tree of calls with nested, integer time intervals."""
    n = draw(st.integers(1, max_edges))
    parents = [None] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    kids: dict[int, list[int]] = {i: [] for i in range(n)}
    for i, p in enumerate(parents):
        if p is not None:
            kids[p].append(i)
    names = [draw(microservices) for _ in range(n)]
    edges: list[Edge] = []

    def place(node: int, rid: str, source: str, lo: int, hi: int) -> None:
        start = lo if node == 0 else draw(st.integers(lo, hi))
        finish = draw(st.integers(start, hi))
        edges.append(Edge(rid, source, names[node], draw(call_types), start, finish))
        for k, child in enumerate(kids[node], start=1):
            place(child, f"{rid}.{k}", names[node], start, finish)

    place(0, "0", USER, 0, draw(st.integers(0, max_time)))
    return CallGraph(draw(services), tuple(edges))


@st.composite
def layers(draw: st.DrawFn, max_edges: int = 25) -> Layer:
    """One layer of a valid graph (with its true conditions)."""
    graph = draw(call_graphs(max_edges=max_edges))
    return draw(st.sampled_from(decompose(graph)))
