"""Training samples: call graphs -> (prompt, output) texts -> token ids and labels.

Three kinds of sample, all rendered by `tracegrammar.encode` so training text and decoding grammar
can never drift apart:

- `layer` / `layer_instruct`: one sample per layer of `decompose(graph)`. Only the ROOT prompt is
  shuffled and thinned (each field dropped with `drop_prob`, the service always kept): it is the
  one a user writes, from a few graph attributes. Every other prompt is written at generation time
  by the model's own subgraph block, so it is trained in the canonical, complete form it will have.
- `tabular`: the whole graph as rows under a `<graph ...>` header, the header thinned the same way.
- `infill`: instruction samples for infilling (`tracegrammar.infilling`): per graph, one call
  drawn for each task (destination, type, start, finish, and a whole call between a parent layer
  and its child layer) is masked `[MISSING]` in the `infill` grammar's prompt; the output is the
  masked truth.

The train/validation split is by graph (a graph's layers never straddle it), decided by a keyed
hash of the graph's content: the same graph lands on the same side in every process and on every
machine, whatever else is in the data set.

Nothing here imports torch; the tokenizer is any callable with the Hugging Face interface.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..encode import (
    render_conditions,
    render_graph_prompt,
    render_layer_output,
    render_request,
    render_row,
)
from ..errors import InputError
from ..layers import decompose
from ..reference import Reference
from ..traces import graph_hash, load_traces
from ..types import CallGraph

SampleKind = Literal["layer", "layer_instruct", "tabular", "infill"]
SAMPLE_KINDS: tuple[str, ...] = ("layer", "layer_instruct", "tabular", "infill")
#: What the trainer's sample format (`train --sample-format`, a recipe's `format:`) accepts: one
#: kind, `mix` (both layer variants of every layer), or `mix_infill` (the same, plus one
#: infilling sample per graph, its task drawn anew every epoch: one adapter for generation and
#: infilling, without the infilling samples outnumbering the layers).
SAMPLE_FORMATS: tuple[str, ...] = (*SAMPLE_KINDS, "mix", "mix_infill")
MIX_KINDS: tuple[str, ...] = ("layer", "layer_instruct")
#: format -> the kinds of sample it makes of each graph
FORMAT_KINDS: dict[str, tuple[str, ...]] = {
    **{kind: (kind,) for kind in SAMPLE_KINDS},
    "mix": MIX_KINDS,
    "mix_infill": (*MIX_KINDS, "one_infill"),
}
_SERVICE_RE = re.compile(r"\bservice:([^ >]+)")
IGNORE_INDEX = -100  # label of a token the loss skips (prompt and padding)
DEFAULT_DROP_PROB = 0.9  # the brief: each attribute dropped with p=0.9, the service kept
#: Share of graphs whose instruction root sample also states requested attributes that the graph
#: has (the papers instruction-tune on a few percent of the graphs).
REQUEST_PROB = 0.2
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class Sample:
    """One training text: the model reads `prompt` and learns to write `output`."""

    prompt: str
    output: str
    kind: SampleKind
    graph_key: str  # graph_hash of the graph it came from: the split and error messages use it


@dataclass(frozen=True, slots=True)
class Split:
    """Graphs on each side of the train/validation split, in their input order."""

    train: tuple[CallGraph, ...]
    validation: tuple[CallGraph, ...]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A tokenized sample: `labels[i]` is the target at position i (IGNORE_INDEX: no loss)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    graph_key: str

    def __len__(self) -> int:
        return len(self.input_ids)


class SampleTooLong(InputError):
    """A sample does not fit in the model's context; names the graph and the length."""


# ------------------------------------------------------------------------------------------------
# split
# ------------------------------------------------------------------------------------------------


def split_score(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, graph key): sha256, so no process salt."""
    digest = hashlib.sha256(f"tracegrammar-split:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_graphs(
    graphs: Iterable[CallGraph], *, fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> Split:
    """Graphs whose score is below `fraction` go to validation (so a graph's side does not depend
    on the rest of the data, and identical graphs share a side: no leak through duplicates).

    A data set too small for the threshold to pick any graph still gets one validation graph (the
    lowest score) when it has at least two, so validation loss is always defined.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {fraction}")
    items = [(g, split_score(graph_hash(g), seed)) for g in graphs]
    val = {i for i, (_, s) in enumerate(items) if s < fraction}
    if fraction > 0 and not val and len(items) >= 2:
        val = {min(range(len(items)), key=lambda i: items[i][1])}
    train = tuple(g for i, (g, _) in enumerate(items) if i not in val)
    return Split(train=train, validation=tuple(items[i][0] for i in sorted(val)))


def recipe_split(data: str | Path) -> Split:
    """The split the shipped adapters were trained on (the recipes' val_fraction 0.1, split_seed 0)
    of the graphs under `data`. Benchmarks take prompts from its validation side: graphs the
    adapters never saw."""
    graphs = list(load_traces(data))
    if not graphs:
        raise InputError(f"{data}: no graphs to take prompts from")
    return split_graphs(graphs)


# ------------------------------------------------------------------------------------------------
# samples
# ------------------------------------------------------------------------------------------------


def thin_attributes(
    values: dict[str, str | int], rng: random.Random, drop_prob: float
) -> dict[str, str | int]:
    """Shuffle the fields and drop each with `drop_prob`; `service` always stays. This is what
    lets one model answer requests that give any subset of the attributes, in any order."""
    keys = list(values)
    rng.shuffle(keys)
    return {k: values[k] for k in keys if k == "service" or rng.random() >= drop_prob}


def sample_rng(seed: int, key: str, salt: str = "") -> random.Random:
    """An RNG fixed by (seed, graph, salt): the same draws in every process, and independent of
    the order graphs arrive in."""
    digest = hashlib.sha256(f"tracegrammar-sample:{seed}:{salt}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def layer_samples(
    graph: CallGraph,
    fmt: str = "layer",
    *,
    rng: random.Random | None = None,
    drop_prob: float = DEFAULT_DROP_PROB,
    key: str | None = None,
    reference: Reference | None = None,
    salt: str = "",
) -> list[Sample]:
    """One sample per layer, depth first. The root prompt is thinned with `rng` (none: kept whole);
    every other prompt is the full canonical conditions. With `reference` (the statistics of the
    graphs trained on), some instruction root prompts also state requested attributes the graph
    has (`graph_request`, drawn from their own generator: the other draws are unchanged)."""
    if fmt not in MIX_KINDS:
        raise InputError(f"layer format must be one of {MIX_KINDS}, got {fmt!r}")
    key = key or graph_hash(graph)
    out: list[Sample] = []
    for n, layer in enumerate(decompose(graph)):
        cond = layer.conditions.as_dict()
        if n == 0 and rng is not None:
            cond = thin_attributes(cond, rng, drop_prob)
        output = render_layer_output(layer, fmt)
        prompt = render_conditions(cond)  # type: ignore[arg-type]
        if n == 0 and fmt == "layer_instruct" and reference is not None:
            prompt += graph_request(graph, reference, sample_rng(0, key, f"{salt}:request"))
        out.append(Sample(prompt, output, fmt, key))
    return out


def graph_request(graph: CallGraph, reference: Reference, rng: random.Random) -> str:
    """For a share `REQUEST_PROB` of graphs, a `requested:` line of attributes the graph has:
    one or two of its calls, high latency when its root latency is at or above its service's
    90th percentile in `reference`, an uncommon call when it has one (empty otherwise)."""
    if rng.random() >= REQUEST_PROB:
        return ""
    p90 = reference.latency_p90(graph.service)
    high = p90 if p90 is not None and graph.latency >= p90 and rng.random() < 0.5 else None
    calls = sorted({(e.source, e.destination, e.type) for e in graph.edges})
    uncommon = reference.uncommon_calls(graph.service)
    has_uncommon = any(call in uncommon for call in calls) and rng.random() < 0.5
    include = rng.sample(calls, min(len(calls), rng.randint(0, 2)))
    return render_request(high, include, has_uncommon)


def tabular_sample(
    graph: CallGraph,
    *,
    rng: random.Random | None = None,
    drop_prob: float = DEFAULT_DROP_PROB,
    key: str | None = None,
) -> Sample:
    """The whole graph: a (thinned) `<graph ...>` header, then its rows and `</graph>`."""
    attrs: dict[str, str | int] = {
        "service": graph.service,
        "num_edges": graph.num_edges,
        "depth": graph.depth,
        "latency": graph.latency,
    }
    if rng is not None:
        attrs = thin_attributes(attrs, rng, drop_prob)
    output = "".join(map(render_row, graph.edges)) + "</graph>"
    return Sample(render_graph_prompt(attrs), output, "tabular", key or graph_hash(graph))


def infill_samples(
    graph: CallGraph, *, rng: random.Random | None = None, key: str | None = None
) -> list[Sample]:
    """One infilling sample per task the graph allows, each masking a call drawn with `rng`
    (none: a fixed draw)."""
    from ..infilling import sample_targets, sample_text

    key = key or graph_hash(graph)
    out: list[Sample] = []
    for part in sample_targets(graph, rng or sample_rng(0, key, "infill")):
        prompt, output = sample_text(graph, part)
        out.append(Sample(prompt, output, "infill", key))
    return out


def graph_samples(
    graph: CallGraph,
    fmt: str,
    *,
    seed: int = 0,
    salt: str = "",
    drop_prob: float = DEFAULT_DROP_PROB,
    reference: Reference | None = None,
) -> list[Sample]:
    """All samples of one graph in format `fmt` (see SAMPLE_FORMATS). `salt` re-draws the thinning (the
    trainer passes the epoch, so every epoch sees other attribute subsets of the same graph)."""
    if fmt not in SAMPLE_FORMATS:
        raise InputError(f"format must be one of {SAMPLE_FORMATS}, got {fmt!r}")
    key = graph_hash(graph)
    out: list[Sample] = []
    for kind in FORMAT_KINDS[fmt]:
        rng = sample_rng(seed, key, f"{salt}:{kind}")
        if kind == "tabular":
            out.append(tabular_sample(graph, rng=rng, drop_prob=drop_prob, key=key))
        elif kind == "infill":
            out.extend(infill_samples(graph, rng=rng, key=key))
        elif kind == "one_infill":
            tasks = infill_samples(graph, rng=rng, key=key)
            if tasks:
                out.append(rng.choice(tasks))
        else:
            out.extend(
                layer_samples(
                    graph, kind, rng=rng, drop_prob=drop_prob, key=key, reference=reference,
                    salt=f"{seed}:{salt}",
                )
            )  # fmt: skip
    return out


def build_samples(
    graphs: Iterable[CallGraph],
    fmt: str,
    *,
    seed: int = 0,
    salt: str = "",
    drop_prob: float = DEFAULT_DROP_PROB,
) -> list[Sample]:
    """Every sample of every graph; the instruction samples' requested attributes are judged
    against these graphs' own statistics (`Reference.from_graphs`)."""
    graphs = list(graphs)
    instruct = "layer_instruct" in FORMAT_KINDS.get(fmt, ())
    reference = Reference.from_graphs(graphs) if instruct else None
    return [
        s
        for g in graphs
        for s in graph_samples(
            g, fmt, seed=seed, salt=salt, drop_prob=drop_prob, reference=reference
        )
    ]


# ------------------------------------------------------------------------------------------------
# tokenization (the decoder uses the same convention: keep them in step)
# ------------------------------------------------------------------------------------------------


def encode_sample(
    sample: Sample, tok: Any, *, mask_prompt: bool = True, max_length: int | None = None
) -> Encoded:
    """Prompt ids + output ids + EOS, no BOS. Raises SampleTooLong past `max_length`."""
    prompt = tok(sample.prompt, add_special_tokens=False).input_ids
    output = tok(sample.output, add_special_tokens=False).input_ids
    return _join(sample, list(prompt), list(output), tok.eos_token_id, mask_prompt, max_length)


def encode_samples(
    samples: Sequence[Sample],
    tok: Any,
    *,
    mask_prompt: bool = True,
    max_length: int | None = None,
    skip_long: bool = False,
) -> tuple[list[Encoded], int]:
    """Tokenize in one batch call per side (the same ids as one call per text). Returns the
    encoded samples and how many were skipped as too long (only with `skip_long`)."""
    if not samples:
        return [], 0
    prompts = tok([s.prompt for s in samples], add_special_tokens=False).input_ids
    outputs = tok([s.output for s in samples], add_special_tokens=False).input_ids
    encoded: list[Encoded] = []
    skipped = 0
    for s, p, o in zip(samples, prompts, outputs, strict=True):
        try:
            encoded.append(_join(s, list(p), list(o), tok.eos_token_id, mask_prompt, max_length))
        except SampleTooLong:
            if not skip_long:
                raise
            skipped += 1
    return encoded, skipped


def describe_graph(sample: Sample) -> str:
    """`S_123/1a2b3c4d5e6f`: the service (always in the prompt) and the start of the graph hash."""
    found = _SERVICE_RE.search(sample.prompt)
    return f"{found.group(1)}/{sample.graph_key[:12]}" if found else sample.graph_key[:12]


def _join(
    sample: Sample,
    prompt: list[int],
    output: list[int],
    eos: int | None,
    mask_prompt: bool,
    max_length: int | None,
) -> Encoded:
    if eos is None:
        raise InputError("the tokenizer has no EOS token: the model could never learn to stop")
    ids = prompt + output + [eos]
    if max_length is not None and len(ids) > max_length:
        raise SampleTooLong(
            f"a {sample.kind} sample of graph {describe_graph(sample)} is {len(ids)} tokens, "
            f"longer than max_length {max_length} "
            "(raise max_length, or skip such samples: skip_long / --skip-long)"
        )
    labels = [IGNORE_INDEX] * len(prompt) + ids[len(prompt) :] if mask_prompt else list(ids)
    return Encoded(tuple(ids), tuple(labels), sample.graph_key)
