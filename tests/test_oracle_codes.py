"""For each error code, breaking exactly that rule is rejected with that code; the oracle never
raises on arbitrary input."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tracegrammar import CallGraph, Constraints, Reference, check, check_layer
from tracegrammar.encode import render_layer, render_tabular
from tracegrammar.layers import decompose
from tracegrammar.oracle import CODES
from tracegrammar.types import Layer, LayerConditions, SubgraphBlock

from .strategies import call_graphs

# ------------------------------------------------------------------------------------------------
# whole-graph rules: mutation(graph) -> broken graph (None: not applicable to this graph)
# ------------------------------------------------------------------------------------------------


def _edit(g: CallGraph, rid: str, **changes) -> CallGraph:
    return CallGraph(
        g.service, tuple(replace(e, **changes) if e.rpc_id == rid else e for e in g.edges)
    )


def _leaf(g: CallGraph, non_root: bool = True):
    leaves = [
        e for e in g.edges if e.rpc_id not in g.children and (e.rpc_id != "0" or not non_root)
    ]
    return leaves[-1] if leaves else None


def _m_root_source(g):
    return _edit(g, "0", source="MS_1")


def _m_call_type(g):
    return _edit(g, "0", type="grpc")


def _m_name(g):
    leaf = _leaf(g, non_root=False)
    return _edit(g, leaf.rpc_id, destination="not a name")


def _m_service_format(g):
    return CallGraph("service-1", g.edges)


def _m_child_after_parent(g):
    leaf = _leaf(g)
    return (
        None if leaf is None else _edit(g, leaf.rpc_id, finish=g.by_id[leaf.parent_id].finish + 1)
    )


def _m_child_before_parent(g):
    leaf = _leaf(g)
    if leaf is None or g.by_id[leaf.parent_id].start == 0:
        return None
    return _edit(g, leaf.rpc_id, start=g.by_id[leaf.parent_id].start - 1)


def _m_start_after_finish(g):
    leaf = _leaf(g, non_root=False)
    return _edit(g, leaf.rpc_id, start=leaf.finish + 1)


def _m_negative_time(g):
    leaf = _leaf(g, non_root=False)
    return _edit(g, leaf.rpc_id, start=-1)


def _m_root_start(g):
    return _edit(g, "0", start=1, finish=max(1, g.by_id["0"].finish))


def _m_id_gap(g):
    leaf = _leaf(g)
    if leaf is None:
        return None
    parent, _, k = leaf.rpc_id.rpartition(".")
    return _edit(g, leaf.rpc_id, rpc_id=f"{parent}.{int(k) + 1}")


def _m_source_mismatch(g):
    leaf = _leaf(g)
    if leaf is None:
        return None
    other = "MS_1" if g.by_id[leaf.parent_id].destination != "MS_1" else "MS_2"
    return _edit(g, leaf.rpc_id, source=other)


def _m_duplicate(g):
    return CallGraph(g.service, (*g.edges, g.edges[-1]))


def _m_root_missing(g):
    if g.num_edges == 1:
        return None
    return CallGraph(g.service, tuple(e for e in g.edges if e.rpc_id != "0"))


def _m_orphan(g):
    inner = [rid for rid in g.children if rid != "0"]
    if not inner:
        return None
    return CallGraph(g.service, tuple(e for e in g.edges if e.rpc_id != inner[0]))


def _m_rpc_id(g):
    leaf = _leaf(g)
    return None if leaf is None else _edit(g, leaf.rpc_id, rpc_id=leaf.rpc_id + ".x")


def _m_empty(g):
    return CallGraph(g.service, ())


GRAPH_MUTATIONS = {
    "E_ROOT_SOURCE": (_m_root_source, True),
    "E_CALL_TYPE": (_m_call_type, True),
    "E_NAME": (_m_name, True),
    "E_SERVICE_FORMAT": (_m_service_format, True),
    "E_CHILD_AFTER_PARENT": (_m_child_after_parent, True),
    "E_CHILD_BEFORE_PARENT": (_m_child_before_parent, False),
    "E_START_AFTER_FINISH": (_m_start_after_finish, False),
    "E_NEGATIVE_TIME": (_m_negative_time, False),
    "E_ROOT_START": (_m_root_start, False),
    "E_ID_GAP": (_m_id_gap, True),
    "E_SOURCE_MISMATCH": (_m_source_mismatch, True),
    "E_DUPLICATE_ID": (_m_duplicate, False),
    "E_ROOT_MISSING": (_m_root_missing, False),
    "E_ORPHAN": (_m_orphan, False),
    "E_RPC_ID": (_m_rpc_id, False),
    "E_EMPTY": (_m_empty, True),
}


@pytest.mark.parametrize("code", sorted(GRAPH_MUTATIONS))
@settings(suppress_health_check=[HealthCheck.filter_too_much], max_examples=40)
@given(graph=call_graphs())
def test_graph_rule_broken_is_named(code, graph):
    mutate, exact = GRAPH_MUTATIONS[code]
    broken = mutate(graph)
    assume(broken is not None)
    codes = {v.code for v in check(broken)}
    assert code in codes
    if exact:
        assert codes == {code}


@given(graph=call_graphs(), delta=st.integers(1, 5))
def test_constraint_rules(graph, delta):
    ok = Constraints(graph.service, graph.num_edges, graph.depth, graph.latency)
    assert check(graph, ok) == []
    cases = {
        "E_SERVICE": replace(ok, service="S_" + "9" * 12),
        "E_NUM_EDGES": Constraints(graph.service, num_edges=graph.num_edges + delta),
        "E_DEPTH": Constraints(graph.service, depth=graph.depth + delta),
    }
    if graph.latency >= delta:
        cases["E_LATENCY"] = Constraints(graph.service, latency=graph.latency - delta)
    for code, c in cases.items():
        assert {v.code for v in check(graph, c)} == {code}


@given(graph=call_graphs())
def test_semantic_rule(graph):
    assert check(graph, reference=Reference.from_graphs([graph])) == []
    dropped = graph.edges[-1]
    ref = Reference(
        frozenset(graph.calls()) - {(dropped.source, dropped.destination, dropped.type)}
    )
    assert {v.code for v in check(graph, reference=ref)} == {"E_UNSEEN_CALL"}


@given(graph=call_graphs())
def test_leaf_type_rule(graph):
    """A call with children whose type the reference only saw as a leaf is named."""
    parents = [e for e in graph.edges if e.rpc_id in graph.children]
    assume(parents)
    ref = Reference.from_graphs([graph])
    leafy = Reference(ref.calls, ref.service_calls, frozenset({parents[0].type}))
    codes = [v.code for v in check(graph, reference=leafy)]
    assert set(codes) == {"E_LEAF_PARENT"}
    assert codes.count("E_LEAF_PARENT") == sum(e.type == parents[0].type for e in parents)


def test_semantic_reach_rule_names_a_block_on_a_leaf_call():
    """The decoder's semantic rules refuse a subgraph block on a call of a leaf type."""
    from tracegrammar.reference import CallScope
    from tracegrammar.rules import Draft, block_rules

    cond = LayerConditions("S_1", "MS_1", "USER", 1, 3, 1, 2, 1, 0, 10)
    draft = Draft(cond, calls=CallScope(None, leaves=frozenset({"mc"})))
    draft.edges = [
        {"id": 1, "dm": "MS_2", "type": "mc", "start": 0, "finish": 1},
        {"id": 2, "dm": "MS_3", "type": "rpc", "start": 1, "finish": 2},
    ]
    draft.blocks = [{}]
    reach = next(r for r in block_rules(draft, 0, "edge") if r.code == "E_SEMANTIC_REACH")
    assert 1 not in reach.allowed and 2 in reach.allowed


# ------------------------------------------------------------------------------------------------
# layer rules
# ------------------------------------------------------------------------------------------------


def _with_blocks(layer: Layer, *blocks: SubgraphBlock) -> Layer:
    return replace(layer, subgraphs=tuple(blocks))


def _block_edit(layer: Layer, i: int = 0, **changes) -> Layer | None:
    if len(layer.subgraphs) <= i:
        return None
    b = layer.subgraphs[i]
    new = SubgraphBlock(changes.pop("edge", b.edge), replace(b.conditions, **changes))
    blocks = list(layer.subgraphs)
    blocks[i] = new
    return _with_blocks(layer, *blocks)


def _edge_edit(layer: Layer, k: int = 0, **changes) -> Layer:
    edges = list(layer.edges)
    edges[k] = replace(edges[k], **changes)
    return replace(layer, edges=tuple(edges))


def _parent_of_block(layer: Layer, i: int = 0):
    b = layer.subgraphs[i]
    return next(e for e in layer.edges if e.index == b.edge)


LAYER_MUTATIONS = {
    "E_EDGE_COUNT": lambda L: replace(L, edges=L.edges[:-1]) if len(L.edges) > 1 else None,
    "E_ID_CONTINUITY": lambda L: _edge_edit(L, -1, index=L.edges[-1].index + 7),
    "E_FINISH_BOUND": lambda L: _edge_edit(L, 0, finish=L.conditions.latency + 1),
    "E_START_AFTER_FINISH": lambda L: _edge_edit(L, 0, start=L.edges[0].finish + 1),
    "E_START_BOUND": lambda L: (
        _edge_edit(L, 0, start=L.conditions.start_communication_at - 1)
        if L.conditions.start_communication_at > 0
        else None
    ),
    "E_SUBGRAPH_UNEXPECTED": lambda L: (
        _with_blocks(L, SubgraphBlock(L.edges[0].index, L.conditions))
        if L.conditions.remaining_depth == 0
        else None
    ),
    "E_SUBGRAPH_COUNT": lambda L: _with_blocks(L, *L.subgraphs[:-1]) if L.subgraphs else None,
    "E_SUBGRAPH_EDGE": lambda L: _block_edit(L, 0, edge=10**6),
    "E_SUBGRAPH_ORDER": lambda L: (
        _with_blocks(L, *reversed(L.subgraphs)) if len(L.subgraphs) > 1 else None
    ),
    "E_SUBGRAPH_BUDGET": lambda L: (
        _block_edit(L, 0, num_edges=L.subgraphs[0].conditions.num_edges + 1)
        if L.subgraphs
        else None
    ),
    "E_CHILD_SERVICE": lambda L: _block_edit(L, 0, service="S_123456789012"),
    "E_CHILD_START_NODE": lambda L: _block_edit(L, 0, start_node="MS_42424"),
    "E_CHILD_CALLER": lambda L: _block_edit(L, 0, caller="MS_42424"),
    "E_CHILD_START_EDGE_ID": lambda L: _block_edit(L, 0, start_edge_id=2),
    "E_CHILD_DEPTH": lambda L: _block_edit(L, 0, remaining_depth=L.conditions.remaining_depth),
    "E_DEPTH_NOT_REACHED": lambda L: (
        _block_edit(L, 0, remaining_depth=L.conditions.remaining_depth - 2)
        if len(L.subgraphs) == 1 and L.conditions.remaining_depth >= 2
        else None
    ),
    "E_CHILD_INFEASIBLE": lambda L: (
        _block_edit(L, 0, num_current_edges=L.subgraphs[0].conditions.num_edges + 1)
        if L.subgraphs
        else None
    ),
    "E_CHILD_START": lambda L: (
        _block_edit(L, 0, start_communication_at=_parent_of_block(L).finish + 1)
        if L.subgraphs
        else None
    ),
    "E_CHILD_LATENCY": lambda L: (
        _block_edit(L, 0, latency=_parent_of_block(L).finish + 1) if L.subgraphs else None
    ),
    "E_COND_NUM_EDGES": lambda L: replace(L, conditions=replace(L.conditions, num_edges=0)),
    "E_COND_DEPTH": lambda L: replace(
        L, conditions=replace(L.conditions, remaining_depth=L.conditions.num_edges)
    ),
    "E_COND_WINDOW": lambda L: replace(
        L, conditions=replace(L.conditions, start_communication_at=L.conditions.latency + 1)
    ),
}


@pytest.mark.parametrize("code", sorted(LAYER_MUTATIONS))
@settings(suppress_health_check=[HealthCheck.filter_too_much], max_examples=30)
@given(graph=call_graphs())
def test_layer_rule_broken_is_named(code, graph):
    candidates = [LAYER_MUTATIONS[code](layer) for layer in decompose(graph)]
    candidates = [c for c in candidates if c is not None]
    assume(candidates)
    for broken in candidates:
        assert code in {v.code for v in check_layer(broken)}
        # and the same through text, where the text can still be written
        if code not in {"E_COND_NUM_EDGES", "E_COND_WINDOW"}:
            assert code in {v.code for v in check_layer(render_layer(broken))}


@given(graph=call_graphs())
def test_scratch_and_missing_conditions(graph):
    layer = decompose(graph)[0]
    text = render_layer(layer, "layer_instruct")
    assert check_layer(text, "layer_instruct") == []
    wrong = text.replace("generated 1 of", "generated 2 of", 1)
    assert "E_SCRATCH" in {v.code for v in check_layer(wrong, "layer_instruct")}
    plain = render_layer(layer)
    short = plain[: plain.index(" latency:")] + plain[plain.index(">\n") :]
    assert {v.code for v in check_layer(short)} == {"E_COND_MISSING"}
    assert check_layer(short, conditions=layer.conditions) == []


def test_every_code_is_documented_and_tested():
    tested = (
        set(GRAPH_MUTATIONS)
        | set(LAYER_MUTATIONS)
        | {
            "E_SERVICE",
            "E_NUM_EDGES",
            "E_DEPTH",
            "E_LATENCY",
            "E_UNSEEN_CALL",
            "E_LEAF_PARENT",
            "E_SEMANTIC_REACH",
            # requested attributes: tests/test_attributes.py
            "E_HIGH_LATENCY",
            "E_MISSING_CALL",
            "E_NO_UNCOMMON_CALL",
            "E_SCRATCH",
            "E_COND_MISSING",
            "E_SYNTAX",
            "E_LAYER_STRUCTURE",
            "E_COND_CURRENT_EDGES",
            "E_COND_SUBGRAPHS",
            # wrong types and oversized values: tests/test_oracle_types.py
            "E_FIELD_TYPE",
            "E_TIME_TYPE",
            "E_TOO_LONG",
        }
    )
    assert set(CODES) <= tested


@pytest.mark.parametrize(
    ("conditions_change", "code"),
    [
        ({"num_current_edges": 0}, "E_COND_CURRENT_EDGES"),
        ({"num_subgraphs": 0}, "E_COND_SUBGRAPHS"),
    ],
)
@given(graph=call_graphs())
def test_condition_feasibility(conditions_change, code, graph):
    layers = [L for L in decompose(graph) if L.conditions.remaining_depth > 0]
    assume(layers)
    broken = replace(layers[0], conditions=replace(layers[0].conditions, **conditions_change))
    assert code in {v.code for v in check_layer(broken)}


@given(st.text())
def test_oracle_never_raises_on_text(text):
    assert isinstance(check(text), list)
    assert isinstance(check_layer(text), list)


@given(graph=call_graphs(), cut=st.integers(0, 10_000))
def test_truncated_text_is_a_syntax_error(graph, cut):
    text = render_tabular(graph)
    cut = cut % len(text)
    assert check(text) == []
    assert "E_SYNTAX" in {v.code for v in check(text[:cut])}


def test_layer_structure_errors():
    g = CallGraph("S_1", ())
    assert {v.code for v in check(g)} == {"E_EMPTY"}
    assert {v.code for v in check("<layer>\n")} == {"E_SYNTAX"}


def test_grammar_oracle_and_loader_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; import tracegrammar, tracegrammar.oracle, tracegrammar.traces, tracegrammar.grammar, "
        "tracegrammar.rules; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
