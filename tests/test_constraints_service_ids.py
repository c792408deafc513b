"""Service ids with leading zeros (`S_036816397`, as the TraceLLM data writes them) mean the same
service everywhere: the loader, `Constraints`, `generate` and `baseline` share one normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracegrammar import Constraints, check, load_traces
from tracegrammar.cli import main
from tracegrammar.constraints import normalise_service
from tracegrammar.errors import ConstraintError
from tracegrammar.io import read_jsonl

CSV = (
    "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"
    "T1,200,S_036816397,0,USER,MS_007,http,8\n"
    "T1,201,S_036816397,0.1,MS_007,MS_4,rpc,1\n"
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("S_036816397", "S_36816397"), ("S_000", "S_0"), ("S_0", "S_0"), ("S_10", "S_10")],
)
def test_constraints_normalise_like_the_loader(raw, canonical):
    assert Constraints(raw).service == canonical == normalise_service(raw)


@given(st.integers(0, 10**12), st.integers(0, 5))
def test_any_zero_padding_is_the_same_service(number, zeros):
    assert Constraints(f"S_{'0' * zeros}{number}") == Constraints(f"S_{number}")


@pytest.mark.parametrize("bad", ["S_", "S_-1", "S_1a", "s_1", "S_0x1"])
def test_other_ids_are_still_refused(bad):
    with pytest.raises(ConstraintError, match="service must look like S_<digits>"):
        Constraints(bad)


def test_loaded_graph_meets_constraints_written_as_the_data(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    (graph,) = load_traces(path)
    assert check(graph, Constraints("S_036816397", num_edges=2, depth=2)) == []


def test_baseline_command_accepts_padded_ids(tmp_path, capsys):
    data = tmp_path / "t.csv"
    data.write_text(CSV)
    out = tmp_path / "b.jsonl"
    args = ["baseline", "--data", str(data), "--service", "S_036816397", "--num-edges", "2"]
    assert main([*args, "--depth", "2", "-n", "2", "--out", str(out)]) == 0
    graphs = list(read_jsonl(out))
    assert len(graphs) == 2 and all(g.service == "S_36816397" and not check(g) for g in graphs)


def test_generate_command_accepts_padded_ids(tiny_model_dir, tmp_path):
    out = tmp_path / "g.jsonl"
    args = ["generate", "--model", str(tiny_model_dir), "--adapter", "none", "--seed", "1"]
    args += ["--service", "S_036816397", "--num-edges", "2", "--depth", "2", "--out", str(out)]
    assert main(args) == 0
    (graph,) = read_jsonl(out)
    assert graph.service == "S_36816397" and check(graph) == []
