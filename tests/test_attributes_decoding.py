"""The engine forces requested attributes: with the tiny random model, every constrained graph
meets every attribute (and is valid), at several seeds and temperatures; unconstrained output is
judged by the same check, which it can fail."""

from __future__ import annotations

import pytest

from tracegrammar import Constraints, Reference, check
from tracegrammar.decoding.driver import generate, run_generation
from tracegrammar.errors import ConstraintError
from tracegrammar.oracle import check_attributes
from tracegrammar.resources import shipped_adapter

REF = Reference.load(shipped_adapter() / "reference.json")
SERVICE = "S_1823467"  # 73 training graphs, 22 uncommon calls
RARE = sorted(REF.uncommon_calls(SERVICE))

REQUESTS = {
    "high_latency": Constraints(SERVICE, high_latency=True),
    "high_latency+bound": Constraints(SERVICE, 6, 3, 10**5, high_latency=True),
    "include_calls": Constraints(SERVICE, include_calls=RARE[:2]),
    "include_calls+shape": Constraints(SERVICE, 5, 2, include_calls=RARE[2:3]),
    # a chain of three calls: USER -> ... -> MS_43881 -> MS_25648 (mc), uncommon in S_36816397
    "include_calls+chain": Constraints(
        "S_36816397", 7, 3, include_calls=[("MS_43881", "MS_25648", "mc")]
    ),
    "uncommon_call": Constraints(SERVICE, uncommon_call=True),
    "all": Constraints("S_32048416", high_latency=True, uncommon_call=True),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
@pytest.mark.parametrize(("temperature", "seed"), [(0.2, 0), (1.0, 2)])
def test_constrained_graphs_meet_every_attribute(tiny_model, name, temperature, seed):
    c = REQUESTS[name]
    graphs = generate(c, n=2, temperature=temperature, seed=seed, model=tiny_model, reference=REF)
    assert len(graphs) == 2
    for g in graphs:
        assert check(g, c, REF) == []
        assert check_attributes(g, c, REF) == []


def test_unconstrained_output_is_judged_by_the_same_check(tiny_model):
    c = REQUESTS["include_calls"]
    run = run_generation(c, 2, seed=0, model=tiny_model, reference=REF, constrained=False)
    assert all(not g.valid for g in run.generations)  # a random model writes no such graph


def test_same_seed_same_graphs_with_attributes(tiny_model):
    c = REQUESTS["uncommon_call"]
    a = generate(c, n=2, seed=5, model=tiny_model, reference=REF)
    b = generate(c, n=2, seed=5, model=tiny_model, reference=REF)
    assert a == b


def test_impossible_requests_fail_before_decoding(tiny_model):
    with pytest.raises(ConstraintError, match="include_calls: call MS_1,MS_2,rpc") as info:
        generate(
            Constraints(SERVICE, include_calls=[("MS_1", "MS_2", "rpc")]),
            model=tiny_model,
            reference=REF,
        )
    assert info.value.field == "include_calls"
    with pytest.raises(ConstraintError, match="tabular format"):
        generate(REQUESTS["high_latency"], model=tiny_model, reference=REF, fmt="tabular")


def test_instruction_root_prompt_states_the_request():
    from tracegrammar.attributes import plan_request
    from tracegrammar.decoding.driver import root_prompt
    from tracegrammar.layers import root_conditions

    c = Constraints(SERVICE, high_latency=True, include_calls=RARE[:1])
    plan = plan_request(c, REF)
    cond = root_conditions(SERVICE, 5, 2, 10**4)
    p90 = REF.latency_p90(SERVICE)
    src, dst, kind = RARE[0]
    assert root_prompt(c, cond, "layer_instruct", plan) == (
        f"<layer service:{SERVICE}>\n"
        f"requested: latency(ms) >= {p90}, include calls {src} -> {dst} ({kind})\n"
    )
    assert root_prompt(c, cond, "layer", plan) == f"<layer service:{SERVICE}>\n"


def test_layer_instruct_graphs_meet_attributes(tiny_model):
    c = REQUESTS["all"]
    for g in generate(c, n=2, seed=4, model=tiny_model, reference=REF, fmt="layer_instruct"):
        assert check(g, c, REF) == [] and check_attributes(g, c, REF) == []
