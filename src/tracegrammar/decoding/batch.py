"""Shared forward passes for many sequences at once, each feeding its own number of new tokens.

Each step a row feeds a chunk of new tokens (a prompt, a forced span, or one sampled token); chunks
are right-aligned and left-padded to the widest one, padding is masked out of attention, and
positions come from the mask, so a row's logits are what it would get alone. Finished rows leave
the KV cache; new rows only join a fresh batch (layers are decoded in waves).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch

from .models import unwrap_peft


@dataclass
class BatchState:
    model: Any
    pad_id: int
    device: torch.device
    cache: Any = None
    attention: torch.Tensor | None = None  # [B, L] 1 = real token, 0 = padding
    forward_passes: int = 0
    fed_tokens: int = 0
    rows_fed: list[int] = field(default_factory=list)

    def step(self, chunks: list[list[int]]) -> torch.Tensor:
        """Feed one chunk per row (non-empty for at least one row); return the next-token logits
        after each row's last real token, [B, vocab] (only that position is projected onto
        the vocabulary where the model supports it). A row with an empty chunk feeds only
        padding and its logits are meaningless."""
        width = max(len(c) for c in chunks)
        ids = torch.full((len(chunks), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunks), width), dtype=torch.long)
        for row, chunk in enumerate(chunks):
            if chunk:
                ids[row, width - len(chunk) :] = torch.tensor(chunk, dtype=torch.long)
                mask[row, width - len(chunk) :] = 1
        attention = mask if self.attention is None else torch.cat([self.attention, mask], dim=1)
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)[:, -width:]
        cls = type(unwrap_peft(self.model))  # peft passes keywords through
        extra: dict[str, Any] = {_cache_keyword(cls): self.cache}
        if _accepts(cls, "logits_to_keep"):
            extra["logits_to_keep"] = last_position(width, self.device)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=attention.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=True,
                **extra,
            )
        self.cache = out.cache if "cache" in out else out.past_key_values
        self.attention = attention
        self.forward_passes += 1
        self.fed_tokens += int(mask.sum())
        return out.logits[:, -1, :].float().cpu()

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in `rows` (in that order) from the cache."""
        if self.cache is None or self.attention is None:
            return
        index = torch.tensor(rows, dtype=torch.long)
        self.cache.batch_select_indices(index.to(self.device))
        self.attention = self.attention[index]


def last_position(width: int, device: torch.device) -> torch.Tensor:
    """`logits_to_keep` for the last of `width` positions, as an index rather than the int 1:
    indexing gives a contiguous [B, 1, hidden] copy, while the int's strided slice sends the
    vocabulary projection down a batched matmul that copies the weight once per row (on a 2-core
    CPU at 24 rows, about a fifth of a 2-8 token pass; bench/results/pass_cost.md)."""
    return torch.tensor([width - 1], device=device)


@cache
def _accepts(cls: type, keyword: str) -> bool:
    """Whether the model's forward takes `keyword`. `logits_to_keep`: the model can compute
    logits for the last position only, so a forced span of k tokens costs no vocabulary
    projection for its first k - 1."""
    return keyword in inspect.signature(cls.forward).parameters


def _cache_keyword(cls: type) -> str:
    """transformers renamed `past_key_values` to `cache` (the old name warns from 5.2x and goes
    in 5.40); older releases only know the old one."""
    return "cache" if _accepts(cls, "cache") else "past_key_values"
