"""Attention for the decoder's batched passes: transformers' SDPA, except that grouped key/value
heads are attended in place on a CPU instead of being repeated.

transformers' SDPA path repeats a grouped-query model's key/value heads to the number of query
heads (`repeat_kv`) whenever a pass feeds more than one token per row under an attention mask,
i.e. every forced span and every prompt of the decoder's padded batches. That copies the whole
KV cache, three times over for the default base (9 query heads, 3 key/value heads), in every
layer of every such pass: on a 2-core CPU at 24 rows and 100 cached positions, that copy is
about a tenth to a fifth of a 2-8 token pass (bench/results/pass_cost.md). PyTorch's CPU
kernel takes the grouped heads directly (`enable_gqa=True`) with the same mask, which is the
same computation without the copy. On a GPU, transformers' own choice (repeat, then a fused
masked kernel) stays.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

#: The name the implementation is registered under (`model.set_attn_implementation(NAME)`).
NAME = "tracegrammar_sdpa"


def grouped_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    groups = getattr(module, "num_key_value_groups", 1)
    if (
        query.device.type != "cpu"
        or groups == 1
        or query.shape[2] == 1  # transformers packs a single query token without copying
        or attention_mask is None  # transformers already uses grouped heads then
        or dropout != 0.0
        or kwargs.get("position_bias") is not None
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask[:, :, :, : key.shape[-2]],
        scale=scaling,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_grouped_sdpa(model: Any) -> None:
    """Switch a model that runs transformers' SDPA attention to `grouped_sdpa` (no-op for any
    other attention implementation, e.g. flash attention or eager)."""
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(NAME)
