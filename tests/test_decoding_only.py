"""`run_generation(..., only=range(a, b))`: the graphs at those positions, exactly as the whole
run gives them (the law that lets a job be split into shards on several machines)."""

from __future__ import annotations

import pytest

from tracegrammar import Constraints
from tracegrammar.decoding.driver import run_generation
from tracegrammar.errors import InputError

REQUESTS = [Constraints("S_7"), Constraints("S_7", num_edges=4, depth=3), Constraints("S_9")]


@pytest.fixture(scope="module")
def whole(tiny_model):
    return run_generation(REQUESTS, 2, seed=13, model=tiny_model).generations


@pytest.mark.parametrize("window", [range(0, 1), range(1, 4), range(3, 6), range(5, 6)])
def test_a_window_is_the_same_positions_of_the_whole_run(tiny_model, whole, window):
    part = run_generation(REQUESTS, 2, seed=13, model=tiny_model, only=window)
    assert [g.graph for g in part.generations] == [
        g.graph for g in whole[window.start : window.stop]
    ]
    assert [g.text for g in part.generations] == [g.text for g in whole[window.start : window.stop]]
    assert part.stats.graphs == len(window)


@pytest.mark.parametrize("window", [range(0, 0), range(2, 7), range(-1, 2), range(0, 4, 2), (0, 2)])
def test_a_window_outside_the_requests_is_refused(tiny_model, window):
    with pytest.raises(InputError, match="only must be"):
        run_generation(REQUESTS, 2, seed=13, model=tiny_model, only=window)
