"""The probabilistic baseline: fitted tables by hand, oracle-valid graphs with the exact requested
attributes for every cell of the papers' grid, determinism, persistence, and the real sample."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar.baseline import ProbabilisticBaseline
from tracegrammar.cli.eval import register_baseline
from tracegrammar.constraints import Constraints
from tracegrammar.io import read_jsonl
from tracegrammar.oracle import check
from tracegrammar.reference import Reference
from tracegrammar.traces import load_traces
from tracegrammar.types import USER, CallGraph, Edge

from .conftest import SAMPLES
from .strategies import call_graphs

A, B, C = "MS_1", "MS_2", "MS_3"


def tiny() -> CallGraph:
    """USER -http-> A; A -rpc-> B [1, 5]; B -mc-> C [2, 3]; A -db-> C [6, 8]."""
    return CallGraph(
        "S_1",
        (
            Edge("0", USER, A, "http", 0, 10),
            Edge("0.1", A, B, "rpc", 1, 5),
            Edge("0.1.1", B, C, "mc", 2, 3),
            Edge("0.2", A, C, "db", 6, 8),
        ),
    )


@pytest.fixture(scope="module")
def model() -> ProbabilisticBaseline:
    return ProbabilisticBaseline.fit([tiny(), CallGraph("S_2", (Edge("0", USER, B, "rpc", 0, 3),))])


def test_fitted_tables_by_hand(model: ProbabilisticBaseline) -> None:
    t = model.tables
    assert t["shape"] == {"*": {"1,1": 1, "4,3": 1}, "S_1": {"4,3": 1}, "S_2": {"1,1": 1}}
    assert t["entry"]["S_1"] == {"MS_1|http": 1} and t["entry"]["*"] == {
        "MS_1|http": 1,
        "MS_2|rpc": 1,
    }
    # depth 1: the two roots have 2 and 0 children; depth 2: 0.1 has 1, 0.2 has 0; depth 3: leaf
    assert t["children"]["1"] == {"0": 1, "2": 1}
    assert t["children"]["2"] == {"0": 1, "1": 1}
    assert t["children"]["3"] == {"0": 1}
    # 0.1 (depth 2, under http, has children) is rpc; 0.2 (depth 2, under http, leaf) is db
    assert t["type"]["2|http|1"] == {"rpc": 1} and t["type"]["2|http|0"] == {"db": 1}
    assert t["type"]["2|http"] == {"db": 1, "rpc": 1}
    assert t["dest"]["S_1|MS_1|rpc|1"] == {B: 1} and t["dest"]["MS_1|db"] == {C: 1}
    assert t["caller"]["*"] == {A: 2, B: 1}
    assert t["rt"]["MS_2|rpc"] == {"3": 1, "4": 1} and t["rt"]["mc"] == {"1": 1}


def test_fit_needs_graphs() -> None:
    with pytest.raises(ValueError, match="no call graphs"):
        ProbabilisticBaseline.fit([])


# the papers' grid: num_edges 1..30, depth 1..min(6, num_edges), depth 1 only with one edge
@st.composite
def grid_constraints(draw: st.DrawFn, service: str = "S_1") -> Constraints:
    n = draw(st.integers(1, 30))
    depth = 1 if n == 1 else draw(st.integers(2, min(6, n)))
    latency = draw(st.one_of(st.none(), st.integers(0, 2_000)))
    return Constraints(service, n, depth, latency)


def assert_meets(graphs: list[CallGraph], c: Constraints) -> None:
    for g in graphs:
        assert check(g, c) == [], check(g, c)
        if c.num_edges is not None:
            assert g.num_edges == c.num_edges
        if c.depth is not None:
            assert g.depth == c.depth
        if c.latency is not None:
            assert g.latency <= c.latency


@settings(max_examples=150, deadline=None)
@given(grid_constraints(), st.integers(0, 2**32 - 1))
def test_every_grid_cell_gives_valid_exact_graphs(
    model: ProbabilisticBaseline, c: Constraints, seed: int
) -> None:
    assert_meets(model.sample(c, 2, seed), c)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(call_graphs(max_edges=15), min_size=1, max_size=4),
    grid_constraints(service="S_7"),
    st.integers(0, 1000),
)
def test_any_training_set_gives_valid_exact_graphs(
    training: list[CallGraph], c: Constraints, seed: int
) -> None:
    assert_meets(ProbabilisticBaseline.fit(training).sample(c, 2, seed), c)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(call_graphs(max_edges=15), min_size=1, max_size=4),
    st.sampled_from([(None, None), (5, None), (None, 3), (1, None), (None, 1), (30, None)]),
    st.integers(0, 1000),
)
def test_open_attributes_are_drawn_feasibly(
    training: list[CallGraph], shape: tuple[int | None, int | None], seed: int
) -> None:
    service = training[0].service
    c = Constraints(service, *shape)
    graphs = ProbabilisticBaseline.fit(training).sample(c, 3, seed)
    assert_meets(graphs, c)
    if shape == (None, None):  # the service's own observed shapes
        seen = {(g.num_edges, g.depth) for g in training if g.service == service}
        assert {(g.num_edges, g.depth) for g in graphs} <= seen


def test_open_shape_comes_from_the_service(model: ProbabilisticBaseline) -> None:
    graphs = model.sample(Constraints("S_1"), 10, seed=3)
    assert {(g.num_edges, g.depth) for g in graphs} == {(4, 3)}
    # the only S_1 root call is USER -http-> A
    assert {(g.edges[0].destination, g.edges[0].type) for g in graphs} == {(A, "http")}


def test_same_seed_same_graphs(model: ProbabilisticBaseline) -> None:
    c = Constraints("S_1", 12, 4, 40)
    assert model.sample(c, 5, seed=9) == model.sample(c, 5, seed=9)
    assert model.sample(c, 5, seed=9) != model.sample(c, 5, seed=10)


def test_save_load_round_trip(model: ProbabilisticBaseline, tmp_path) -> None:
    path = tmp_path / "model.json"
    model.save(path)
    loaded = ProbabilisticBaseline.load(path)
    assert loaded == model
    c = Constraints("S_9", 7, 3)
    assert loaded.sample(c, 3, seed=1) == model.sample(c, 3, seed=1)


def test_load_rejects_other_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a baseline model"):
        ProbabilisticBaseline.load(bad)
    bad.write_text(json.dumps({"format": "tracegrammar.baseline/1", "tables": {}}))
    with pytest.raises(ValueError, match="lacks table"):
        ProbabilisticBaseline.load(bad)


def test_latency_bound_is_met_by_scaling(model: ProbabilisticBaseline) -> None:
    c = Constraints("S_1", 20, 5, latency=3)
    for g in model.sample(c, 5, seed=2):
        assert check(g, c) == [] and g.latency <= 3


def test_real_sample_fits_and_samples_mostly_seen_calls(shared_data) -> None:
    graphs = list(load_traces(SAMPLES["tracellm"]))
    model = ProbabilisticBaseline.fit(graphs)
    reference = Reference.from_graphs(graphs)
    sampled: list[CallGraph] = []
    for k, g in enumerate(graphs[:150]):
        c = Constraints(g.service, g.num_edges, g.depth, g.latency)
        out = model.sample(c, 1, seed=k)
        assert_meets(out, c)
        sampled += out
    calls = [call for g in sampled for call in g.calls()]
    seen_calls = sum(call in reference for call in calls) / len(calls)
    seen_graphs = sum(all(c in reference for c in g.calls()) for g in sampled) / len(sampled)
    assert seen_calls >= 0.9 and seen_graphs >= 0.75, (seen_calls, seen_graphs)


def run_baseline(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register_baseline(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def test_baseline_command(tmp_path, capsys) -> None:
    from tracegrammar.io import write_jsonl

    data = tmp_path / "train.jsonl"
    write_jsonl([tiny()], data)
    out, saved = tmp_path / "syn.jsonl", tmp_path / "model.json"
    argv = ["--data", str(data), "--service", "S_1", "--num-edges", "9", "--depth", "4"]
    argv += ["--latency", "50", "-n", "4", "--seed", "5", "--out", str(out)]
    assert run_baseline([*argv, "--save-model", str(saved)]) == 0
    graphs = list(read_jsonl(out))
    assert len(graphs) == 4
    assert_meets(graphs, Constraints("S_1", 9, 4, 50))
    assert json.loads(out.read_text().splitlines()[0])["constraints"]["num_edges"] == 9
    assert ProbabilisticBaseline.load(saved) == ProbabilisticBaseline.fit([tiny()])
    assert "wrote 4 graphs" in capsys.readouterr().out


def test_baseline_command_rejects_impossible_requests(tmp_path) -> None:
    argv = ["--data", str(tmp_path), "--service", "S_1", "--num-edges", "3", "--depth", "1"]
    with pytest.raises(ValueError, match="depth=1"):
        run_baseline([*argv, "--out", str(tmp_path / "x.jsonl")])
