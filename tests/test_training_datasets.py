"""Training samples: the split keeps graphs whole, only the root prompt is thinned, the tokens and
labels follow the decoder's convention, and samples too long for the context are named."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from tracegrammar.encode import (
    parse_conditions,
    parse_layer,
    parse_layer_text,
    parse_tabular,
    render_layer_prompt,
)
from tracegrammar.layers import decompose
from tracegrammar.traces import graph_hash, load_traces
from tracegrammar.training.datasets import (
    IGNORE_INDEX,
    SampleTooLong,
    build_samples,
    encode_sample,
    encode_samples,
    graph_samples,
    layer_samples,
    split_graphs,
    tabular_sample,
)
from tracegrammar.types import CONDITION_FIELDS

from .conftest import SAMPLES


@pytest.fixture(scope="module")
def graphs(shared_data):
    return list(load_traces(SAMPLES["casper-v2022"])) + list(load_traces(SAMPLES["tracellm"]))


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from tracegrammar.decoding.models import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir(progress=False))


def test_split_keeps_graphs_whole_and_is_deterministic(graphs):
    split = split_graphs(graphs, fraction=0.1, seed=3)
    assert split == split_graphs(graphs, fraction=0.1, seed=3)
    reordered = split_graphs(list(reversed(graphs)), fraction=0.1, seed=3)
    assert set(reordered.validation) == set(split.validation)  # a graph's side is its own
    assert len(split.train) + len(split.validation) == len(graphs)
    train_keys = {s.graph_key for s in build_samples(split.train, "mix")}
    val_keys = {s.graph_key for s in build_samples(split.validation, "mix")}
    assert train_keys and val_keys and not train_keys & val_keys  # no graph on both sides
    assert 0.05 < len(split.validation) / len(graphs) < 0.15
    assert split_graphs(graphs, fraction=0.1, seed=4) != split


def test_split_is_stable_across_processes(graphs):
    """sha256, not hash(): another interpreter with another hash seed picks the same graphs."""
    mine = sorted(graph_hash(g)[:16] for g in split_graphs(graphs, seed=7).validation)
    code = (
        "from tracegrammar.traces import load_traces, graph_hash\n"
        "from tracegrammar.training.datasets import split_graphs\n"
        f"gs = list(load_traces({str(SAMPLES['casper-v2022'])!r}))\n"
        f"gs += list(load_traces({str(SAMPLES['tracellm'])!r}))\n"
        "print(sorted(graph_hash(g)[:16] for g in split_graphs(gs, seed=7).validation))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout
    assert out.strip() == str(mine)


def test_tiny_data_still_gets_a_validation_graph(graphs):
    split = split_graphs(graphs[:3], fraction=0.01)
    assert len(split.validation) == 1 and len(split.train) == 2


def test_only_the_root_prompt_is_thinned_and_service_is_kept(graphs):
    kept: Counter[int] = Counter()
    for n, g in enumerate(graphs[:300]):
        samples = layer_samples(g, "layer", rng=random.Random(n), drop_prob=0.9)
        layers = decompose(g)
        root = parse_conditions(samples[0].prompt)
        assert root["service"] == g.service
        assert all(root[k] == v for k, v in layers[0].conditions.as_dict().items() if k in root)
        kept[len(root) - 1] += 1
        for s, layer in zip(samples[1:], layers[1:], strict=True):
            assert s.prompt == render_layer_prompt(layer.conditions)  # canonical, complete
            assert parse_layer(s.prompt + s.output) == layer
    fields = len(CONDITION_FIELDS) - 1
    mean_kept = sum(k * c for k, c in kept.items()) / sum(kept.values())
    assert 0.4 * fields * 0.1 < mean_kept < 2.0 * fields * 0.1  # ~10% of the other fields


def test_root_fields_are_shuffled_when_kept(graphs):
    orders = set()
    for n, g in enumerate(graphs[:50]):
        s = layer_samples(g, "layer_instruct", rng=random.Random(n), drop_prob=0.0)[0]
        cond = parse_layer_text(s.prompt + s.output, "layer_instruct").conditions
        assert cond == decompose(g)[0].conditions.as_dict()  # same values, all fields
        orders.add(tuple(cond))
    assert len(orders) > 10


def test_tabular_sample_round_trips_and_thins_the_header(graphs):
    for n, g in enumerate(graphs[:100]):
        s = tabular_sample(g, rng=random.Random(n), drop_prob=0.5)
        assert s.kind == "tabular" and s.output.endswith("</graph>")
        assert parse_tabular(s.prompt + s.output) == g
        assert f"service:{g.service}" in s.prompt


def test_samples_are_reproducible_and_redrawn_per_salt(graphs):
    g = next(g for g in graphs if g.num_edges > 3)
    a = graph_samples(g, "mix", seed=1, salt="epoch0")
    assert a == graph_samples(g, "mix", seed=1, salt="epoch0")
    assert {s.kind for s in a} == {"layer", "layer_instruct"}
    assert len(a) == 2 * len(decompose(g))
    roots = {graph_samples(g, "layer", seed=1, salt=f"epoch{e}")[0].prompt for e in range(30)}
    assert len(roots) > 1


def test_tokens_and_prompt_masking(graphs, tok):
    s = layer_samples(graphs[0], "layer")[0]
    prompt = tok(s.prompt, add_special_tokens=False).input_ids
    output = tok(s.output, add_special_tokens=False).input_ids
    masked = encode_sample(s, tok, mask_prompt=True)
    assert list(masked.input_ids) == prompt + output + [tok.eos_token_id]
    assert list(masked.labels) == [IGNORE_INDEX] * len(prompt) + output + [tok.eos_token_id]
    full = encode_sample(s, tok, mask_prompt=False)
    assert full.labels == full.input_ids == masked.input_ids
    batch, skipped = encode_samples(build_samples(graphs[:20], "mix"), tok)
    assert skipped == 0
    assert batch == [encode_sample(x, tok) for x in build_samples(graphs[:20], "mix")]


def test_long_sample_is_named_or_skipped(graphs, tok):
    big = max(graphs, key=lambda g: g.num_edges)
    samples = build_samples([big], "tabular")
    with pytest.raises(SampleTooLong, match=rf"{big.service}/{graph_hash(big)[:12]} is \d+ tokens"):
        encode_samples(samples, tok, max_length=64)
    enc, skipped = encode_samples(
        samples + build_samples(graphs[:1], "layer"), tok, max_length=128, skip_long=True
    )
    assert skipped == 1 and enc and all(len(e) <= 128 for e in enc)


def test_mix_infill_is_mix_plus_one_infilling_sample_per_graph(graphs):
    """`mix_infill`: the `mix` samples unchanged, plus one of the graph's infilling samples,
    drawn again each epoch."""
    from tracegrammar.traces import graph_hash
    from tracegrammar.training.datasets import infill_samples, sample_rng

    many = [g for g in graphs if len(infill_samples(g)) > 1][:5]
    assert many
    for g in many:
        both = graph_samples(g, "mix_infill", seed=1, salt="epoch0")
        assert both[:-1] == graph_samples(g, "mix", seed=1, salt="epoch0")
        last = both[-1]
        assert last.kind == "infill"
        rng = sample_rng(1, graph_hash(g), "epoch0:one_infill")
        assert last in infill_samples(g, rng=rng, key=graph_hash(g))
    drawn = {graph_samples(g, "mix_infill", seed=1, salt=f"epoch{e}")[-1] for g in many
             for e in range(6)}  # fmt: skip
    assert len(drawn) > len(many)  # other tasks in other epochs
    assert len(build_samples(many, "mix_infill")) == len(build_samples(many, "mix")) + len(many)
