"""Per-request grammars: layers of the same counts share one grammar; the values the engine forces
instead of the grammar (service, caller) and the text the grammar writes after them."""

from __future__ import annotations

import dataclasses

import pytest

from tracegrammar.decoding.requests import FIXED_FIELDS, fits, fixed_follows, layer_grammar
from tracegrammar.grammar import GrammarError, literal_after
from tracegrammar.types import LayerConditions

COND = LayerConditions(
    service="S_32048416", start_node="MS_1", caller="USER", start_edge_id=1, num_edges=5,
    remaining_depth=1, num_current_edges=2, num_subgraphs=1, start_communication_at=0, latency=9,
)  # fmt: skip


@pytest.mark.parametrize("fmt", ["layer", "layer_instruct"])
def test_layers_of_the_same_counts_share_one_grammar(fmt):
    other = dataclasses.replace(COND, service="S_7", start_node="MS_99999", caller="MS_3")
    assert layer_grammar(COND, fmt) == layer_grammar(other, fmt)
    assert layer_grammar(COND, fmt, literals=True) != layer_grammar(other, fmt, literals=True)
    assert '"S_32048416"' in layer_grammar(COND, fmt, literals=True)
    assert "S_32048416" not in layer_grammar(COND, fmt)
    more = dataclasses.replace(COND, num_current_edges=3)
    assert layer_grammar(COND, fmt) != layer_grammar(more, fmt)


def test_a_value_its_terminal_refuses_stays_a_literal():
    """A leading zero is outside SERVICE and MS: the grammar keeps the literal, so it allows
    exactly what a grammar per layer allows."""
    odd = dataclasses.replace(COND, service="S_007", start_node="MS_01")
    assert not fits("layer", "p_service", "S_007")
    assert not fits("layer", "p_caller", "MS_01")
    assert fits("layer", "p_caller", "USER")
    assert fits("layer", "p_caller", "f" * 64)
    text = layer_grammar(odd, "layer")
    assert 'p_service: "S_007"' in text and 'p_caller: "MS_01"' in text


def test_the_text_after_each_fixed_value_is_read_from_the_grammar():
    assert literal_after("layer", "p_service") == " start_node:"
    assert literal_after("layer", "p_caller") == " start_edge_id:"
    assert literal_after("layer", "p_scratch") == ""  # the subgraph blocks follow: a choice
    assert fixed_follows("layer_instruct") == {
        "service": " start_node:",
        "caller": " start_edge_id:",
    }
    assert set(fixed_follows("layer")) == set(FIXED_FIELDS)
    with pytest.raises(GrammarError, match="'node' appears in"):
        literal_after("layer", "node")


@pytest.mark.parametrize("fmt", ["layer", "layer_instruct"])
def test_every_numeric_field_is_an_int(fmt):
    """The batched engine asks no forced bytes inside a number (`engine._take_grammar_forced`):
    that holds because every field the numeric rules keep in an integer set is written as the
    grammar's INT, whose value takes any digit first and then a digit or its end."""
    import re

    from tracegrammar.grammar import grammar_text
    from tracegrammar.rules import BLOCK_INT_FIELDS, EDGE_INT_FIELDS

    text = layer_grammar(COND, fmt)
    after = {}
    for key, symbol in re.findall(r'([a-z_]+):"\s+([A-Za-z_]+)', text):
        after.setdefault(key, set()).add(symbol)
    for key in (*EDGE_INT_FIELDS, *BLOCK_INT_FIELDS):
        assert after.get(key) == {"INT"}, (key, after.get(key))
    assert re.search(r"^INT: /0\|\[1-9\]\[0-9\]\*/$", grammar_text(fmt), re.M)
