"""The context decoder's data priors (tracegrammar.context_prior): exact piece and digit
probabilities on small cases, names outside the allowed set get nothing, the counts are the
baseline's, and decoding with them stays compliant, deterministic and follows the counts."""

from __future__ import annotations

import math

import pytest

from tracegrammar.baseline import ProbabilisticBaseline
from tracegrammar.context_prior import (
    END,
    ArrivalPrior,
    ServicePrior,
    digit_probs,
    service_counts,
)
from tracegrammar.decoding.context import FieldPriors, WindowRules, write_windows
from tracegrammar.errors import ConstraintError
from tracegrammar.rules import IntSet
from tracegrammar.types import CallGraph, Edge
from tracegrammar.workloads import WindowRequest

from .test_decoding_context import KNOWN, REFERENCE

COUNTS = {"S_1": 1, "S_12": 2, "S_2": 3, "S_3": 0, "S_4": 10}
ALLOWED = frozenset({"S_1", "S_12", "S_2", "S_3"})  # S_4 is masked (not allowed)


def test_trie_gives_exact_piece_probabilities() -> None:
    trie = ServicePrior(COUNTS).trie(ALLOWED)
    assert trie.mass("") == 6  # S_4's 10 are not there: it is not allowed
    assert trie.piece_prob("", "S") == 1.0
    assert trie.piece_prob("", "S_") == 1.0
    assert trie.next_probs("S_") == {"1": 0.5, "2": 0.5}  # S_3 has no count
    assert trie.next_probs("S_1") == {END: 1 / 3, "2": 2 / 3}
    assert trie.piece_prob("S_1", END) == pytest.approx(1 / 3)
    assert trie.piece_prob("S_", "3") == 0.0
    assert trie.piece_prob("S_", "4") == 0.0  # a masked name gets zero
    assert trie.piece_prob("S_4", END) is None  # nothing allowed starts there
    # multiplied along a name: its count over the allowed total
    steps = [
        trie.piece_prob(b, x) for b, x in (("", "S_"), ("S_", "1"), ("S_1", "2"), ("S_12", END))
    ]
    assert math.prod(p or 0.0 for p in steps) == pytest.approx(2 / 6)
    assert ServicePrior(COUNTS).probability(ALLOWED, "S_12") == pytest.approx(2 / 6)
    assert ServicePrior(COUNTS).probability(ALLOWED, "S_4") == 0.0


def test_unseen_names_get_alpha_or_all_alike() -> None:
    smoothed = ServicePrior(COUNTS, alpha=1.0)
    assert smoothed.probability(ALLOWED, "S_3") == pytest.approx(1 / 10)  # (0+1)/(6+4)
    only_unseen = ServicePrior(COUNTS).trie({"S_3", "S_9"})
    assert only_unseen.next_probs("S_") == {"3": 0.5, "9": 0.5}
    with pytest.raises(ValueError, match="S_1"):
        ServicePrior({"S_1": -1})


def test_counts_are_the_baselines() -> None:
    def graph(service: str, ts: float) -> CallGraph:
        return CallGraph(service, (Edge("0", "USER", "MS_1", "http", 0, 5),), ts)

    graphs = [graph("S_1", 1.0), graph("S_1", 2.0), graph("S_2", 3.0), CallGraph("S_3", ())]
    assert service_counts(graphs) == {"S_1": 2, "S_2": 1}
    assert ProbabilisticBaseline.fit(graphs).service_mix == service_counts(graphs)


def test_arrival_prior_is_the_first_of_uniform_arrivals() -> None:
    one = ArrivalPrior(previous=5, length_ms=25, lines_left=1)
    assert one.mass(5, 24) == pytest.approx(1.0)
    assert one.mass(7, 7) == pytest.approx(1 / 20)
    assert one.mass(0, 4) == 0.0
    three = ArrivalPrior(previous=0, length_ms=10, lines_left=3)
    assert three.mass(0, 9) == pytest.approx(1.0)
    assert three.mass(0, 0) == pytest.approx(1 - 0.9**3)  # the first of three comes early
    assert three.mass(9, 9) == pytest.approx(0.1**3)


def test_digit_probabilities_exact() -> None:
    uniform = ArrivalPrior(previous=0, length_ms=20, lines_left=1)  # 1/20 on each of 0..19
    whole = IntSet.range(0, 19)
    first = digit_probs(whole, "", uniform)
    assert first["0"] == pytest.approx(1 / 20)
    assert first["1"] == pytest.approx(11 / 20)  # 1 and 10..19
    assert all(first[d] == pytest.approx(1 / 20) for d in "23456789")
    assert END not in first
    assert digit_probs(whole, "1", uniform) == pytest.approx(
        {END: 1 / 11, **dict.fromkeys("0123456789", 1 / 11)}
    )
    assert digit_probs(whole, "2", uniform) == {END: 1.0}  # 20.. is outside the target
    assert digit_probs(whole, "0", uniform) == {END: 1.0}  # no leading zeros
    part = IntSet.range(5, 12)
    probs = digit_probs(part, "", uniform)
    assert probs == pytest.approx({"1": 3 / 8, **dict.fromkeys("56789", 1 / 8)})
    assert sum(probs.values()) == pytest.approx(1.0)
    assert digit_probs(IntSet.range(30, 40), "", ArrivalPrior(0, 20, 1)) == {}  # no mass


def test_field_priors_log_probabilities(tiny_model) -> None:
    from tracegrammar.decoding.context import ContextScanner

    table = tiny_model.engine().table
    fields = FieldPriors(table, ServicePrior({"S_1": 1, "S_2": 3}))
    scanner = ContextScanner(WindowRules(WindowRequest(0.0, 1.0, 1), frozenset(KNOWN)))
    scanner.feed("(at:")
    allowed = table.mask_for(scanner.target, scanner.buf)
    logs = fields.log_probs(scanner, allowed)
    assert logs is not None
    digit = {table.strings[t]: v for t, v in logs.items()}
    assert digit["1"] == pytest.approx(math.log(111 / 1000))  # 1, 10-19, 100-199 of 0..999
    scanner.feed("5 service:S_")
    allowed = table.mask_for(scanner.target, scanner.buf)
    logs = fields.log_probs(scanner, allowed)
    assert logs is not None
    named = {table.strings[t]: v for t, v in logs.items()}
    assert named["1"] == pytest.approx(math.log(1 / 4))
    assert named["2"] == pytest.approx(math.log(3 / 4))
    assert named["3"] == -math.inf and named["4"] == -math.inf  # allowed, but no count
    scanner.feed("1 num_edges:")
    assert fields.log_probs(scanner, table.mask_for(scanner.target, scanner.buf)) is None


@pytest.mark.parametrize("prior", ["data", "product"])
def test_windows_follow_the_counts_and_repeat(tiny_model, prior: str) -> None:
    req = [WindowRequest(0.0, 600.0, 6, ("S_2",)), WindowRequest(5.0, 5.5, 4)]
    kwargs = {"seed": 3, "reference": REFERENCE, "prior": prior, "service_counts": {"S_30": 5}}
    a, _ = write_windows(req, tiny_model, temperature=1.0, **kwargs)
    b, _ = write_windows(req, tiny_model, temperature=1.0, **kwargs)
    assert [w.text for w in a] == [w.text for w in b]
    for w in a:
        assert w.violations == ()
        others = [c.service for c in w.contexts if c.service not in w.request.include]
        assert set(others) <= {"S_30"}  # the only service with a count
    if prior == "data":  # arrivals spread over the window, not all at its start
        assert len({c.at for c in a[0].contexts}) > 1


def test_unknown_prior_refused(tiny_model) -> None:
    with pytest.raises(ConstraintError, match="prior") as info:
        write_windows([WindowRequest(0.0, 1.0, 1)], tiny_model, reference=REFERENCE, prior="x")
    assert info.value.field == "prior"
