"""The model side of infilling (`tracegrammar.infilling`): a `Chooser` writing only allowed values.

A missing destination or call type has a short list of allowed values (`infilling.allowed`: the
semantic rules and the constraints know it), so every one of them is scored exactly and the
highest score is taken (the first allowed value on a tie; a single allowed value is taken without
running the model). The decision rule is that argmax, deterministic: infilling has no
temperature. A value's score is the summed log-likelihood the model gives its text (the value's
tokens and the text that follows it, so `MS_5` is not read as the start of `MS_53`):

- in the format the adapter was trained on, when it can be written: the layer that holds the call
  (`<layer ...>` prompt, the calls before it, the candidate and the rest of its row; when
  everything else there is known) plus, for a destination, the child layer the call starts (its
  calls under a prompt whose start_node is the candidate; when the subtree is known);
- else after the infill prompt (grammars/infill.lark) and the answer written so far.

The candidates are scored together (`continuation_logprobs`): the tokens every candidate's text
shares are run through the model once and the rest of all of them as one padded batch after a
copy of that key-value cache, which gives the same log-likelihoods as one forward pass per
candidate in one or two passes. With `prior`, the frequency prior's log-probability
(`infilling.log_prior`) is added to each score (the `combined` chooser of the benchmark).

A number (a start or finish time) with at most `MAX_EXACT_NUMBERS` allowed values is chosen the
same way, every value's answer scored after the infill prompt. A wider range is written digit by
digit after the infill prompt, each step choosing the most likely of the digits that can still
end inside the allowed range (and the end of the number, once inside: a greedy path, not the
argmax over the range); the prompt's key-value cache is kept for the part's later fields.

`free_answer` is the unconstrained model of the benchmark: the same prompt, greedy decoding with
no mask, and whatever it writes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
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
#: Most tokens (rows x width) one batched scoring pass feeds; its logits take 4 bytes per token
#: per vocabulary entry (about 200 MB at 1024 tokens for the default base).
PASS_TOKENS = 1024
#: A time with at most this many allowed values is chosen like a name (every value scored);
#: a wider range is written digit by digit.
MAX_EXACT_NUMBERS = 64
#: Scored candidate lists kept by a chooser (`ModelChooser.memo`) before it is cleared.
MEMO_SIZE = 512

#: (prompt, output) texts of a scoring call -> their scores.
Memo = dict[tuple[tuple[str, str], ...], list[float]]


class ModelChooser:
    """Chooses allowed values by the model's likelihood (see the module docstring). `memo` holds
    the scores of the candidate lists already scored; two choosers given the same dict (the
    benchmark's `constrained` and `combined`) run the model once for both."""

    def __init__(
        self,
        lm: LoadedModel,
        freq: Frequencies | None = None,
        *,
        layers: bool = True,
        prior: bool = False,
        memo: Memo | None = None,
    ) -> None:
        if prior and freq is None:
            raise ValueError("prior=True needs the frequencies (freq)")
        self.lm = lm
        self.freq = freq  # orders destination lists too long to offer whole
        self.layers = layers  # score names and types in the layer format where it can
        self.prior = prior  # add the frequency prior's log-probability to names and types
        self.memo: Memo = {} if memo is None else memo
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
        self._prompt: str | None = None
        self._cache: Any = None
        self._prompt_logits: torch.Tensor | None = None
        self._prompt_len = 0
        self.forward_passes = 0  # model calls, for the benchmark's cost notes

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False).input_ids)

    def choose(
        self, graph: CallGraph, part: Part, field: str, allowed: Allowed, answer: dict[str, object]
    ) -> str | int:
        if isinstance(allowed, tuple):
            if len(allowed) == 1:
                return allowed[0]
            scores = self._layer_scores(graph, part, field, allowed) if self.layers else None
            if scores is None:
                scores = self._prompt_scores(graph, part, field, allowed, answer)
            return self._pick(graph, part, field, allowed, scores)
        size = allowed.hi - allowed.lo + 1
        if allowed.lo >= 0 and 1 <= size <= MAX_EXACT_NUMBERS:
            if size == 1:
                return allowed.lo
            values = tuple(str(v) for v in range(allowed.lo, allowed.hi + 1))
            scores = self._prompt_scores(graph, part, field, values, answer)
            return int(self._pick(graph, part, field, values, scores))
        prompt = render_prompt(mask(graph, part), part)  # the part still missing, as trained
        if prompt != self._prompt:
            self._start(prompt)
        prefix = self._answer_prefix(part, field, answer)
        follow = self._follow(part, field)
        with torch.inference_mode():
            logits = self._advance(self._ids(prefix))
            return self._number(logits, allowed, self._ids(follow)[0])

    @staticmethod
    def _answer_prefix(part: Part, field: str, answer: dict[str, object]) -> str:
        """The answer up to `field`'s value: the part's fields already chosen, then its key."""
        done = "".join(f"{answer_key(f)}:{answer[f]} " for f in part.fields if f in answer)
        return done + f"{answer_key(field)}:"

    @staticmethod
    def _follow(part: Part, field: str) -> str:
        """What the answer writes after `field`'s value: the next key, or the end of line."""
        rest = part.fields[part.fields.index(field) + 1 :]
        return f" {answer_key(rest[0])}:" if rest else "\n"

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

    def _prompt_scores(
        self,
        graph: CallGraph,
        part: Part,
        field: str,
        options: tuple[str, ...],
        answer: dict[str, object],
    ) -> list[float]:
        """Log-likelihood of each option's answer after the infill prompt."""
        prompt = render_prompt(mask(graph, part), part)
        prefix = self._answer_prefix(part, field, answer)
        follow = self._follow(part, field)
        return self.scores([(prompt, prefix + o + follow) for o in options])

    def _layer_scores(
        self, graph: CallGraph, part: Part, field: str, options: tuple[str, ...]
    ) -> list[float] | None:
        """Log-likelihood of each option in the layer format, summed over the layers that show
        it: the call's own layer (its row, when everything else there is known) and, for a
        destination, the child layer it starts (when the call's subtree is known). None when
        neither can be written."""
        total: list[float] | None = None
        if part.kind == field:
            text = layer_text(graph, part, field, options[0])
            if text is not None:
                prompt, prefix, follow = text
                total = self.scores([(prompt, prefix + o + follow) for o in options])
        if field == "destination":
            child = [child_layer_text(graph, part.rpc_id, o) for o in options]
            if all(c is not None for c in child):
                scores = self.scores([c for c in child if c is not None])
                total = (
                    scores if total is None else [a + b for a, b in zip(total, scores, strict=True)]
                )
        return total

    def scores(self, texts: Sequence[tuple[str, str]]) -> list[float]:
        """log p(output | prompt) of each (prompt, output), prompt and output tokenized apart as
        in training, up to one constant shared by all of them (`continuation_logprobs`);
        remembered in `memo`."""
        key = tuple(texts)
        if key not in self.memo:
            if len(self.memo) >= MEMO_SIZE:
                self.memo.clear()
            items = [(self._ids(p), self._ids(o)) for p, o in texts]
            with torch.inference_mode():
                scores, passes = continuation_logprobs(self.model, items)
            self.forward_passes += passes
            self.memo[key] = scores
        return list(self.memo[key])

    # -- the key-value cache of a number's prompt -------------------------------------------------

    def _start(self, prompt: str) -> None:
        self._prompt = prompt
        ids = self._ids(prompt)
        with torch.inference_mode():
            logits, self._cache = _step(self.model, ids, None, last_only=True)
        self.forward_passes += 1
        self._prompt_logits = logits[-1]
        self._prompt_len = len(ids)

    def _advance(self, ids: list[int]) -> torch.Tensor:
        """Back to the end of the prompt, then feed `ids`: the logits after the last of them."""
        _crop_to(self._cache, self._prompt_len)
        if not ids:
            assert self._prompt_logits is not None
            return self._prompt_logits
        self.forward_passes += 1
        return _step(self.model, ids, self._cache, last_only=True)[0][-1]

    def _feed(self, token: int) -> torch.Tensor:
        self.forward_passes += 1
        return _step(self.model, [token], self._cache, last_only=True)[0][-1]

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


def continuation_logprobs(
    model: Any, items: Sequence[tuple[list[int], list[int]]], *, pass_tokens: int = PASS_TOKENS
) -> tuple[list[float], int]:
    """log p(output | prompt) for each (prompt ids, output ids), and the number of forward
    passes it took.

    The tokens at the start that every item's prompt + output shares are fed once; the rest of
    each item is fed as one row of a right-padded batch after a copy of that key-value cache
    (padding comes after a row's real tokens, so the causal mask alone keeps it out of them and
    its logits are not read), at most `pass_tokens` rows x width per pass, rows of similar
    length together. Each output token's log-probability is the one a forward pass over that
    item alone gives (up to float rounding). When every prompt is the same, the output tokens
    all items share are left out of every score: they add the same constant to each, which no
    ranking or normalization of the scores depends on. A single item's score is exact."""
    if not items:
        return [], 0
    seqs = [p + o for p, o in items]
    starts = [max(len(p), 1) for p, _ in items]  # the first token has no prediction
    shared = _common_prefix(seqs)
    if shared == 0:  # nothing to share: one pass each
        out = [continuation_logprobs(model, [it], pass_tokens=pass_tokens) for it in items]
        return [s[0][0] for s in out], sum(s[1] for s in out)
    same_prompt = len(items) > 1 and all(p == items[0][0] for p, _ in items)
    # logits at positions first-1 .. shared-1 predict the shared tokens first .. shared-1 and
    # each row's next token
    first = shared if same_prompt else min(min(starts), shared)
    logits, cache = _step(model, seqs[0][:shared], None, keep=shared - first + 1)
    lp = _token_logprobs(logits[None], torch.tensor([[*seqs[0][first:shared], 0]]))[0]
    scores = [0.0] * len(items)
    for i, start in enumerate(starts):
        for j in range(max(start, first), shared):
            scores[i] += float(lp[j - first])
    last = torch.log_softmax(logits[-1].float(), -1)
    for i, seq in enumerate(seqs):
        if len(seq) > shared and shared >= starts[i]:
            scores[i] += float(last[seq[shared]])
    passes = 1
    # the rest: row i feeds seq[shared:-1], whose logits predict seq[shared + 1:]
    rows = sorted(
        (i for i, s in enumerate(seqs) if len(s) > shared + 1), key=lambda i: len(seqs[i])
    )
    while rows:
        width = len(seqs[rows[0]]) - shared - 1
        take = 1
        while take < len(rows):
            w = len(seqs[rows[take]]) - shared - 1
            if (take + 1) * max(w, width) > pass_tokens:
                break
            width = max(w, width)
            take += 1
        batch, rows = rows[:take], rows[take:]
        width = max(len(seqs[i]) - shared - 1 for i in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        targets = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            feed = seqs[i][shared:-1]
            ids[r, : len(feed)] = torch.tensor(feed)
            targets[r, : len(feed)] = torch.tensor(seqs[i][shared + 1 :])
        rows_cache = copy.deepcopy(cache)
        rows_cache.batch_repeat_interleave(len(batch))
        out_logits, _ = _step_batch(model, ids, rows_cache)
        passes += 1
        lp_rows = _token_logprobs(out_logits, targets)
        for r, i in enumerate(batch):
            n = len(seqs[i]) - shared - 1
            for t in range(n):
                if shared + 1 + t >= starts[i]:
                    scores[i] += float(lp_rows[r, t])
    return scores, passes


def _common_prefix(seqs: Sequence[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    head = seqs[0]
    for k in range(n):
        if any(s[k] != head[k] for s in seqs):
            return k
    return n


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[target] per position ([B, T, V], [B, T] -> [B, T]), without the
    [B, T, V] log-softmax copy."""
    logits = logits.float()
    picked = logits.gather(-1, targets.to(logits.device)[..., None])[..., 0]
    return (picked - torch.logsumexp(logits, -1)).cpu()


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


def _step(
    model: Any, ids: list[int], cache: Any, *, last_only: bool = False, keep: int = 0
) -> tuple[torch.Tensor, Any]:
    """Feed `ids` (one row) after `cache` (None: from the start): the logits [positions, vocab]
    (only the last position's with `last_only`, the last `keep` with `keep`) and the cache,
    which grows in place."""
    cls = type(unwrap_peft(model))
    extra: dict[str, Any] = {}
    if cache is not None:
        extra[_cache_keyword(cls)] = cache
    if last_only:
        keep = 1
    if keep and _accepts(cls, "logits_to_keep"):
        extra["logits_to_keep"] = keep
    device = next(model.parameters()).device
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, **extra)
    new_cache = out.cache if "cache" in out else out.past_key_values
    logits = out.logits[0]
    return (logits[-keep:] if keep else logits), new_cache


def _step_batch(model: Any, ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    """Feed the rows `ids` [B, T] after `cache` (B rows): the logits [B, T, vocab] and the
    cache."""
    cls = type(unwrap_peft(model))
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device), use_cache=True, **{_cache_keyword(cls): cache})
    return out.logits, (out.cache if "cache" in out else out.past_key_values)


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
