"""The library's `generate` and `run_generation` keep the CLI's request-size limits
(`constraints.check_request_size`): a bad `n`, too many graphs in all or too many calls per graph
is a ConstraintError naming `n` (or `num_edges`) and the value, raised before any model loads."""

from __future__ import annotations

import pytest

import tracegrammar
from tracegrammar.constraints import MAX_GRAPHS_PER_RUN, MAX_NUM_EDGES, Constraints
from tracegrammar.decoding import driver
from tracegrammar.errors import ConstraintError

ENTRY_POINTS = [tracegrammar.generate, driver.run_generation]
C = Constraints("S_1", num_edges=2, depth=2)


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    """Reaching the model is a failure of the test: the limits come first."""

    def refuse(model):
        raise AssertionError("a model was loaded before the request was checked")

    monkeypatch.setattr(driver, "resolve_model", refuse)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "n", [0, -1, MAX_GRAPHS_PER_RUN + 1, 10**11, True, 1.5, 2.0, "3", None], ids=repr
)
def test_bad_n_is_refused_naming_n_and_the_value(entry, n):
    with pytest.raises(ConstraintError) as exc:
        entry(C, n, model="/nonexistent-model")
    assert exc.value.field == "n"
    assert "n " in str(exc.value) and repr(n) in str(exc.value)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_too_many_graphs_in_all(entry):
    n = MAX_GRAPHS_PER_RUN // 2 + 1
    with pytest.raises(ConstraintError) as exc:
        entry([C, C], n, model="/nonexistent-model")
    assert exc.value.field == "n"
    assert str(n) in str(exc.value) and str(2 * n) in str(exc.value)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_too_many_calls_per_graph(entry):
    big = Constraints("S_1", num_edges=MAX_NUM_EDGES + 1)
    with pytest.raises(ConstraintError) as exc:
        entry([C, big], 1, model="/nonexistent-model")
    assert exc.value.field == "num_edges" and str(MAX_NUM_EDGES + 1) in str(exc.value)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_not_constraints_is_refused(entry):
    with pytest.raises(ConstraintError, match="dict"):
        entry([{"service": "S_1"}], 1, model="/nonexistent-model")


def test_within_the_limits_reaches_the_model():
    """The fixture's refusal is what stops a good request: the check lets it through."""
    with pytest.raises(AssertionError, match="model was loaded"):
        tracegrammar.generate(C, MAX_GRAPHS_PER_RUN, model="/nonexistent-model")
