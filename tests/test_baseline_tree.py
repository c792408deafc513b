"""The baseline's tree builder in O(n log n) gives the trees of the earlier quadratic builder for
every seed and shape (same seed, same graphs): compared with a copy of the old algorithm here,
on fitted tables from hand-made, generated and real graphs, with the recomputation path forced
and with draws placed on the very edge of an interval."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar import baseline as bl
from tracegrammar.baseline import ProbabilisticBaseline, _ParentPicker
from tracegrammar.constraints import Constraints
from tracegrammar.rules import feasible_shape
from tracegrammar.traces import load_traces
from tracegrammar.types import USER, CallGraph, Edge

from .conftest import SAMPLES
from .strategies import call_graphs


def old_tree(model: ProbabilisticBaseline, num_edges: int, depth: int, rng) -> list[bl._Node]:
    """The quadratic builder as it was (the reference the fast one must match draw for draw)."""
    nodes = [bl._Node(parent=None, depth=1)]
    for d in range(2, depth + 1):
        bl._attach(nodes, len(nodes) - 1, d)
    for _ in range(num_edges - depth):
        open_ = [i for i, node in enumerate(nodes) if node.depth < depth]
        w = np.array([model._continue(nodes[i].depth, len(nodes[i].kids)) for i in open_])
        parent = open_[int(rng.choice(len(open_), p=w / w.sum()))]
        bl._attach(nodes, parent, nodes[parent].depth + 1)
    for node in nodes:
        node.kids = [node.kids[i] for i in rng.permutation(len(node.kids))]
    return nodes


class OldBaseline(ProbabilisticBaseline):
    def _tree(self, num_edges, depth, rng):
        return old_tree(self, num_edges, depth, rng)


def _shape(nodes: list[bl._Node]) -> list[tuple[int | None, int, list[int]]]:
    return [(n.parent, n.depth, n.kids) for n in nodes]


def _same_trees(model: ProbabilisticBaseline, num_edges: int, depth: int, seed: int) -> None:
    new_rng, old_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    new = model._tree(num_edges, depth, new_rng)
    old = old_tree(model, num_edges, depth, old_rng)
    assert _shape(new) == _shape(old)
    assert len(new) == num_edges
    # the generator is left where the old builder left it: later draws (names, times) agree
    assert new_rng.bit_generator.state == old_rng.bit_generator.state


def _hand_model() -> ProbabilisticBaseline:
    a, b, c = "MS_1", "MS_2", "MS_3"
    g = CallGraph(
        "S_1",
        (
            Edge("0", USER, a, "http", 0, 10),
            Edge("0.1", a, b, "rpc", 1, 5),
            Edge("0.1.1", b, c, "mc", 2, 3),
            Edge("0.2", a, c, "db", 6, 8),
        ),
    )
    return ProbabilisticBaseline.fit([g, CallGraph("S_2", (Edge("0", USER, b, "rpc", 0, 3),))])


HAND = _hand_model()


@st.composite
def shapes(draw: st.DrawFn, max_edges: int = 120) -> tuple[int, int]:
    depth = draw(st.integers(2, 12))
    num_edges = draw(st.integers(depth, max(depth, max_edges)))
    assert feasible_shape(num_edges, depth)
    return num_edges, depth


@settings(max_examples=150)
@given(shape=shapes(), seed=st.integers(0, 2**32 - 1))
def test_same_trees_as_the_old_builder(shape, seed):
    _same_trees(HAND, *shape, seed)


@settings(max_examples=40)
@given(
    graphs=st.lists(call_graphs(max_edges=15), min_size=1, max_size=5),
    shape=shapes(max_edges=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_same_trees_on_any_fitted_tables(graphs, shape, seed):
    _same_trees(ProbabilisticBaseline.fit(graphs), *shape, seed)


@pytest.fixture(scope="module")
def real_model(shared_data) -> ProbabilisticBaseline:
    return ProbabilisticBaseline.fit(load_traces(SAMPLES["tracellm"]))


@pytest.mark.parametrize(
    ("num_edges", "depth", "seeds"),
    [(2, 2, range(5)), (30, 6, range(5)), (400, 4, range(3)), (1000, 9, [7])],
)
def test_same_trees_on_real_tables_large(real_model, num_edges, depth, seeds):
    for seed in seeds:
        _same_trees(real_model, num_edges, depth, seed)


def test_same_graphs_from_sample(real_model):
    """Whole graphs (names and times drawn after the tree) are unchanged, for any seed."""
    old = OldBaseline(real_model.tables)
    requests = [Constraints("S_1", 40, 5), Constraints("S_1", 7, 3, 50), Constraints("S_2")]
    for c in requests:
        for seed in (0, 1, 17):
            assert real_model.sample(c, 3, seed) == old.sample(c, 3, seed)


@settings(max_examples=60)
@given(shape=shapes(max_edges=80), seed=st.integers(0, 2**32 - 1))
def test_the_recomputation_gives_the_same_trees(shape, seed):
    """With every draw recomputed numpy's way (the rare path), still the same trees."""
    real_init = _ParentPicker.__init__

    def always_recompute(self, capacity, slack=None):
        real_init(self, capacity, slack=2.0)  # no draw is ever far enough from an edge

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_ParentPicker, "__init__", always_recompute)
        _same_trees(HAND, *shape, seed)


@settings(max_examples=200)
@given(
    weights=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=60),
    seed=st.integers(0, 2**32 - 1),
    slack=st.sampled_from([None, 2.0]),
)
def test_a_draw_is_numpys_choice(weights, seed, slack):
    picker = _ParentPicker(len(weights), slack)
    for i, w in enumerate(weights):
        picker.set(i, w)
    mine, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    w = np.array(weights)
    assert picker.draw(mine) == int(numpys.choice(len(w), p=w / w.sum()))
    assert mine.bit_generator.state == numpys.bit_generator.state


@settings(max_examples=200)
@given(
    before=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=40),
    after=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=40),
    seed=st.integers(0, 2**32 - 1),
    nudge=st.sampled_from([-3, -2, -1, 0, 1, 2, 3]),
)
def test_a_draw_on_the_edge_of_an_interval_is_numpys_choice(before, after, seed, nudge):
    """Weights chosen so that the uniform draw falls (within a few ulps) on the boundary between
    two positions, where the summed tree and numpy's cumsum may round differently: the draw is
    recomputed and agrees with numpy."""
    u = np.random.default_rng(seed).random()
    if not 0.01 < u < 0.99:
        return
    head = float(np.sum(before))
    # the rest weighs head * (1 - u) / u, so head / total is u up to rounding
    rest = head * (1 - u) / u
    tail = np.array(after) * (rest / float(np.sum(after)))
    for _ in range(abs(nudge)):  # a few ulps either way
        tail[0] = np.nextafter(tail[0], np.inf if nudge > 0 else 0.0)
    weights = [*before, *tail.tolist()]
    picker = _ParentPicker(len(weights))
    for i, w in enumerate(weights):
        picker.set(i, w)
    mine, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    w = np.array(weights)
    assert picker.draw(mine) == int(numpys.choice(len(w), p=w / w.sum()))
    assert picker.recomputed == 1
    assert mine.bit_generator.state == numpys.bit_generator.state


def test_zero_weights_are_never_drawn():
    picker = _ParentPicker(5)
    for i, w in enumerate([0.0, 1.0, 0.0, 2.0, 0.0]):
        picker.set(i, w)
    rng = np.random.default_rng(3)
    assert {picker.draw(rng) for _ in range(200)} == {1, 3}


def test_work_per_call_does_not_grow_with_the_tree(monkeypatch):
    """No timing: the weights are looked up once per (depth, child count), not once per open
    node per added call (the old builder made ~n^2 / 2 lookups), and no draw falls back to the
    O(n) recomputation on an ordinary tree."""
    lookups = []
    real = ProbabilisticBaseline._continue

    def counted(self, depth, kids):
        lookups.append((depth, kids))
        return real(self, depth, kids)

    monkeypatch.setattr(ProbabilisticBaseline, "_continue", counted)
    recomputed = []
    monkeypatch.setattr(_ParentPicker, "_exact", lambda self, u: recomputed.append(u))
    nodes = HAND._tree(2000, 5, np.random.default_rng(0))
    assert len(nodes) == 2000
    assert len(lookups) == len(set(lookups)) <= 2000
    assert recomputed == []
