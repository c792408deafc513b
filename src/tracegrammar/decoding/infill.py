"""The model side of infilling (`tracegrammar.infilling`): a `Chooser` writing only allowed values.

A missing destination or call type is scored in the format the adapter was trained on: the
layer that holds the call (`<layer ...>` prompt, the calls before it), the candidate and the rest
of its row, when everything else there is known; for a destination also the child layer the call
starts (its calls under a prompt whose start_node is the candidate), when the subtree is known.
The value with the highest summed log-likelihood is taken.

Everything else (times, the rest of a whole missing call, a layer with other unknowns) is read
from the infill prompt (grammars/infill.lark) and the answer written so far: a name or a call
type by ranking the allowed values by their log-likelihood (the value's tokens and the text that
follows it, so `MS_5` is not read as the start of `MS_53`); a number digit by digit, each step
choosing among the digits that can still end inside the allowed range (and the end of the
number, once inside). The prompt is run once per part and its key-value cache reused for every
candidate.

`free_answer` is the unconstrained model of the benchmark: the same prompt, greedy decoding with
no mask, and whatever it writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from ..encode import render_edge, render_layer_output, render_layer_prompt
from ..infilling import (
    Allowed,
    Frequencies,
    IntRange,
    Part,
    answer_key,
    digits_fit,
    log_prior,
    mask,
    render_prompt,
    set_value,
    with_sources,
)
from ..layers import decompose
from ..types import ROOT_ID, USER, CallGraph, Edge, rpc_parent, rpc_parts
from .batch import _accepts, _cache_keyword
from .models import LoadedModel, unwrap_peft

#: Most tokens an unconstrained answer may take: one field is at most about 12, a whole call 30.
MAX_FREE_TOKENS = {"call": 40, "field": 16}


class ModelChooser:
    """Chooses allowed values by the model's likelihood (see the module docstring)."""

    def __init__(
        self,
        lm: LoadedModel,
        freq: Frequencies | None = None,
        *,
        layers: bool = True,
        prior: bool = False,
    ) -> None:
        if prior and freq is None:
            raise ValueError("prior=True needs the frequencies (freq)")
        self.lm = lm
        self.freq = freq  # orders destination lists too long to offer whole
        self.layers = layers  # score names and types in the layer format where it can
        self.prior = prior  # add the frequency prior's log-probability to names and types
        self.model = lm.model
        self.model.eval()
        self.tok = lm.tokenizer
        self.device = next(self.model.parameters()).device
        self.digits: dict[int, str] = {}
        for d in "0123456789":
            ids = self._ids(d)
            if len(ids) != 1:
                raise RuntimeError(f"the tokenizer writes the digit {d} as {len(ids)} tokens")
            self.digits[ids[0]] = d
        self._part: Part | None = None
        self._prompt: str = ""
        self._cache: Any = None
        self._prompt_logits: torch.Tensor | None = None
        self._prompt_len = 0

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False).input_ids)

    def choose(
        self, graph: CallGraph, part: Part, field: str, allowed: Allowed, answer: dict[str, object]
    ) -> str | int:
        if self.layers and isinstance(allowed, tuple) and len(allowed) > 1:
            scores = self._layer_scores(graph, part, field, allowed)
            if scores is not None:
                return self._pick(graph, part, field, allowed, scores)
        if not answer or part != self._part:  # a new part: the prompt shows it still missing
            self._start(render_prompt(mask(graph, part), part), part)
        prefix = "".join(f"{answer_key(f)}:{answer[f]} " for f in part.fields if f in answer)
        prefix += f"{answer_key(field)}:"
        rest = part.fields[part.fields.index(field) + 1 :]
        follow = f" {answer_key(rest[0])}:" if rest else "\n"
        with torch.inference_mode():
            logits = self._advance(self._ids(prefix))
            if isinstance(allowed, IntRange):
                return self._number(logits, allowed, self._ids(follow)[0])
            if len(allowed) == 1:
                return allowed[0]
            return self._pick(graph, part, field, allowed, self._scores(logits, allowed, follow))

    def _pick(
        self,
        graph: CallGraph,
        part: Part,
        field: str,
        options: tuple[str, ...],
        scores: list[float],
    ) -> str:
        """The option with the highest score (the first on a tie), the frequency prior's
        log-probability added when asked."""
        if self.prior and self.freq is not None and field in ("destination", "type"):
            extra = log_prior(graph, part, field, options, self.freq)
            scores = [a + b for a, b in zip(scores, extra, strict=True)]
        return options[max(range(len(options)), key=lambda i: (scores[i], -i))]

    def _layer_scores(
        self, graph: CallGraph, part: Part, field: str, options: tuple[str, ...]
    ) -> list[float] | None:
        """Log-likelihood of each option in the layer format, summed over the layers that show
        it: the call's own layer (its row, when everything else there is known) and, for a
        destination, the child layer it starts (when the call's subtree is known). None when
        neither can be written."""
        total: list[float] | None = None
        with torch.inference_mode():
            if part.kind == field:
                text = layer_text(graph, part, field, options[0])
                if text is not None:
                    prompt, prefix, follow = text
                    self._start(prompt, None)
                    total = self._scores(self._advance(self._ids(prefix)), options, follow)
            if field == "destination":
                child = [child_layer_text(graph, part.rpc_id, o) for o in options]
                if all(c is not None for c in child):
                    scores = [self._logprob(*c) for c in child if c is not None]
                    total = (
                        scores
                        if total is None
                        else [a + b for a, b in zip(total, scores, strict=True)]
                    )
        return total

    def _logprob(self, prompt: str, output: str) -> float:
        """log p(output | prompt), the two tokenized apart as in training."""
        p, o = self._ids(prompt), self._ids(output)
        logits, _ = _step(self.model, p + o, None, last_only=False)
        logp = torch.log_softmax(logits[len(p) - 1 : -1].float(), -1)
        return float(logp[torch.arange(len(o)), torch.tensor(o)].sum())

    # -- the key-value cache ----------------------------------------------------------------

    def _start(self, prompt: str, part: Part | None) -> None:
        self._part, self._prompt = part, prompt
        ids = self._ids(prompt)
        with torch.inference_mode():
            logits, self._cache = _step(self.model, ids, None, last_only=True)
        self._prompt_logits = logits[-1]
        self._prompt_len = len(ids)

    def _advance(self, ids: list[int]) -> torch.Tensor:
        """Back to the end of the prompt, then feed `ids`: the logits after the last of them."""
        _crop_to(self._cache, self._prompt_len)
        if not ids:
            assert self._prompt_logits is not None
            return self._prompt_logits
        return _step(self.model, ids, self._cache, last_only=True)[0][-1]

    def _feed(self, token: int) -> torch.Tensor:
        return _step(self.model, [token], self._cache, last_only=True)[0][-1]

    # -- names and types: ranked --------------------------------------------------------------

    def _scores(self, logits: torch.Tensor, options: tuple[str, ...], follow: str) -> list[float]:
        """log p(option + follow) for each option, after the cached text whose last logits are
        `logits`."""
        base = self._cache.get_seq_length()
        scores = []
        for option in options:
            ids = self._ids(option + follow)
            first = torch.log_softmax(logits.float(), -1)[ids[0]]
            total = float(first)
            if len(ids) > 1:
                logits_after, _ = _step(self.model, ids[:-1], self._cache, last_only=False)
                logp = torch.log_softmax(logits_after.float(), -1)
                total += float(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
                _crop_to(self._cache, base)
            scores.append(total)
        return scores

    # -- numbers: digit by digit --------------------------------------------------------------

    def _number(self, logits: torch.Tensor, allowed: IntRange, end: int) -> int:
        text = ""
        while True:
            options = [t for t, d in self.digits.items() if digits_fit(text + d, allowed)]
            if text and int(text) in allowed:
                options.append(end)
            if not options:  # cannot happen for a non-empty range; never write a bad value
                return allowed.clamp(int(text or allowed.lo))
            token = max(options, key=lambda t: float(logits[t]))
            if token == end:
                return int(text)
            text += self.digits[token]
            if len(text) >= len(str(allowed.hi)) and int(text) in allowed:
                return int(text)  # no digit can follow
            logits = self._feed(token)


def layer_text(
    graph: CallGraph, part: Part, field: str, any_value: str
) -> tuple[str, str, str] | None:
    """(layer prompt, output up to the field, rest of the row after it) of the layer holding the
    call of `part`, as the adapter was trained to write it; None when anything else the layer
    shows is unknown. The field's own value (`any_value` stands in for it) is in neither text."""
    probe = with_sources(set_value(graph, part.rpc_id, field, any_value))
    if probe.missing:
        return None
    try:
        layers = decompose(probe)
    except (ValueError, KeyError):
        return None
    order = list(_expanded(probe))
    layer = layers[order.index(rpc_parent(part.rpc_id))]
    index = rpc_parts(part.rpc_id)[-1] if part.rpc_id != ROOT_ID else 0
    before = "".join(render_edge(e) for e in layer.edges if e.index < index)
    (e,) = [e for e in layer.edges if e.index == index]
    times = f" start:{e.start} finish:{e.finish})\n"
    if field == "destination":
        return (
            render_layer_prompt(layer.conditions),
            f"<edges>\n{before}(id:{index} dm:",
            (f" type:{e.type}{times}"),
        )
    prefix = f"<edges>\n{before}(id:{index} dm:{e.destination} type:"
    return render_layer_prompt(layer.conditions), prefix, times


def child_layer_text(graph: CallGraph, rpc_id: str, destination: str) -> tuple[str, str] | None:
    """(prompt, output) of the layer the call `rpc_id` starts, were its destination
    `destination`: the calls below it as the adapter was trained to write them, under a prompt
    whose start_node is that destination. None when the call has no children, its source is
    unknown, or anything in its subtree below it is."""
    call = graph.by_id[rpc_id]
    kids = graph.children.get(rpc_id)
    source = with_sources(graph).by_id[rpc_id].source
    if not kids or source is None:
        return None
    below = [e for e in graph.edges if e.rpc_id.startswith(rpc_id + ".")]
    if any(
        getattr(e, f) is None for e in below for f in ("destination", "type", "start", "finish")
    ):
        return None
    cut = len(rpc_id)
    top = Edge(  # stands in for the call: only its destination reaches the child layer
        ROOT_ID,
        USER,
        destination,
        call.type or "rpc",
        min(k.start for k in kids),
        max(k.finish for k in kids),
    )
    rest = [
        replace(e, rpc_id=ROOT_ID + e.rpc_id[cut:], source=e.source or destination) for e in below
    ]
    layers = decompose(CallGraph(graph.service, (top, *rest)))
    child = layers[1]
    cond = replace(child.conditions, caller=source)
    return render_layer_prompt(cond), render_layer_output(replace(child, conditions=cond))


def _expanded(graph: CallGraph) -> Iterator[str | None]:
    """The call each layer of `decompose(graph)` expands (None: the root layer), in its order."""

    def walk(parent: str | None, calls: tuple[Edge, ...]) -> Iterator[str | None]:
        yield parent
        for c in calls:
            if c.rpc_id in graph.children:
                yield from walk(c.rpc_id, graph.children[c.rpc_id])

    yield from walk(None, (graph.by_id[ROOT_ID],))


def _step(model: Any, ids: list[int], cache: Any, *, last_only: bool) -> tuple[torch.Tensor, Any]:
    """Feed `ids` (one row) after `cache` (None: from the start): the logits [positions, vocab]
    (only the last position's with `last_only`) and the cache, which grows in place."""
    cls = type(unwrap_peft(model))
    extra: dict[str, Any] = {}
    if cache is not None:
        extra[_cache_keyword(cls)] = cache
    if last_only and _accepts(cls, "logits_to_keep"):
        extra["logits_to_keep"] = 1
    device = next(model.parameters()).device
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, **extra)
    new_cache = out.cache if "cache" in out else out.past_key_values
    return out.logits[0], new_cache


def _crop_to(cache: Any, length: int) -> None:
    """Drop the cached tokens after the first `length` (a negative crop: the same meaning in
    every transformers version)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def free_answer(lm: LoadedModel, graph: CallGraph, part: Part) -> str:
    """What the model writes after the infill prompt with no constraint (greedy, one line)."""
    model, tok = lm.model, lm.tokenizer
    model.eval()
    ids = tok(render_prompt(graph, part), add_special_tokens=False).input_ids
    newline = tok("\n", add_special_tokens=False).input_ids[-1]
    out_ids: list[int] = []
    with torch.inference_mode():
        all_logits, cache = _step(model, ids, None, last_only=True)
        logits = all_logits[-1]
        for _ in range(MAX_FREE_TOKENS["call" if part.kind == "call" else "field"]):
            token = int(torch.argmax(logits))
            if token == tok.eos_token_id:
                break
            out_ids.append(token)
            if token == newline or tok.decode([token]).endswith("\n"):
                break
            all_logits, cache = _step(model, [token], cache, last_only=True)
            logits = all_logits[-1]
    text = tok.decode(out_ids)
    return text if text.endswith("\n") else text + "\n"
