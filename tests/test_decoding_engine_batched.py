"""The batched engine is the per-session engine, many rows at a time: the same masks (grammar,
numeric and semantic rules) and the same forced tokens at every step of random layers."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar.decoding import engine as engine_module
from tracegrammar.decoding import masks as masks_module
from tracegrammar.decoding.engine import EngineError
from tracegrammar.decoding.masks import FEW, NumericMasks, only_tokens, pack, unpack
from tracegrammar.decoding.scanner import FieldScanner
from tracegrammar.decoding.writers import tabular_grammar
from tracegrammar.encode import render_layer_output
from tracegrammar.layers import decompose
from tracegrammar.reference import CallScope, Reference
from tracegrammar.rules import IntSet

from .strategies import call_graphs


@pytest.fixture(scope="module")
def engine(tiny_model):
    return tiny_model.engine()


def sessions_for(engine, graph, fmt: str, semantic: bool):
    """Two identical sessions per layer of `graph`: one for each path."""
    scope = CallScope(Reference.from_graphs([graph]), graph.service) if semantic else None
    conds = [layer.conditions for layer in decompose(graph)]
    if fmt == "tabular":
        return [[engine.free_session(tabular_grammar(c.num_edges), c) for c in conds] for _ in "ab"]
    return [[engine.session(c, fmt, scope) for c in conds] for _ in "ab"]


#: a walk stops here (uniform draws can write a free-form name for ever)
MAX_STEPS = 80


def draw(engine, mask: torch.Tensor, rng: random.Random) -> int:
    """A token the mask allows: half the time one that ends the value being written (so walks
    reach every part of a layer), else any."""
    ending = mask & engine.table.terminator_start
    pool = ending if bool(ending.any()) and rng.random() < 0.5 else mask
    allowed = pool.nonzero().flatten()
    return int(allowed[rng.randrange(allowed.shape[0])])


@settings(max_examples=10)
@given(
    graph=call_graphs(max_edges=6),
    fmt=st.sampled_from(["layer", "layer_instruct", "tabular"]),
    semantic=st.booleans(),
    seed=st.integers(0, 2**20),
    parallel=st.booleans(),
)
def test_batched_masks_and_forced_tokens_equal_the_per_session_ones(
    engine, graph, fmt, semantic, seed, parallel
):
    """`parallel`: the sampled tokens go to llguidance's threads even for a few rows."""
    saved = engine_module.PARALLEL_CONSUME
    engine_module.PARALLEL_CONSUME = 1 if parallel else saved
    try:
        walk_both_paths(engine, graph, fmt, semantic, seed)
    finally:
        engine_module.PARALLEL_CONSUME = saved


def walk_both_paths(engine, graph, fmt: str, semantic: bool, seed: int) -> None:
    rng = random.Random(seed)
    reference, batched = sessions_for(engine, graph, fmt, semantic and fmt != "tabular")
    assert engine.advance(batched) == [s.forced() for s in reference]
    for _ in range(MAX_STEPS):
        live = [i for i, s in enumerate(reference) if not s.done]
        assert live == [i for i, s in enumerate(batched) if not s.done]
        if not live:
            break
        masks = engine.masks([batched[i] for i in live])
        tokens = []
        for row, i in enumerate(live):
            expected = reference[i].mask()
            assert torch.equal(masks[row], expected), reference[i].text
            tokens.append(draw(engine, expected, rng))
        forced = engine.advance([batched[i] for i in live], tokens)
        for i, token, got in zip(live, tokens, forced, strict=True):
            reference[i].consume(token)
            assert got == reference[i].forced()
    assert [s.text for s in batched] == [s.text for s in reference]


@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(1, 8), st.booleans())
def test_pack_unpack_round_trip(bits, extra_words, shifts):
    """`shifts`: the accelerators' unpacking (bit shifts), run on the CPU's tensors."""
    mask = torch.tensor(bits)
    words = (len(bits) + 31) // 32 + extra_words - 1
    saved = masks_module._LITTLE_ENDIAN
    masks_module._LITTLE_ENDIAN = saved and not shifts
    try:
        assert torch.equal(unpack(pack(mask, words).unsqueeze(0), len(bits))[0], mask)
    finally:
        masks_module._LITTLE_ENDIAN = saved


@given(st.lists(st.sets(st.integers(0, 95), max_size=3), min_size=1, max_size=6))
def test_only_tokens_finds_the_one_allowed_token(rows):
    masks = torch.zeros(len(rows), 96, dtype=torch.bool)
    for r, allowed in enumerate(rows):
        masks[r, list(allowed)] = True
    packed = torch.stack([pack(m, 3) for m in masks]).numpy()
    assert only_tokens(packed).tolist() == [next(iter(a)) if len(a) == 1 else -1 for a in rows]


def test_packed_masks_are_copies(engine):
    """A caller may write into what `packed_masks` returns: the sessions' masks stay."""
    graph_layers = [engine.session(c) for c in _conditions()]
    engine.advance(graph_layers)
    live = [s for s in graph_layers if not s.done]
    before = engine.masks(live)
    engine.packed_masks(live).zero_()
    assert torch.equal(engine.masks(live), before)
    assert bool(before.any(dim=1).all())


def _conditions():
    from tracegrammar.types import USER, CallGraph, Edge

    graph = CallGraph(
        "S_1",
        (
            Edge("0", USER, "MS_1", "http", 0, 40),
            Edge("0.1", "MS_1", "MS_2", "rpc", 3, 20),
            Edge("0.2", "MS_1", "MS_3", "db", 21, 30),
        ),
    )
    return [layer.conditions for layer in decompose(graph)]


def test_an_invalid_grammar_is_refused_with_llguidance_s_reason(engine):
    with pytest.raises(EngineError, match=r'invalid layer grammar.*unknown name: "nowhere"'):
        engine.free_session("start: nowhere", _conditions()[0])


names = st.one_of(
    st.from_regex(r"MS_[0-9]{1,3}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{1,6}", fullmatch=True),
    st.sampled_from(["USER", "NONE", "S_12"]),
)
#: (what a field may be, what it holds so far), as the grammar lets a field be written
numeric_states = st.one_of(
    st.tuples(
        st.builds(IntSet.range, st.integers(0, 300), st.integers(0, 300)),
        st.text("0123456789", max_size=3),
    ),
    st.tuples(
        st.one_of(names, st.frozensets(names, min_size=1, max_size=4)),
        st.text("MS_0123456789abcdefUER", max_size=4),
    ),
)


@settings(max_examples=40)
@given(st.lists(numeric_states, max_size=12))
def test_numeric_table_rows_are_the_packed_per_row_masks(engine, states):
    """Whatever the order of look-ups, and however often the table starts over (size 3 here),
    a row is `TokenTable.mask_for` packed, `only` its one token and `few` its few tokens."""
    numeric = NumericMasks(engine.table, engine.words, size=3)
    for target, buf in states + states[::-1]:  # each state again, after the table started over
        numeric.trim()
        row = numeric.index(SimpleNamespace(field="f", target=target, buf=buf))
        expected = engine.table.mask_for(target, buf)
        assert np.array_equal(numeric.rows[row], pack(expected, engine.words).numpy())
        allowed = expected.nonzero().flatten().tolist()
        assert numeric.only[row] == (allowed[0] if len(allowed) == 1 else -1)
        assert numeric.few[row] == (tuple(allowed) if len(allowed) <= FEW else None)
    assert numeric.index(SimpleNamespace(field=None, target=None, buf="")) == 0


@settings(max_examples=30)
@given(graph=call_graphs(max_edges=6), cuts=st.lists(st.integers(1, 6), max_size=400))
def test_feeding_text_in_pieces_is_feeding_it_one_character_at_a_time(graph, cuts):
    """The scanner's shortcut for a piece without a terminator changes nothing."""
    for layer in decompose(graph):
        text = render_layer_output(layer)
        whole, pieces = FieldScanner(layer.conditions), FieldScanner(layer.conditions)
        for ch in text:
            whole.feed(ch)
        at = 0
        for cut in [*cuts, len(text)]:
            pieces.feed(text[at : at + cut])
            at += cut
        assert [getattr(pieces, f.name) for f in fields(FieldScanner)] == [
            getattr(whole, f.name) for f in fields(FieldScanner)
        ]


@settings(max_examples=12)
@given(
    graph=call_graphs(max_edges=6),
    fmt=st.sampled_from(["layer", "layer_instruct"]),
    semantic=st.booleans(),
    seed=st.integers(0, 2**20),
)
def test_shared_grammars_give_the_masks_and_tokens_of_a_grammar_per_layer(
    engine, graph, fmt, semantic, seed
):
    """A layer's grammar leaves its service and caller to the engine, which forces them: every
    mask and forced token is the one of the layer's own grammar with both compiled in."""
    scope = CallScope(Reference.from_graphs([graph]), graph.service) if semantic else None
    conds = [layer.conditions for layer in decompose(graph)]
    shared = [engine.session(c, fmt, scope) for c in conds]
    literal = [engine.session(c, fmt, scope, literals=True) for c in conds]
    walk_against_literals(engine, shared, literal, random.Random(seed))


def test_a_value_its_terminal_refuses_is_written_as_before(engine):
    """`S_007` is no SERVICE, `MS_01` no MS: the grammar keeps them as literals, and the engine
    forces nothing more."""
    odd = dataclasses.replace(_conditions()[0], service="S_007", start_node="MS_01")
    for seed in range(3):
        shared = engine.session(odd, "layer")
        walk_against_literals(
            engine, [shared], [engine.session(odd, "layer", literals=True)], random.Random(seed)
        )
        assert " service:S_007 start_node:" in shared.text
        assert " caller:MS_01 start_edge_id:" in shared.text


def walk_against_literals(engine, shared, literal, rng: random.Random) -> None:
    for a, b in zip(shared, literal, strict=True):
        assert a.forced() == b.forced()
        for _ in range(MAX_STEPS):
            if a.done:
                break
            mask = a.mask()
            assert torch.equal(mask, b.mask()), a.text
            token = draw(engine, mask, rng)
            a.consume(token)
            b.consume(token)
            assert a.forced() == b.forced(), a.text
        assert a.tokens == b.tokens and a.done == b.done
