"""The model side of infilling (`tracegrammar.infilling`): a `Chooser` that writes only allowed values.

The model reads the infill prompt (grammars/infill.lark) and the answer written so far. For a
name or a call type it ranks the allowed values by their log-likelihood (the value's tokens and
the text that follows it, so `MS_5` is not read as the start of `MS_53`) and takes the best; a
number it writes digit by digit, each step choosing among the digits that can still end inside
the allowed range (and the end of the number, once inside). The prompt is run once per part and
its key-value cache reused for every candidate.

`free_answer` is the unconstrained model of the benchmark: the same prompt, greedy decoding with
no mask, and whatever it writes.
"""

from __future__ import annotations

from typing import Any

import torch

from ..infilling import (
    Allowed,
    Frequencies,
    IntRange,
    Part,
    answer_key,
    digits_fit,
    render_prompt,
)
from ..types import CallGraph
from .batch import _accepts, _cache_keyword
from .models import LoadedModel, unwrap_peft

#: Most tokens an unconstrained answer may take (a whole call is about 25).
MAX_FREE_TOKENS = 48


class ModelChooser:
    """Chooses allowed values by the model's likelihood (see the module docstring)."""

    def __init__(self, lm: LoadedModel, freq: Frequencies | None = None) -> None:
        self.lm = lm
        self.freq = freq  # orders destination lists too long to offer whole
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
        if not answer or part != self._part:  # a new part: the prompt shows it still missing
            self._start(render_prompt(graph, part), part)
        prefix = "".join(f"{answer_key(f)}:{answer[f]} " for f in part.fields if f in answer)
        prefix += f"{answer_key(field)}:"
        rest = part.fields[part.fields.index(field) + 1 :]
        follow = f" {answer_key(rest[0])}:" if rest else "\n"
        with torch.inference_mode():
            logits = self._advance(self._ids(prefix))
            if isinstance(allowed, IntRange):
                return self._number(logits, allowed, self._ids(follow)[0])
            return self._best(logits, allowed, follow)

    # -- the key-value cache ----------------------------------------------------------------

    def _start(self, prompt: str, part: Part) -> None:
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

    def _best(self, logits: torch.Tensor, options: tuple[str, ...], follow: str) -> str:
        if len(options) == 1:
            return options[0]
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
        return options[max(range(len(options)), key=lambda i: (scores[i], -i))]

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
        for _ in range(MAX_FREE_TOKENS):
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
