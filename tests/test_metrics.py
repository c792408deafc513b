"""Every metric on tiny graphs whose numbers are worked out by hand in the comments, plus the laws
they must obey (KL(p||p) = 0, JS symmetric and <= ln 2, EMD of identical samples 0, scale
invariance of the normalized EMD), and the `eval` command."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar.cli.eval import register_eval
from tracegrammar.constraints import Constraints
from tracegrammar.io import write_jsonl
from tracegrammar.metrics import (
    Features,
    Outcome,
    call_distribution_divergence,
    emd_report,
    evaluate,
    features,
    format_report,
    heavy_hitter_overlap,
    instruction_accuracy,
    js_divergence,
    kl_divergence,
    memorization,
    normalized_emd,
    plot,
    semantic_validity,
    smoothed,
    top_k,
    validity,
    wasserstein1,
)
from tracegrammar.reference import Reference
from tracegrammar.types import USER, CallGraph, Edge

from .strategies import call_graphs

A, B, C, D, E = "MS_1", "MS_2", "MS_3", "MS_4", "MS_5"


def root_only(finish: int = 10, service: str = "S_1") -> CallGraph:
    return CallGraph(service, (Edge("0", USER, A, "http", 0, finish),))


def two_calls(child_finish: int = 5) -> CallGraph:
    return CallGraph(
        "S_1", (Edge("0", USER, A, "http", 0, 10), Edge("0.1", A, B, "rpc", 1, child_finish))
    )


def star(root: str, kids: list[str], service: str = "S_1") -> CallGraph:
    """USER -> root, then root -> each kid (rpc, 1 ms each, one after another)."""
    edges = [Edge("0", USER, root, "http", 0, len(kids))]
    edges += [Edge(f"0.{n}", root, k, "rpc", n - 1, n) for n, k in enumerate(kids, start=1)]
    return CallGraph(service, tuple(edges))


def calls_graph(calls: list[tuple[str, str]]) -> CallGraph:
    """A star whose child calls are (destination, type) pairs from A."""
    edges = [Edge("0", USER, A, "http", 0, len(calls))]
    edges += [Edge(f"0.{n}", A, d, t, n - 1, n) for n, (d, t) in enumerate(calls, start=1)]
    return CallGraph("S_1", tuple(edges))


# ------------------------------------------------------------------------------------------------
# request outcomes
# ------------------------------------------------------------------------------------------------


def outcomes() -> list[Outcome]:
    return [
        Outcome(root_only(), Constraints("S_1", 1, 1, 10)),  # valid, meets every attribute
        Outcome(two_calls(), Constraints("S_1", 2, 2, 4)),  # valid, latency 10 > 4
        Outcome(two_calls(child_finish=12), Constraints("S_1", 2, 2)),  # child ends after parent
        Outcome(None, Constraints("S_1")),  # unfinished output
    ]


def test_validity_counts_unfinished_output_as_invalid() -> None:
    assert validity(outcomes()) == 2 / 4


def test_instruction_accuracy_needs_validity_and_every_requested_attribute() -> None:
    assert instruction_accuracy(outcomes()) == 1 / 4
    # the request's service is part of it: same graph, other service requested
    assert instruction_accuracy([Outcome(root_only(), Constraints("S_2", 1, 1))]) == 0.0
    # no request: accuracy is validity
    assert instruction_accuracy([(root_only(), None), (None, None)]) == 0.5


def test_semantic_validity_is_over_valid_graphs_only() -> None:
    ref = Reference(frozenset({(USER, A, "http")}))
    # valid graphs: root_only (all seen) and two_calls (A->B rpc unseen) -> 1/2
    assert semantic_validity(outcomes(), ref) == 0.5
    assert semantic_validity([Outcome(None)], ref) == 0.0


def test_outcome_metrics_reject_an_empty_sequence() -> None:
    with pytest.raises(ValueError, match="no generation results"):
        validity([])


# ------------------------------------------------------------------------------------------------
# call distribution divergence
# ------------------------------------------------------------------------------------------------


def test_divergence_by_hand() -> None:
    real = [calls_graph([(B, "rpc")] * 3 + [(C, "rpc")])]
    syn = [calls_graph([(B, "rpc"), (C, "rpc")] + [(D, "mc")] * 5)]
    # Real calls: A->B rpc 3, A->C rpc 1, USER->A http 1 (the root counts too; ties by call).
    # With eps=0: p = (3, 1, 1)/5; synthetic on the same support: q = (1, 1, 1)/3 (its five
    # A->D mc calls fall outside the support and only lower the coverage).
    d = call_distribution_divergence(real, syn, top=100, eps=0.0)
    p = np.array([0.6, 0.2, 0.2])
    q = np.array([1 / 3] * 3)
    # KL = 0.6 ln(0.6 / (1/3)) + 2 * 0.2 ln(0.2 / (1/3)) = 0.6 ln 1.8 + 0.4 ln 0.6
    #    = 0.352672 - 0.204330 = 0.148342
    assert d.kl == pytest.approx(0.6 * math.log(1.8) + 0.4 * math.log(0.6))
    assert d.kl == pytest.approx(0.148342, abs=1e-6)
    m = (p + q) / 2
    assert d.js == pytest.approx(0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m)))
    assert (d.support, d.coverage) == (3, pytest.approx(3 / 8))  # 3 of 8 synthetic calls


def test_divergence_two_calls_by_hand() -> None:
    # Features built directly: p = (0.75, 0.25), q = (0.5, 0.5).
    real = _calls_features({("x", B, "rpc"): 3, ("x", C, "rpc"): 1})
    syn = _calls_features({("x", B, "rpc"): 1, ("x", C, "rpc"): 1})
    d = call_distribution_divergence(real, syn, eps=0.0)
    # KL = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.304099 - 0.173287 = 0.130812
    assert d.kl == pytest.approx(0.130812, abs=1e-6)
    # m = (0.625, 0.375); KL(p||m) = 0.75 ln 1.2 + 0.25 ln(2/3) = 0.035375;
    # KL(q||m) = 0.5 ln 0.8 + 0.5 ln(4/3) = 0.032269; JS = 0.033822
    assert d.js == pytest.approx(0.033822, abs=1e-6)


def test_smoothing_keeps_kl_finite_when_synthetic_misses_a_call() -> None:
    real = _calls_features({("x", B, "rpc"): 1, ("x", C, "rpc"): 1})
    syn = _calls_features({("x", B, "rpc"): 2})
    e = 1e-6
    d = call_distribution_divergence(real, syn)
    # p = (0.5, 0.5) stays; q = (1 + e, e) / (1 + 2e):
    # KL = 0.5 ln(0.5 (1 + 2e) / (1 + e)) + 0.5 ln(0.5 (1 + 2e) / e) ~ 0.5 ln(250000) = 6.2146
    want = 0.5 * math.log(0.5 * (1 + 2 * e) / (1 + e)) + 0.5 * math.log(0.5 * (1 + 2 * e) / e)
    assert d.kl == pytest.approx(want)
    assert d.js < math.log(2)


def test_top_limits_the_support_with_ties_broken_by_call() -> None:
    real = _calls_features({("x", C, "rpc"): 2, ("x", B, "rpc"): 2, ("x", D, "rpc"): 1})
    assert top_k(real.calls, 2) == [("x", B, "rpc"), ("x", C, "rpc")]
    syn = _calls_features({("x", B, "rpc"): 5, ("x", C, "rpc"): 5, ("x", D, "rpc"): 90})
    d = call_distribution_divergence(real, syn, top=2)
    assert d.support == 2 and d.kl == pytest.approx(0.0, abs=1e-12)


def _calls_features(calls: dict[tuple[str, str, str], int]) -> Features:
    empty = np.zeros(0)
    dests = Counter({c[1]: n for c, n in calls.items()})
    return Features(sum(calls.values()), Counter(calls), dests, empty, empty, empty)


probabilities = st.lists(st.integers(0, 50), min_size=1, max_size=12).filter(any)


@given(probabilities)
def test_kl_of_a_distribution_with_itself_is_zero(counts: list[int]) -> None:
    p = smoothed(np.array(counts, float))
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


@given(st.data())
def test_js_is_symmetric_and_at_most_ln2(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    vec = st.lists(st.integers(0, 50), min_size=n, max_size=n)
    p, q = smoothed(np.array(data.draw(vec), float)), smoothed(np.array(data.draw(vec), float))
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), abs=1e-12)
    assert -1e-12 <= js_divergence(p, q) <= math.log(2) + 1e-12
    assert kl_divergence(p, q) >= -1e-12


def test_js_reaches_ln2_on_disjoint_support() -> None:
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.log(2))


# ------------------------------------------------------------------------------------------------
# Wasserstein-1 and normalized EMD
# ------------------------------------------------------------------------------------------------


def test_wasserstein_by_hand() -> None:
    assert wasserstein1([0, 1], [1, 2]) == pytest.approx(1.0)  # a shift by 1
    # against a point mass at 1: mean |x - 1| = (1 + 1 + 2) / 3
    assert wasserstein1([0, 0, 3], [1]) == pytest.approx(4 / 3)
    # F = 1/2 on [0, 1), G = 0 there; F = 1/2, G = 1 on [1, 2): integral = 1/2 + 1/2
    assert wasserstein1([0, 2], [1]) == pytest.approx(1.0)


def test_normalized_emd_divides_by_the_real_range() -> None:
    assert normalized_emd([0, 0, 3], [1]) == pytest.approx(4 / 9)  # range 3
    assert normalized_emd([5, 5], [7]) == pytest.approx(2.0)  # zero range: not scaled


def test_empty_samples_are_rejected() -> None:
    with pytest.raises(ValueError):
        wasserstein1([], [1.0])
    with pytest.raises(ValueError):
        normalized_emd([], [1.0])


samples = st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30)


@given(samples)
def test_emd_of_identical_samples_is_zero(xs: list[float]) -> None:
    assert normalized_emd(xs, list(reversed(xs))) == 0.0


@given(st.data())
def test_wasserstein_of_equal_sizes_is_mean_sorted_difference(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 20))
    xs = data.draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))
    ys = data.draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))
    want = float(np.mean(np.abs(np.sort(xs) - np.sort(ys))))
    assert wasserstein1(xs, ys) == pytest.approx(want, abs=1e-9)


@given(samples, samples, st.floats(0.01, 100), st.floats(-100, 100))
def test_normalized_emd_is_scale_and_shift_invariant(
    xs: list[float], ys: list[float], a: float, b: float
) -> None:
    base = normalized_emd(xs, ys)
    moved = normalized_emd([a * x + b for x in xs], [a * y + b for y in ys])
    # a zero-range real sample is not scaled, by definition; a nearly zero one is all rounding
    if max(xs) - min(xs) > 1e-3 * max(1.0, abs(max(xs)), abs(min(xs))):
        assert moved == pytest.approx(base, rel=1e-6, abs=1e-6)


# ------------------------------------------------------------------------------------------------
# features, degrees, response times
# ------------------------------------------------------------------------------------------------


def degree_graph() -> CallGraph:
    return CallGraph(
        "S_1",
        (
            Edge("0", USER, A, "http", 0, 9),
            Edge("0.1", A, B, "rpc", 0, 3),
            Edge("0.1.1", B, A, "rpc", 1, 2),
            Edge("0.2", A, B, "mc", 3, 3),
        ),
    )


def test_degrees_per_microservice_per_graph() -> None:
    f = features([degree_graph()])
    # A receives 0 and 0.1.1 (2) and makes 0.1, 0.2 (2); B receives 0.1, 0.2 (2), makes 0.1.1 (1)
    assert sorted(zip(f.in_degree, f.out_degree, strict=True)) == [(2, 1), (2, 2)]
    # log1p of durations 9, 3, 1, 0
    assert sorted(f.response_time) == pytest.approx(sorted(np.log1p([9, 3, 1, 0])))
    assert f.destinations == {A: 2, B: 2}
    assert f.calls[(A, B, "rpc")] == 1 and f.graphs == 1


@settings(max_examples=30)
@given(call_graphs(max_edges=12))
def test_degrees_agree_with_the_service_graph(g: CallGraph) -> None:
    sg = g.service_graph()
    want = sorted((sg.in_degree(n), sg.out_degree(n)) for n in sg.nodes if n != USER)
    f = features([g])
    assert sorted(zip(f.in_degree, f.out_degree, strict=True)) == want


def test_emd_report_fields() -> None:
    # a copy scores 0 on every field
    assert emd_report([degree_graph()], [degree_graph()]) == {
        "in_degree": 0.0,
        "out_degree": 0.0,
        "response_time": 0.0,
    }


# ------------------------------------------------------------------------------------------------
# heavy hitters
# ------------------------------------------------------------------------------------------------


def test_heavy_hitters_by_hand() -> None:
    # real received: A 3 (root + 2), B 2, C 2, D 1 -> ranking A, B, C, D (B before C: by name)
    real = [star(A, [B, C, A, B, C, D, A])]
    # synthetic received: C 5 (root + 4), A 1, E 1 -> ranking C, A, E
    syn = [star(C, [C, C, C, C, A, E])]
    got = heavy_hitter_overlap(real, syn, ks=(1, 2, 3, 10))
    assert got[1] == 0.0  # {A} vs {C}
    assert got[2] == 0.5  # {A, B} vs {C, A}
    assert got[3] == pytest.approx(2 / 3)  # {A, B, C} vs {C, A, E}
    # K=10 > 4 distinct real: {A, B, C, D} vs {C, A, E} -> 2 / min(10, 4)
    assert got[10] == 0.5


def test_heavy_hitters_of_a_copy_are_one_for_every_k() -> None:
    real = [star(A, [B, C, A, B, C, D, A])]
    assert set(heavy_hitter_overlap(real, real).values()) == {1.0}


# ------------------------------------------------------------------------------------------------
# memorization
# ------------------------------------------------------------------------------------------------


def test_memorization_exact_and_without_times() -> None:
    training = [root_only(), two_calls()]
    generated = [root_only(), two_calls(child_finish=7), star(A, [C])]
    m = memorization(generated, training)
    assert m.exact == pytest.approx(1 / 3)  # only root_only is a byte-for-byte copy
    assert m.structure == pytest.approx(2 / 3)  # two_calls with other times has the same shape


def test_memorization_tells_services_apart() -> None:
    m = memorization([root_only(service="S_2")], [root_only()])
    assert (m.exact, m.structure) == (0.0, 0.0)


# ------------------------------------------------------------------------------------------------
# evaluate, report, plots, command
# ------------------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(st.lists(call_graphs(max_edges=8), min_size=1, max_size=5))
def test_evaluate_a_copy_is_perfect_and_json_clean(graphs: list[CallGraph]) -> None:
    report = evaluate(graphs, graphs, training=graphs)
    json.dumps(report, allow_nan=False)
    assert report["validity"] == 1.0 and report["semantic_validity"] == 1.0
    assert report["call_divergence"]["kl"] == pytest.approx(0.0, abs=1e-9)
    assert report["call_divergence"]["js"] == pytest.approx(0.0, abs=1e-9)
    assert set(report["emd"].values()) == {0.0}
    assert set(report["heavy_hitters"].values()) == {1.0}
    assert report["memorization"] == {"exact": 1.0, "structure": 1.0}


def test_evaluate_without_synthetic_or_training_leaves_those_metrics_none() -> None:
    report = evaluate([root_only()], [])
    assert report["validity"] is None and report["emd"] is None and report["memorization"] is None
    assert report["graphs"] == {"real": 1, "synthetic": 0, "training": None}
    assert "-" in format_report(report)
    with pytest.raises(ValueError, match="no call graphs"):
        evaluate([], [root_only()])


def test_plot_writes_every_png(tmp_path) -> None:
    real = [degree_graph(), star(A, [B, C])]
    paths = plot(real, [two_calls()], tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == [
        "cdf_in_degree.png",
        "cdf_out_degree.png",
        "cdf_response_time.png",
        "heavy_hitters.png",
        "top_calls.png",
    ]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_metrics_import_is_light() -> None:
    """No heavy module is imported (speed itself is measured outside tests)."""
    code = (
        "import sys; import tracegrammar.metrics; "
        "print([m for m in ('torch', 'scipy', 'matplotlib', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def run_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register_eval(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def test_eval_command_writes_metrics_and_plots(tmp_path, capsys) -> None:
    real, syn = tmp_path / "real.jsonl", tmp_path / "syn.jsonl"
    write_jsonl([degree_graph(), star(A, [B, C])], real)
    write_jsonl([two_calls()], syn)
    argv = ["--real", str(real), "--synthetic", str(syn), "--training", str(real)]
    assert run_eval([*argv, "--out", str(tmp_path / "out"), "--plots"]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["graphs"] == {"real": 2, "synthetic": 1, "training": 2}
    assert (tmp_path / "out" / "heavy_hitters.png").is_file()
    assert "KL(real||syn)" in capsys.readouterr().out


def test_eval_command_errors_are_one_line_value_errors(tmp_path) -> None:
    syn = tmp_path / "syn.jsonl"
    write_jsonl([two_calls()], syn)
    with pytest.raises(ValueError, match="--plots needs --out"):
        run_eval(["--real", str(syn), "--synthetic", str(syn), "--plots"])
    with pytest.raises(ValueError, match="no such file"):
        run_eval(["--real", str(tmp_path / "missing.jsonl"), "--synthetic", str(syn)])


def test_eval_reads_real_traces(shared_data, tmp_path) -> None:
    from .conftest import SAMPLES

    syn = tmp_path / "syn.jsonl"
    write_jsonl([two_calls()], syn)
    assert run_eval(["--real", str(SAMPLES["casper-v2022"]), "--synthetic", str(syn)]) == 0
