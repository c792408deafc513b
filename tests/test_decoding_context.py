"""Constrained context decoding: with the tiny random model, every window written under the
context grammar and the window rules has exactly the requested lines, arrivals inside the window
and non-decreasing, every required id, only known services and feasible shapes, at T = 0.2 and
1.0. Unconstrained, the same model writes nothing of the kind."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracegrammar.decoding.context import ContextScanner, WindowRules, write_windows
from tracegrammar.errors import ConstraintError
from tracegrammar.reference import Reference
from tracegrammar.rules import IntSet, feasible_shape
from tracegrammar.workloads import WindowRequest

KNOWN = [f"S_{i}" for i in (1, 2, 30, 400, 5000)]
#: Calls of depth at most 3 below USER (MS_1 -> MS_2 -> MS_3 -> MS_4 is 4 levels of calls).
REFERENCE = Reference(
    frozenset({("USER", "MS_1", "http"), ("MS_1", "MS_2", "rpc"), ("MS_2", "MS_3", "rpc")}),
    frozenset((s, "USER", "MS_1", "http") for s in KNOWN),
    frozenset(),
)

windows = st.builds(
    lambda start, length, n, include: WindowRequest(start, start + length, n, tuple(include[:n])),
    st.floats(1e9, 2e9, allow_nan=False),
    st.sampled_from([0.001, 0.004, 0.5, 3.0, 600.0]),
    st.integers(1, 6),
    st.lists(st.sampled_from(KNOWN), max_size=4, unique=True),
)


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(windows, min_size=1, max_size=3), st.sampled_from([0.2, 1.0]), st.integers(0, 99))
def test_constrained_windows_always_meet_the_request(tiny_model, requests, temperature, seed):
    results, _ = write_windows(
        requests, tiny_model, temperature=temperature, seed=seed, reference=REFERENCE
    )
    for req, res in zip(requests, results, strict=True):
        assert res.violations == ()
        assert len(res.contexts) == req.num_traces
        offsets = [c.at for c in res.contexts]
        assert offsets == sorted(offsets)
        assert all(0 <= at < req.length_ms for at in offsets)
        assert set(req.include) <= {c.service for c in res.contexts}
        assert {c.service for c in res.contexts} <= set(KNOWN)
        assert all(feasible_shape(c.num_edges, c.depth) for c in res.contexts)
        assert all(c.depth <= 3 for c in res.contexts)  # the reference's calls go 3 deep


def test_same_seed_same_windows(tiny_model):
    req = [WindowRequest(0.0, 10.0, 3, ("S_2",))]
    a, _ = write_windows(req, tiny_model, seed=5, reference=REFERENCE)
    b, _ = write_windows(req, tiny_model, seed=5, reference=REFERENCE)
    assert a[0].text == b[0].text


def test_unconstrained_random_model_breaks_the_rules(tiny_model):
    req = [WindowRequest(0.0, 10.0, 3, ("S_2",))]
    results, _ = write_windows(
        req, tiny_model, seed=0, temperature=1.0, constrained=False, reference=REFERENCE
    )
    assert not results[0].compliant


def test_unknown_or_too_many_refused_before_decoding(tiny_model):
    with pytest.raises(ConstraintError, match="S_9") as info:
        write_windows([WindowRequest(0.0, 1.0, 2, ("S_9",))], tiny_model, reference=REFERENCE)
    assert info.value.field == "include"
    with pytest.raises(ConstraintError) as info:
        write_windows([WindowRequest(0.0, 1.0, 10_000)], tiny_model, reference=REFERENCE)
    assert info.value.field == "num_traces"


def test_scanner_targets_follow_the_rules():
    rules = WindowRules(WindowRequest(0.0, 1.0, 2, ("S_2",)), frozenset(KNOWN), 30, 3)
    s = ContextScanner(rules)
    s.feed("(at:")
    assert s.target == IntSet.range(0, 999)
    s.feed("40 service:")
    assert s.target == frozenset(KNOWN)
    s.feed("S_1 num_edges:")
    assert s.target == IntSet.range(1, 30)
    s.feed("5 depth:")
    assert s.target == IntSet.range(2, 3)
    s.feed("2 latency:7)\n(at:")
    assert s.target == IntSet.range(40, 999)
    s.feed("41 service:")
    assert s.target == frozenset({"S_2"})  # the last line must hold the missing id
