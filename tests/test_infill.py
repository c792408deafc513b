"""Infilling: incomplete graphs in the data model and the loader, the infill grammar, and the
laws of `infill`: every filled graph passes the oracle and no known value changes."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracegrammar import CallGraph, check, infill
from tracegrammar.grammar import parser
from tracegrammar.infilling import (
    FIELDS,
    TASKS,
    Frequencies,
    FrequencyChooser,
    InfillError,
    IntRange,
    Part,
    allowed,
    changed_known,
    digits_fit,
    eligible,
    fill,
    log_prior,
    mask,
    missing_parts,
    parse_answer,
    render_answer,
    render_prompt,
    sample_text,
    truth,
)
from tracegrammar.io import read_jsonl, write_jsonl
from tracegrammar.reference import Reference
from tracegrammar.traces import LoadReport, load_traces
from tracegrammar.types import Edge

from .strategies import call_graphs

HEADER = "traceid,timestamp,service,rpc_id,um,dm,rpctype,rt\n"


class RandomChooser:
    """Any allowed value: what the laws must hold for, whoever chooses."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choose(self, graph, part, field, allowed, answer):
        if isinstance(allowed, IntRange):
            return self.rng.randint(allowed.lo, allowed.hi)
        return self.rng.choice(allowed)


def _masked(graph: CallGraph, picks: list[tuple[str, str]]) -> CallGraph:
    for rid, kind in picks:
        graph = mask(graph, Part(rid, kind))
    return graph


@st.composite
def masked_graphs(draw: st.DrawFn, max_parts: int = 3) -> tuple[CallGraph, CallGraph]:
    """(a valid graph, the same with 1..max_parts parts masked)."""
    g = draw(call_graphs(max_edges=12, max_time=300))
    picks = []
    for _ in range(draw(st.integers(1, max_parts))):
        kind = draw(st.sampled_from(TASKS))
        ids = eligible(g, kind)
        if ids:
            picks.append((draw(st.sampled_from(ids)), kind))
    if not picks:
        picks = [(draw(st.sampled_from(eligible(g, "type"))), "type")]
    return g, _masked(g, picks)


# ------------------------------------------------------------------------------------------------
# the laws
# ------------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(masked_graphs(), st.integers(0, 2**16))
def test_any_allowed_choice_gives_a_valid_graph_and_keeps_known_values(pair, seed):
    graph, masked = pair
    reference = Reference.from_graphs([graph])
    filled = fill(masked, missing_parts(masked), reference, RandomChooser(seed))
    assert check(filled) == []
    assert not filled.missing
    assert changed_known(masked, filled) == []
    assert not [
        e for e in filled.edges if e.type in reference.leaf_types and e.rpc_id in filled.children
    ]


@settings(max_examples=30)
@given(masked_graphs(max_parts=1))
def test_the_truth_is_always_allowed(pair):
    graph, masked = pair
    reference = Reference.from_graphs([graph])
    (part,) = missing_parts(masked) or [None]
    if part is None:  # only a source was unknown
        return
    current = masked
    for name in part.fields:  # in fill order, the truth written as it goes
        want = getattr(graph.by_id[part.rpc_id], name)
        assert want in allowed(current, part.rpc_id, name, reference)
        current = CallGraph(
            current.service,
            tuple(
                Edge(**{**_fields(e), name: want}) if e.rpc_id == part.rpc_id else e
                for e in current.edges
            ),
        )


def _fields(e: Edge) -> dict:
    return {
        k: getattr(e, k) for k in ("rpc_id", "source", "destination", "type", "start", "finish")
    }


@settings(max_examples=40)
@given(call_graphs(max_edges=12), st.data())
def test_infill_text_is_in_the_grammar_and_answers_round_trip(graph, data):
    kind = data.draw(st.sampled_from(TASKS))
    ids = eligible(graph, kind)
    if not ids:
        return
    part = Part(data.draw(st.sampled_from(ids)), kind)
    prompt, answer = sample_text(graph, part)
    parser("infill").parse(prompt + answer)
    assert parse_answer(part, answer) == truth(graph, part)
    assert "[MISSING]" in prompt
    assert render_answer(part, truth(graph, part)) == answer


@settings(max_examples=30)
@given(call_graphs(max_edges=12), st.data())
def test_layer_scoring_text_is_the_trained_layer_without_the_value(graph, data):
    from tracegrammar.decoding.infill import layer_text
    from tracegrammar.encode import render_layer
    from tracegrammar.layers import decompose

    kind = data.draw(st.sampled_from(["destination", "type"]))
    part = Part(data.draw(st.sampled_from(eligible(graph, kind))), kind)
    text = layer_text(mask(graph, part), part, kind, "MS_0" if kind == "destination" else "http")
    assert text is not None
    prompt, prefix, follow = text
    value = getattr(graph.by_id[part.rpc_id], kind)
    layers = [render_layer(layer) for layer in decompose(graph)]
    assert any(t.startswith(prompt + prefix + value + follow) for t in layers)


@settings(max_examples=30)
@given(call_graphs(max_edges=12), st.data())
def test_child_layer_text_is_the_trained_child_layer(graph, data):
    from tracegrammar.decoding.infill import _expanded, child_layer_text
    from tracegrammar.encode import render_layer_output, render_layer_prompt
    from tracegrammar.layers import decompose

    parents = [e.rpc_id for e in graph.edges if e.rpc_id in graph.children]
    if not parents:
        assert child_layer_text(graph, graph.edges[0].rpc_id, "MS_1") is None
        return
    rid = data.draw(st.sampled_from(parents))
    kind = data.draw(st.sampled_from(["destination", "call"])) if rid != "0" else "destination"
    masked = mask(graph, Part(rid, kind))
    layer = decompose(graph)[list(_expanded(graph)).index(rid)]
    text = child_layer_text(masked, rid, graph.by_id[rid].destination)
    assert text == (render_layer_prompt(layer.conditions), render_layer_output(layer))


def test_masking_a_destination_hides_the_childrens_source_too():
    g = CallGraph(
        "S_1",
        (
            Edge("0", "USER", "MS_1", "http", 0, 10),
            Edge("0.1", "MS_1", "MS_2", "rpc", 1, 9),
            Edge("0.1.1", "MS_2", "MS_3", "db", 2, 3),
        ),
    )
    m = mask(g, Part("0.1", "destination"))
    assert m.by_id["0.1.1"].source is None and m.by_id["0.1"].destination is None
    assert "MS_2" not in render_prompt(m, Part("0.1", "destination"))
    call = mask(g, Part("0.1", "call"))
    assert missing_parts(call) == [Part("0.1", "call")]
    assert "(id:0.1 [MISSING])" in render_prompt(call, Part("0.1", "call"))
    # a call with children never gets a leaf type; its times hold the child and fit the parent
    ref = Reference.from_graphs([g])
    assert "db" not in allowed(call, "0.1", "type", ref)
    assert allowed(call, "0.1", "start", ref) == IntRange(0, 2)


def test_frequency_baseline_picks_the_most_common_allowed_value():
    graphs = [
        CallGraph(
            "S_1", (Edge("0", "USER", "MS_1", "http", 0, 5), Edge("0.1", "MS_1", d, "rpc", 1, 2))
        )
        for d in ("MS_2", "MS_2", "MS_3")
    ]
    chooser = FrequencyChooser(Frequencies.from_graphs(graphs))
    m = mask(graphs[2], Part("0.1", "destination"))
    filled = fill(m, missing_parts(m), Reference.from_graphs(graphs), chooser)
    assert filled.by_id["0.1"].destination == "MS_2"


def test_log_prior_backs_off_from_the_service_to_the_source():
    def graph(service: str, d: str) -> CallGraph:
        return CallGraph(
            service,
            (Edge("0", "USER", "MS_1", "http", 0, 5), Edge("0.1", "MS_1", d, "rpc", 1, 2)),
        )

    # in S_1, MS_1 calls MS_3 once; across services MS_1 calls MS_2 five times
    freq = Frequencies.from_graphs([graph("S_1", "MS_3")] + [graph("S_2", "MS_2")] * 5)
    options = ("MS_2", "MS_3", "MS_4")
    part = Part("0.1", "destination")
    in_s1 = log_prior(mask(graph("S_1", "MS_3"), part), part, "destination", options, freq)
    assert in_s1[1] > in_s1[0] > in_s1[2]  # the service's own count wins, the source's next
    unseen = log_prior(mask(graph("S_9", "MS_3"), part), part, "destination", options, freq)
    assert unseen[0] > unseen[1] > unseen[2]  # a service never seen: the source's counts
    assert abs(sum(math.exp(v) for v in unseen) - 1) < 1e-9  # a distribution over the options


def test_digits_fit_follows_the_range():
    r = IntRange(12, 130)
    assert digits_fit("1", r) and digits_fit("13", r) and digits_fit("130", r)
    assert not digits_fit("131", r) and not digits_fit("0", r) and not digits_fit("01", r)
    assert digits_fit("9", r)  # 90..99
    assert digits_fit("0", IntRange(0, 5)) and not digits_fit("6", IntRange(0, 5))


# ------------------------------------------------------------------------------------------------
# bad input: one line naming the graph and the reason
# ------------------------------------------------------------------------------------------------


def _graph() -> CallGraph:
    return CallGraph(
        "S_7",
        (
            Edge("0", "USER", "MS_1", "http", 0, 10),
            Edge("0.1", "MS_1", "MS_2", "rpc", 1, 4),
            Edge("0.2", "MS_1", "MS_3", "rpc", 5, 9),
        ),
    )


def test_refusals_name_the_graph_and_the_reason():
    ref = Reference.from_graphs([_graph()])
    chooser = RandomChooser(0)
    with pytest.raises(InfillError, match=r"graph S_7 .*no missing field"):
        infill(_graph(), reference=ref, chooser=chooser)
    many = _masked(_graph(), [("0.1", "type"), ("0.2", "type"), ("0.1", "start")])
    with pytest.raises(InfillError, match=r"graph S_7 .*3 missing parts, more than the 2"):
        infill(many, reference=ref, chooser=chooser, max_parts=2)
    bad = CallGraph(  # the child's known times lie outside the root's: no start fits
        "S_7",
        (Edge("0", "USER", "MS_1", "http", 0, 3), Edge("0.1", "MS_1", "MS_2", "rpc", None, 8)),  # type: ignore[arg-type]
    )
    with pytest.raises(
        InfillError, match=r"graph S_7 .*no infilling makes it valid: E_CHILD_AFTER_PARENT"
    ):
        infill(bad, reference=ref, chooser=chooser)
    assert "\n" not in str(InfillError("x"))


# ------------------------------------------------------------------------------------------------
# the data model and the loader
# ------------------------------------------------------------------------------------------------


def test_loader_keeps_one_missing_call_and_unknown_names_only_when_asked(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text(
        HEADER
        + "T1,0,S_1,0,USER,MS_1,http,10\n"
        + "T1,2,S_1,0.1.1,UNKNOWN,MS_3,rpc,3\n"  # its parent 0.1 was never logged
        + "T1,3,S_1,0.1.1.1,MS_3,MS_4,db,1\n"
        + "T2,0,S_1,0,USER,MS_1,http,10\n"
        + "T2,1,S_1,0.1,MS_1,(?),rpc,2\n"  # a leaf whose destination is unknown
    )
    report = LoadReport()
    (complete,) = load_traces(csv, report=report)  # by default: the leaf removed, T1 dropped
    assert complete.num_edges == 1 and report.dropped["disconnected"] == 1
    kept = list(load_traces(csv, keep_incomplete=True))
    assert len(kept) == 2
    call, leaf = kept
    assert missing_parts(call) == [Part("0.1", "call")]
    assert call.by_id["0.1"].source == "MS_1" and call.by_id["0.1.1"].source is None
    assert leaf.missing == (("0.1", "destination"),)
    ref = Reference.from_graphs(
        [
            CallGraph(
                "S_1",
                (
                    Edge("0", "USER", "MS_1", "http", 0, 9),
                    Edge("0.1", "MS_1", "MS_2", "rpc", 1, 8),
                    Edge("0.1.1", "MS_2", "MS_3", "rpc", 2, 5),
                ),
            )
        ]
    )
    for g in kept:
        filled = infill(g, reference=ref, chooser=RandomChooser(1))
        assert check(filled) == [] and changed_known(g, filled) == []


def test_jsonl_nulls_are_unknown_values(tmp_path):
    g = mask(_graph(), Part("0.2", "call"))
    path = tmp_path / "g.jsonl"
    write_jsonl([g], path)
    assert json.loads(path.read_text())["edges"][2]["type"] is None
    (back,) = read_jsonl(path, keep_missing=True)
    assert back == g and back.missing == tuple(("0.2", f) for f in FIELDS)
    with pytest.raises(Exception, match="not a call graph record"):
        list(read_jsonl(path))


def test_infill_samples_for_training():
    from tracegrammar.training.datasets import SAMPLE_FORMATS, graph_samples

    assert "infill" in SAMPLE_FORMATS
    samples = graph_samples(_graph(), "infill")
    assert {s.kind for s in samples} == {"infill"}
    assert len(samples) == len(TASKS) - 1  # no call between two layers in a two-level graph
    for s in samples:
        parser("infill").parse(s.prompt + s.output)


# ------------------------------------------------------------------------------------------------
# the command line and the model
# ------------------------------------------------------------------------------------------------


def test_cli_infills_all_or_writes_nothing(tmp_path, capsys):
    from tracegrammar.cli import main

    data = tmp_path / "train.jsonl"
    write_jsonl([_graph()], data)
    src = tmp_path / "in.jsonl"
    write_jsonl(
        [mask(_graph(), Part("0.1", "destination")), mask(_graph(), Part("0.2", "call"))], src
    )
    out = tmp_path / "out.jsonl"
    argv = ["infill", str(src), "--out", str(out), "--method", "frequency", "--data"]
    csv = tmp_path / "train.csv"
    csv.write_text(
        HEADER
        + "T,0,S_7,0,USER,MS_1,http,10\nT,1,S_7,0.1,MS_1,MS_2,rpc,3\nT,5,S_7,0.2,MS_1,MS_3,rpc,4\n"
    )
    assert main([*argv, str(csv)]) == 0
    filled = list(read_jsonl(out))
    assert all(check(g) == [] for g in filled) and filled[0].by_id["0.1"].destination == "MS_2"
    assert "infilled 2 of 2" in capsys.readouterr().err
    write_jsonl([_graph()], src)  # nothing missing: refused, nothing written
    before = out.read_text()
    assert main([*argv, str(csv), "--out", str(tmp_path / "new.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graph 1" in err[0] and "no missing field" in err[0]
    assert not (tmp_path / "new.jsonl").exists() and out.read_text() == before
    assert main(["infill", str(src), "--out", str(out), "--method", "frequency"]) == 2
    assert "--data" in capsys.readouterr().err


@settings(max_examples=4)
@given(masked_graphs(max_parts=2))
def test_model_writes_only_allowed_values(tiny_model, pair):
    graph, masked = pair
    from tracegrammar.decoding.infill import ModelChooser, free_answer

    reference = Reference.from_graphs([graph])
    filled = infill(masked, tiny_model, reference=reference)
    assert check(filled) == [] and changed_known(masked, filled) == []
    chooser = ModelChooser(tiny_model)
    again = fill(masked, missing_parts(masked), reference, chooser)
    assert again == filled  # greedy: the same values
    parts = missing_parts(masked)
    if parts:
        assert free_answer(tiny_model, masked, parts[0]).endswith("\n")


def test_combined_chooser_adds_the_frequency_prior(tiny_model):
    from tracegrammar.decoding.infill import ModelChooser

    graphs = [
        CallGraph(
            "S_1", (Edge("0", "USER", "MS_1", "http", 0, 5), Edge("0.1", "MS_1", d, "rpc", 1, 2))
        )
        for d in ["MS_2"] * 50 + ["MS_3"]
    ]
    reference = Reference.from_graphs(graphs)
    part = Part("0.1", "destination")
    masked = mask(graphs[0], part)
    model = ModelChooser(tiny_model)
    combined = ModelChooser(tiny_model, Frequencies.from_graphs(graphs), prior=True)
    options = ("MS_2", "MS_3")
    picked_by_model = fill(masked, [part], reference, model).by_id["0.1"].destination
    scores = combined._layer_scores(masked, part, "destination", options)
    assert scores is not None
    prior = log_prior(masked, part, "destination", options, combined.freq)
    want = options[max(range(2), key=lambda i: (scores[i] + prior[i], -i))]
    assert fill(masked, [part], reference, combined).by_id["0.1"].destination == want
    assert picked_by_model in options
    with pytest.raises(ValueError, match="freq"):
        ModelChooser(tiny_model, prior=True)


def _one_pass_each(lm, items):
    """log p(output | prompt) from one forward pass over each item alone."""
    import torch

    out = []
    with torch.inference_mode():
        for p, o in items:
            logits = lm.model(input_ids=torch.tensor([p + o])).logits[0]
            lp = torch.log_softmax(logits[len(p) - 1 : -1].float(), -1)
            out.append(float(lp[torch.arange(len(o)), torch.tensor(o)].sum()))
    return out


@pytest.mark.parametrize("pass_tokens", [1024, 7])
def test_batched_candidate_scores_equal_one_pass_each(tiny_model, pass_tokens):
    import torch

    from tracegrammar.decoding.infill import continuation_logprobs

    def ids(text: str) -> list[int]:
        return list(tiny_model.tokenizer(text, add_special_tokens=False).input_ids)

    outputs = ["dm:MS_5 type:rpc\n", "dm:MS_53 type:rpc\n", "dm:MS_5", "dm:UNKNOWN type:db\n"]
    same = [(ids("<layer service:S_1>\n"), ids(o)) for o in outputs]
    with torch.inference_mode():
        fast, passes = continuation_logprobs(tiny_model.model, same, pass_tokens=pass_tokens)
    slow = _one_pass_each(tiny_model, same)
    # one prompt: the output tokens all share are a constant left out of every score
    assert [f - fast[0] for f in fast] == pytest.approx([s - slow[0] for s in slow], abs=1e-4)
    assert passes >= (2 if pass_tokens > 100 else 3)
    differ = [(ids(f"<layer start_node:{d}>\n"), ids("(id:0 dm:MS_2)\n")) for d in ("A", "BB")]
    differ.append((ids("x"), ids("yz")))  # shares nothing with the others
    with torch.inference_mode():
        fast, _ = continuation_logprobs(tiny_model.model, differ, pass_tokens=pass_tokens)
    assert fast == pytest.approx(_one_pass_each(tiny_model, differ), abs=1e-4)


def test_model_chooser_takes_the_best_scored_allowed_value(tiny_model):
    from tracegrammar.decoding.infill import ModelChooser, layer_text

    graph = CallGraph(
        "S_1",
        (
            Edge("0", "USER", "MS_1", "http", 0, 9),
            Edge("0.1", "MS_1", "MS_2", "rpc", 1, 2),
            Edge("0.2", "MS_1", "MS_3", "rpc", 3, 4),
        ),
    )
    part = Part("0.2", "destination")
    masked = mask(graph, part)
    options = ("MS_2", "MS_3", "MS_4")
    chooser = ModelChooser(tiny_model)
    text = layer_text(masked, part, "destination", options[0])
    assert text is not None
    prompt, prefix, follow = text
    items = [(chooser._ids(prompt), chooser._ids(prefix + o + follow)) for o in options]
    slow = _one_pass_each(tiny_model, items)
    want = options[max(range(3), key=lambda i: (slow[i], -i))]
    assert chooser.choose(masked, part, "destination", options, {}) == want
    passes = chooser.forward_passes
    again = ModelChooser(tiny_model, memo=chooser.memo)  # the benchmark's combined chooser
    assert again.choose(masked, part, "destination", options, {}) == want
    assert again.forward_passes == 0  # its scores came from the shared memo
    assert chooser.choose(masked, part, "destination", ("MS_4",), {}) == "MS_4"
    assert chooser.forward_passes == passes  # one allowed value: the model is not run


def test_a_narrow_time_range_is_scored_value_by_value(tiny_model):
    from tracegrammar.decoding.infill import MAX_EXACT_NUMBERS, ModelChooser

    graph = CallGraph(
        "S_1", (Edge("0", "USER", "MS_1", "http", 0, 20), Edge("0.1", "MS_1", "MS_2", "rpc", 3, 9))
    )
    part = Part("0.1", "start")
    masked = mask(graph, part)
    chooser = ModelChooser(tiny_model)
    span = allowed(masked, "0.1", "start", Reference.from_graphs([graph]))
    assert span == IntRange(0, 9) and span.hi - span.lo + 1 <= MAX_EXACT_NUMBERS
    prompt = chooser._ids(render_prompt(masked, part))
    items = [(prompt, chooser._ids(f"start:{v}\n")) for v in range(10)]
    slow = _one_pass_each(tiny_model, items)
    want = max(range(10), key=lambda v: (slow[v], -v))
    assert chooser.choose(masked, part, "start", span, {}) == want
    assert chooser.choose(masked, part, "start", IntRange(4, 4), {}) == 4


def test_paired_statistics():
    from tracegrammar.evaluation.paired import mcnemar, paired, wilson

    assert mcnemar(0, 5) == pytest.approx(0.0625) and mcnemar(3, 3) == 1.0
    assert mcnemar(1, 9) == pytest.approx(22 / 1024)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    r = paired([True] * 8 + [False] * 2, [True] * 3 + [False] * 7)
    assert (r["b"], r["c"], r["n"]) == (5, 0, 10) and r["p_mcnemar"] == pytest.approx(0.0625)
    assert r["difference"]["value"] == pytest.approx(0.5) and r["difference"]["low"] > 0
    with pytest.raises(ValueError, match="length"):
        paired([True], [True, False])


def test_bench_compares_every_method_with_frequency_on_the_same_cases():
    from tracegrammar.evaluation.infill import compare

    def rec(case: int, method: str, ok: bool) -> dict:
        return {
            "case": case,
            "method": method,
            "task": "type",
            "correct": {"type": ok},
            "allowed": 1 if case == 0 else 3,
            "truth_allowed": case != 3,
        }

    records = [rec(k, "frequency", k < 2) for k in range(4)]
    records += [rec(k, "constrained", k in (0, 2, 3)) for k in range(4)]
    records.append(rec(4, "constrained", True))  # no frequency record: not paired
    out = compare(records)["type"]
    assert (out["constrained"]["n"], out["constrained"]["b"], out["constrained"]["c"]) == (4, 2, 1)
    assert out["cases"] == {"n": 5, "one_allowed": 1, "truth_allowed": 4}


def test_bench_summary_on_a_small_sample(tmp_path, shared_data: Path):
    from tracegrammar.evaluation.infill import InfillOptions, run_infill

    out = tmp_path / "bench"
    data = shared_data / "alibaba-v2022-rpc-casper"
    opts = InfillOptions(data=str(data), out=str(out), n=3, methods=("frequency",))
    assert run_infill(opts, "frequency only") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == set(TASKS)
    assert all(t["frequency"]["valid"] == 1.0 for t in summary["tasks"].values())
    rec = summary["recovery"]
    assert rec["incomplete"] == 48 and rec["dropped_by_default"] == 23  # the 23 unknown_name
    infilled = rec["dropped_valid_after_infill"] + rec["leaf_only_valid_after_infill"]
    assert infilled + sum(rec["not_infillable"].values()) == 48
    assert "| destination | 3 |" in (out / "summary.md").read_text()
