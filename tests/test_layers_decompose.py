"""Decompose then reassemble is the identity; every layer of a valid graph passes the oracle."""

from __future__ import annotations

from hypothesis import given

from tracegrammar import check, check_layer
from tracegrammar.layers import decompose, reassemble

from .strategies import call_graphs


@given(call_graphs())
def test_decompose_reassemble_identity(graph):
    assert reassemble(decompose(graph)) == graph


@given(call_graphs())
def test_layer_count_and_sizes(graph):
    layers = decompose(graph)
    assert sum(len(layer.edges) for layer in layers) == graph.num_edges
    assert layers[0].conditions.num_edges == graph.num_edges
    assert layers[0].conditions.remaining_depth == graph.depth - 1


@given(call_graphs())
def test_valid_graphs_pass_the_oracle(graph):
    assert check(graph) == []
    for layer in decompose(graph):
        assert check_layer(layer) == []
