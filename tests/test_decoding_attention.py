"""The decoder's pass-level choices compute what transformers' defaults compute: grouped key/value
heads attended in place (tracegrammar_sdpa) and the last position kept by index."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import tracegrammar.decoding.attention as attention
from tracegrammar.decoding.batch import BatchState, last_position


def _padded_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, vocab, (3, 9), generator=gen)
    mask = torch.ones((3, 9), dtype=torch.long)
    mask[0, :4] = 0  # rows of different lengths, left-padded as in the decoder
    mask[2, :2] = 0
    return ids, mask


def _forward(
    model: Any, cache: Any, ids: torch.Tensor, mask: torch.Tensor, keep: int | torch.Tensor
) -> torch.Tensor:
    attention_mask = torch.cat([torch.ones((ids.shape[0], 5), dtype=torch.long), mask], 1)
    positions = (attention_mask.cumsum(1) - 1).clamp(min=0)[:, -ids.shape[1] :]
    with torch.inference_mode():
        return model(
            input_ids=ids,
            attention_mask=attention_mask,
            position_ids=positions,
            cache=copy.deepcopy(cache),
            use_cache=True,
            logits_to_keep=keep,
        ).logits[:, -1]


def test_load_model_switches_sdpa_to_grouped_attention(tiny_model: Any) -> None:
    assert tiny_model.model.config._attn_implementation == attention.NAME
    assert tiny_model.model.config.num_key_value_heads < tiny_model.model.config.num_attention_heads


def test_grouped_attention_and_index_keep_match_transformers_defaults(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_model.model
    ids, mask = _padded_batch(model.config.vocab_size)
    with torch.inference_mode():
        cache = model(input_ids=ids[:, :5], use_cache=True).cache
    try:
        model.set_attn_implementation("sdpa")
        expected = _forward(model, cache, ids, mask, 1)
    finally:
        model.set_attn_implementation(attention.NAME)

    fallbacks: list[int] = []
    real = attention.sdpa_attention_forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        fallbacks.append(args[1].shape[2])  # query length
        return real(*args, **kwargs)

    monkeypatch.setattr(attention, "sdpa_attention_forward", counting)
    got = _forward(model, cache, ids, mask, last_position(ids.shape[1], torch.device("cpu")))
    assert fallbacks == []  # every layer took the grouped path: a masked 9-token pass
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batch_state_logits_do_not_depend_on_the_attention_path(tiny_model: Any) -> None:
    """A whole decoder-style sequence of passes (prompts, spans, single tokens) under both."""
    model = tiny_model.model
    passes = [[[11, 12, 13, 14], [15, 16, 17]], [[21, 22], [23]], [[31], [32, 33, 34, 35]]]
    runs = []
    try:
        for impl in ("sdpa", attention.NAME):
            model.set_attn_implementation(impl)
            state = BatchState(model, 0, torch.device("cpu"))
            runs.append([state.step(rows) for rows in passes])
    finally:
        model.set_attn_implementation(attention.NAME)
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
