"""The constrained decoder: every output is valid, no step is ever fully masked, forced tokens
change nothing but the cost, and the same seed gives the same output."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar import Constraints, Reference, check, check_layer
from tracegrammar.decoding.driver import generate, run_generation
from tracegrammar.decoding.hf import LayerLogitsProcessor
from tracegrammar.decoding.scanner import FieldScanner
from tracegrammar.encode import render_layer_prompt
from tracegrammar.layers import decompose
from tracegrammar.types import LayerConditions

from .strategies import call_graphs


@st.composite
def requests(draw: st.DrawFn, max_edges: int = 30) -> Constraints:
    """The papers' grid: up to 30 calls, depth up to 6."""
    n = draw(st.integers(1, max_edges))
    depth = 1 if n == 1 else draw(st.integers(2, min(n, 6)))
    latency = draw(st.integers(0, 500))
    return Constraints(f"S_{draw(st.integers(0, 10**8))}", n, depth, latency)


@pytest.fixture(scope="module")
def engine(tiny_model):
    from tracegrammar.decoding.driver import engine_for

    return engine_for(tiny_model)


@settings(max_examples=12)
@given(
    c=requests(),
    temperature=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    seed=st.integers(0, 2**20),
    fmt=st.sampled_from(["layer", "layer_instruct"]),
)
def test_constrained_output_is_always_valid(tiny_model, c, temperature, seed, fmt):
    graphs = generate(c, n=2, temperature=temperature, seed=seed, model=tiny_model, fmt=fmt)
    assert len(graphs) == 2
    for g in graphs:
        assert check(g, c) == []
        assert g.num_edges == c.num_edges and g.depth == c.depth and g.latency <= c.latency


def test_deep_graphs_with_small_layers_are_not_cut_short(tiny_model):
    """Regression: a deep layer's own small num_edges once capped the whole graph's size, so
    constrained graphs of 14+ calls at depth 5-6 were dropped as runaway output."""
    c = Constraints("S_62594849", 14, 6, 7)
    run = run_generation(c, 6, seed=0, model=tiny_model)
    assert [g.violations for g in run.generations] == [()] * 6


def random_walk(engine, cond: LayerConditions, rng: random.Random, fmt: str = "layer") -> str:
    """Write a layer choosing uniformly among allowed tokens: no model, every branch possible."""
    session = engine.session(cond, fmt)
    while not session.done:
        session.forced()
        if session.done:
            break
        allowed = session.mask().nonzero().flatten().tolist()
        assert allowed, "a decoding step was fully masked"
        session.consume(rng.choice(allowed))
    return session.text


@settings(max_examples=40)
@given(graph=call_graphs(max_edges=14), seed=st.integers(0, 2**20))
def test_no_step_is_fully_masked_and_every_layer_is_valid(engine, graph, seed):
    rng = random.Random(seed)
    for layer in decompose(graph):
        text = random_walk(engine, layer.conditions, rng)
        assert check_layer(render_layer_prompt(layer.conditions) + text) == []


@settings(max_examples=30)
@given(graph=call_graphs(max_edges=12), seed=st.integers(0, 2**20), data=st.data())
def test_token_mask_agrees_with_scalar_check(engine, graph, seed, data):
    """`TokenTable.mask` (used for sampling) and `.allows` (used for forced tokens) agree."""
    layer = data.draw(st.sampled_from(decompose(graph)))
    text = random_walk(engine, layer.conditions, random.Random(seed))
    cut = data.draw(st.integers(0, len(text)))
    scanner = FieldScanner(layer.conditions)
    scanner.feed(text[:cut])
    mask = engine.table.mask(scanner)
    sample = random.Random(seed).sample(range(engine.vocab_size), 300) + engine.table.digit_ids
    for tok in sample:
        assert bool(mask[tok]) == engine.table.allows(scanner, tok)


def test_forced_tokens_change_cost_not_output(tiny_model):
    c = Constraints("S_7", num_edges=7, depth=3, latency=90)
    fast = run_generation(c, 3, seed=11, model=tiny_model, fast_forward=True)
    slow = run_generation(c, 3, seed=11, model=tiny_model, fast_forward=False)
    assert [g.text for g in fast.generations] == [g.text for g in slow.generations]
    assert [g.graph for g in fast.generations] == [g.graph for g in slow.generations]
    assert fast.stats.forward_passes < slow.stats.forward_passes
    assert fast.stats.forced_tokens == slow.stats.forced_tokens > 0


def test_same_seed_same_output(tiny_model):
    c = Constraints("S_7", num_edges=5, depth=3)
    a = generate(c, 3, seed=5, model=tiny_model)
    b = generate(c, 3, seed=5, model=tiny_model)
    assert a == b
    # batching does not change a graph: graph 0 alone equals graph 0 of the batch
    assert generate(c, 1, seed=5, model=tiny_model) == a[:1]


def test_unset_attributes_are_filled(tiny_model):
    graphs = generate(Constraints("S_7"), 3, seed=2, model=tiny_model)
    assert all(check(g, Constraints("S_7")) == [] for g in graphs)


def test_unconstrained_returns_verdicts(tiny_model):
    gens = run_generation(
        Constraints("S_7", 3, 2), 2, seed=1, model=tiny_model, constrained=False
    ).generations
    assert len(gens) == 2
    for g in gens:
        assert g.text.startswith("<layer service:S_7")
        assert g.valid == (g.graph is not None and check(g.graph, g.constraints) == [])
        assert g.valid or g.violations  # a random model writes garbage: it is reported


def test_tabular_mode(tiny_model):
    c = Constraints("S_7", 4, 3)
    gens = run_generation(c, 2, seed=3, model=tiny_model, fmt="tabular").generations
    for g in gens:  # constrained tabular fixes syntax and row count only
        assert g.graph is not None and g.graph.num_edges == 4


@settings(max_examples=4)
@given(seed=st.integers(0, 2**20), data=st.data())
def test_semantic_option_only_writes_seen_calls(tiny_model, shared_data, seed, data):
    """With a reference, every call is one the reference has seen: 100% semantic validity."""
    from tracegrammar import load_traces

    from .conftest import SAMPLES

    graphs = list(load_traces(SAMPLES["tracellm"]))[:300]
    ref = Reference.from_graphs(graphs)
    depth = data.draw(st.integers(1, min(4, ref.reach("USER"))))
    n = 1 if depth == 1 else data.draw(st.integers(depth, depth + 5))
    c = Constraints(graphs[seed % len(graphs)].service, n, depth)
    for g in generate(c, 2, seed=seed, model=tiny_model, reference=ref):
        assert check(g, c, reference=ref) == []


def test_semantic_depth_beyond_the_reference_is_refused(tiny_model):
    from tracegrammar import CallGraph, Edge

    ref = Reference.from_graphs([CallGraph("S_1", (Edge("0", "USER", "MS_1", "http", 0, 5),))])
    with pytest.raises(ValueError, match="depth=2 is deeper"):
        generate(Constraints("S_1", 2, 2), model=tiny_model, reference=ref)


@pytest.fixture(scope="module")
def casper_reference(shared_data):
    """The Casper v2022 sample: http/rpc parents, mc/db leaves, several services."""
    from tracegrammar import load_traces

    from .conftest import SAMPLES

    graphs = list(load_traces(SAMPLES["casper-v2022"]))
    return graphs, Reference.from_graphs(graphs)


@settings(max_examples=6)
@given(seed=st.integers(0, 2**20), data=st.data())
def test_semantic_rules_keep_calls_in_the_service_scope(tiny_model, casper_reference, seed, data):
    """Every call is one seen from its caller in the request's service (or, where the service
    has none from that caller, in any service), and no leaf-type call has children."""
    from tracegrammar.types import USER

    graphs, ref = casper_reference
    service = graphs[seed % len(graphs)].service
    scope = ref.scope(service)
    depth = data.draw(st.integers(1, min(4, ref.reach(USER))))
    if scope.reach(USER) < depth:  # the driver falls back to every service's calls
        scope = ref.scope(None)
    n = 1 if depth == 1 else data.draw(st.integers(depth, depth + 6))
    c = Constraints(service, n, depth)
    for g in generate(c, 2, seed=seed, model=tiny_model, reference=ref):
        assert check(g, c, reference=ref) == []
        for e in g.edges:
            assert e.type in (scope.calls_from(e.source) or {}).get(e.destination, ())


@settings(max_examples=4)
@given(seed=st.integers(0, 2**20), n=st.integers(3, 12))
def test_novel_calls_keep_leaf_types_leaves(tiny_model, casper_reference, seed, n):
    """Opting out of the seen calls still never gives a leaf-type call children."""
    _, ref = casper_reference
    c = Constraints("S_1", n, 3)
    for g in generate(c, 2, seed=seed, model=tiny_model, reference=ref, novel_calls=True):
        assert {v.code for v in check(g, c, reference=ref)} <= {"E_UNSEEN_CALL"}
        assert all(e.type not in ref.leaf_types for e in g.edges if e.rpc_id in g.children)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_edges": 3, "depth": 4}, "depth"),
        ({"num_edges": 0}, "num_edges"),
        ({"depth": -1}, "depth"),
        ({"num_edges": 4, "depth": 1}, "depth"),
        ({"latency": -5}, "latency"),
    ],
)
def test_bad_constraints_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Constraints("S_1", **kwargs)


def test_bad_requests_fail_before_the_model(tiny_model):
    with pytest.raises(ValueError, match="unknown constraint field 'width'"):
        Constraints.from_dict({"service": "S_1", "width": 3})
    with pytest.raises(ValueError, match=r"num_edges must be at most .* got 5000"):
        generate(Constraints("S_1", num_edges=5000, depth=2), model=tiny_model)
    with pytest.raises(ValueError, match="temperature"):
        generate(Constraints("S_1", 2, 2), temperature=-1, model=tiny_model)
    with pytest.raises(ValueError, match="service"):
        Constraints("payments")


def test_logits_processor_in_model_generate(tiny_model, engine):
    cond = decompose(next(iter(_one_graph())))[0].conditions
    prompt = tiny_model.tokenizer(
        render_layer_prompt(cond), add_special_tokens=False, return_tensors="pt"
    )
    proc = LayerLogitsProcessor(cond, engine, prompt.input_ids.shape[1])
    torch.manual_seed(0)
    out = tiny_model.model.generate(
        **prompt,
        logits_processor=[proc],
        max_new_tokens=400,
        do_sample=True,
        eos_token_id=tiny_model.tokenizer.eos_token_id,
        pad_token_id=tiny_model.tokenizer.eos_token_id,
    )
    text = tiny_model.tokenizer.decode(
        out[0, prompt.input_ids.shape[1] :], skip_special_tokens=True
    )
    assert proc.done
    assert check_layer(render_layer_prompt(cond) + text) == []


def _one_graph():
    from tracegrammar import CallGraph, Edge

    yield CallGraph(
        "S_1",
        (
            Edge("0", "USER", "MS_1", "http", 0, 50),
            Edge("0.1", "MS_1", "MS_2", "rpc", 1, 20),
            Edge("0.1.1", "MS_2", "MS_3", "mc", 2, 3),
            Edge("0.2", "MS_1", "MS_4", "db", 21, 40),
        ),
    )


@pytest.mark.slow
def test_default_base_model_generates_valid_graphs():
    """The real embedded SmolLM2 (minutes on CPU): `pytest -m slow`."""
    import os

    from tracegrammar.decoding.models import load_model

    os.environ.setdefault("TRACEGRAMMAR_ADAPTER", "none")
    lm = load_model()
    c = Constraints("S_32048416", num_edges=5, depth=3, latency=100)
    for g in generate(c, 2, seed=0, model=lm):
        assert check(g, c) == []
