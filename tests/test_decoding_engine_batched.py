"""The batched engine is the per-session engine, many rows at a time: the same masks (grammar,
numeric and semantic rules) and the same forced tokens at every step of random layers."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar.decoding.masks import only_tokens, pack, unpack
from tracegrammar.decoding.writers import tabular_grammar
from tracegrammar.layers import decompose
from tracegrammar.reference import CallScope, Reference

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
)
def test_batched_masks_and_forced_tokens_equal_the_per_session_ones(
    engine, graph, fmt, semantic, seed
):
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


@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(1, 8))
def test_pack_unpack_round_trip(bits, extra_words):
    mask = torch.tensor(bits)
    words = (len(bits) + 31) // 32 + extra_words - 1
    assert torch.equal(unpack(pack(mask, words).unsqueeze(0), len(bits))[0], mask)


@given(st.lists(st.sets(st.integers(0, 95), max_size=3), min_size=1, max_size=6))
def test_only_tokens_finds_the_one_allowed_token(rows):
    masks = torch.zeros(len(rows), 96, dtype=torch.bool)
    for r, allowed in enumerate(rows):
        masks[r, list(allowed)] = True
    packed = torch.stack([pack(m, 3) for m in masks])
    assert only_tokens(packed) == [next(iter(a)) if len(a) == 1 else None for a in rows]
