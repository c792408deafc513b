"""Laws of the text encodings: parse(render(x)) == x, and grammar-generated text parses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis.extra.lark import from_lark

from tracegrammar.encode import (
    parse_conditions,
    parse_layer,
    parse_layers,
    parse_tabular,
    render_conditions,
    render_layer,
    render_layers,
    render_tabular,
)
from tracegrammar.grammar import ENCODINGS, grammar_text, parser
from tracegrammar.layers import decompose

from .strategies import call_graphs, layers


@given(call_graphs())
def test_tabular_roundtrip(graph):
    assert parse_tabular(render_tabular(graph)) == graph


@pytest.mark.parametrize("fmt", ["layer", "layer_instruct"])
@given(layer=layers())
def test_layer_roundtrip(fmt, layer):
    assert parse_layer(render_layer(layer, fmt), fmt) == layer


@pytest.mark.parametrize("fmt", ["layer", "layer_instruct"])
@given(graph=call_graphs())
def test_layers_text_roundtrip(fmt, graph):
    assert parse_layers(render_layers(decompose(graph), fmt), fmt) == decompose(graph)


@given(layer=layers())
def test_shuffled_partial_prompt_parses(layer):
    values = layer.conditions.as_dict()
    subset = dict(reversed([(k, v) for k, v in values.items() if k != "latency"]))
    assert parse_conditions(render_conditions(subset)) == subset


@pytest.mark.parametrize("fmt", sorted(ENCODINGS))
@settings(max_examples=60, deadline=None)
@given(data=__import__("hypothesis").strategies.data())
def test_grammar_generated_text_parses(fmt, data):
    text = data.draw(from_lark(parser(fmt)))
    parser(fmt).parse(text)  # must not raise


def test_parameter_binding_rejects_unknown_rule():
    with pytest.raises(ValueError, match="not a parameter rule"):
        grammar_text("layer", {"edge": "x"})
