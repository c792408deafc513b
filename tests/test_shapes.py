"""Shape feasibility, stated once (`rules.feasible_shape`): every place that decides whether a
(num_edges, depth) pair can be a call graph agrees with it."""

from __future__ import annotations

import random

from tracegrammar.constraints import ConstraintError, Constraints
from tracegrammar.decoding.prior import Prior
from tracegrammar.evaluation.grid import Cell, grid
from tracegrammar.rules import (
    current_edges_range,
    depth_range,
    feasible_shape,
    nearest_feasible_depth,
    shape_problem,
)

SHAPES = [(n, d) for n in range(0, 41) for d in range(0, 45)]


def test_known_cases():
    assert feasible_shape(1, 1) and feasible_shape(2, 2) and feasible_shape(30, 6)
    assert not feasible_shape(2, 1)  # depth 1 is the root call alone
    assert not feasible_shape(1, 2) and not feasible_shape(3, 4)  # a level needs a call
    assert not feasible_shape(0, 0) and not feasible_shape(5, 0)


def test_the_root_layer_rules_agree():
    """A graph of depth d is a root layer of one call with remaining_depth d - 1."""
    for n, d in SHAPES:
        if n < 1 or d < 1:
            assert not feasible_shape(n, d)
            continue
        root_layer_ok = (d - 1) in depth_range(n) and 1 in current_edges_range(n, d - 1)
        assert feasible_shape(n, d) == root_layer_ok, (n, d)


def test_requests_refuse_exactly_the_infeasible_shapes():
    for n, d in SHAPES:
        assert (shape_problem(n, d) is None) == feasible_shape(n, d)
        if n < 1 or d < 1:
            continue
        try:
            Constraints("S_1", n, d)
        except ConstraintError as exc:
            assert not feasible_shape(n, d) and exc.field == "depth"
            assert str(exc) == shape_problem(n, d)
        else:
            assert feasible_shape(n, d), (n, d)


def test_the_benchmark_grid_is_the_feasible_cells():
    cells = grid(30, 6)
    assert len(cells) == 136
    assert cells == [Cell(n, d) for n in range(1, 31) for d in range(1, 7) if feasible_shape(n, d)]


def test_nearest_feasible_depth():
    for n, d in SHAPES:
        if n < 1:
            continue
        near = nearest_feasible_depth(n, d)
        assert feasible_shape(n, near)
        if feasible_shape(n, d):
            assert near == d


def test_the_prior_completes_to_feasible_shapes():
    prior = Prior(((5, 3, 10), (1, 1, 4), (7, 2, 9), (2, 2, 3)))
    rng = random.Random(0)
    for _ in range(300):
        n = rng.choice([None, 1, 2, 3, 9])
        d = rng.choice([None, 1, 2, 4])
        if n is not None and d is not None and not feasible_shape(n, d):
            continue
        got_n, got_d, _ = prior.complete(Constraints("S_1", n, d), rng)
        assert feasible_shape(got_n, got_d), (n, d, got_n, got_d)
        assert got_n == (n if n is not None else got_n) and got_d == (d if d is not None else got_d)
