"""Shared forward passes for many sequences at once, each feeding its own number of new tokens.

Each step a row feeds a chunk of new tokens (a prompt, a forced span, or one sampled token); chunks
are right-aligned and left-padded to the widest one, padding is masked out of attention, and
positions come from the mask, so a row's logits are what it would get alone. Finished rows leave
the KV cache; new rows only join a fresh batch (layers are decoded in waves).

Two KV caches, the same logits:

- dynamic (transformers' `DynamicCache`, the default on a CPU): every pass appends its columns,
  a finished row is dropped at once;
- static (`StaticCache`, the default on an accelerator): keys and values live in tensors
  allocated ahead for the wave's rows and `STATIC_ROOM` more positions, written in place; when a
  pass would overflow them they grow by half at least (one copy), and a finished row keeps its
  slot, fed only padding, until half the slots are finished, when the live ones are compacted
  (one copy). On a GPU with hundreds of rows, appending to a dynamic cache copies the whole
  cache at every pass.

Only the rows that sample after a pass need its logits (`want`): only theirs are projected back
to the host.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch

from .models import unwrap_peft

#: Positions a static cache holds beyond what its first pass needs, and the rounding of its size.
STATIC_ROOM = 256


@dataclass
class BatchState:
    model: Any
    pad_id: int
    device: torch.device
    cache: Any = None
    #: [slots, L] 1 = real token, 0 = padding: on the host for a dynamic cache; for a static one
    #: a buffer over all of its positions, kept where the model is
    attention: torch.Tensor | None = None
    forward_passes: int = 0
    fed_tokens: int = 0
    rows_fed: list[int] = field(default_factory=list)
    #: a preallocated KV cache (module docstring); None: on an accelerator only
    static: bool | None = None
    #: static: the cache slot of each live row (None: row i is slot i)
    slots: list[int] | None = None
    #: positions fed so far (real or padding), the same for every slot
    length: int = 0
    #: [slots] real tokens fed so far per slot (the next one's position)
    counts: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.static is None:
            self.static = self.device.type != "cpu"
        # a transformers release whose StaticCache is not the layered one this code grows and
        # compacts (an accelerator image may carry an older one) keeps the dynamic cache
        self.static = self.static and _layered_static_cache()

    def step(
        self, chunks: list[list[int]], want: list[int] | None = None, host: bool = True
    ) -> torch.Tensor:
        """Feed one chunk per row (non-empty for at least one row); return the next-token logits
        after each row's last real token, [B, vocab], or only the rows `want` lists, in that
        order (only that position is projected onto the vocabulary where the model supports
        it), in float32 on the CPU (`host`) or where the model is. A row with an empty chunk
        feeds only padding and its logits are meaningless."""
        if self.slots is not None:  # a static cache's finished slots feed padding
            assert self.attention is not None
            full: list[list[int]] = [[] for _ in range(self.attention.shape[0])]
            for row, slot in enumerate(self.slots):
                full[slot] = chunks[row]
            picked = [self.slots[r] for r in (want if want is not None else range(len(chunks)))]
            chunks, want = full, picked
        ids, mask = right_aligned(chunks, self.pad_id)
        width = ids.shape[1]
        before = (
            self.counts if self.counts is not None else torch.zeros(len(chunks), dtype=torch.long)
        )
        positions = (before[:, None] + mask.cumsum(dim=1) - 1).clamp(min=0)
        if self.static:
            seen = self._reserve(len(chunks), self.length + width)
            seen[:, self.length : self.length + width] = mask.to(seen.device)
        else:
            seen = mask if self.attention is None else torch.cat([self.attention, mask], dim=1)
            self.attention = seen
        cls = type(unwrap_peft(self.model))  # peft passes keywords through
        extra: dict[str, Any] = {_cache_keyword(cls): self.cache}
        if _accepts(cls, "logits_to_keep"):
            extra["logits_to_keep"] = last_position(width, self.device)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=seen.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=True,
                **extra,
            )
        self.cache = out.cache if "cache" in out else out.past_key_values
        fed = mask.sum(dim=1)
        self.counts = before + fed
        self.length += width
        self.forward_passes += 1
        self.fed_tokens += int(fed.sum())
        logits = out.logits[:, -1, :]
        if want is not None:
            logits = logits[torch.tensor(want, dtype=torch.long, device=logits.device)]
        return logits.float().cpu() if host else logits.float()

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in `rows` (in that order) from the cache."""
        if self.cache is None or self.attention is None or self.counts is None:
            return
        if self.static:
            slots = [self.slots[r] if self.slots is not None else r for r in rows]
            if 2 * len(slots) > self.attention.shape[0]:
                self.slots = slots  # the finished slots stay, fed padding
                return
            self.slots = None
            index = torch.tensor(slots, dtype=torch.long)
            for layer in self.cache.layers:
                if getattr(layer, "is_initialized", False):
                    layer.keys = layer.keys.index_select(0, index.to(layer.keys.device))
                    layer.values = layer.values.index_select(0, index.to(layer.values.device))
                    layer.batch_size = len(slots)
        else:
            index = torch.tensor(rows, dtype=torch.long)
            self.cache.batch_select_indices(index.to(self.device))
        self.attention = self.attention[index.to(self.attention.device)]
        self.counts = self.counts[index]

    def _reserve(self, slots: int, needed: int) -> torch.Tensor:
        """Make the static cache hold `needed` positions (allocated on the first pass, grown by
        at least half when full); its attention mask buffer, over all of its positions."""
        if self.cache is None:
            from transformers import StaticCache

            size = _round_up(needed + STATIC_ROOM)
            self.cache = StaticCache(config=unwrap_peft(self.model).config, max_cache_len=size)
            self.attention = torch.zeros((slots, size), dtype=torch.long, device=self.device)
        assert self.attention is not None
        size = self.cache.layers[0].max_cache_len
        if needed > size:
            size = _round_up(max(needed, size + size // 2))
            for layer in self.cache.layers:
                layer.max_cache_len = size
                if getattr(layer, "is_initialized", False):
                    layer.keys = _grown(layer.keys, size)
                    layer.values = _grown(layer.values, size)
            self.attention = _grown(self.attention[:, None, :, None], size)[:, 0, :, 0]
        return self.attention


def right_aligned(chunks: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) [rows, widest chunk]: each chunk at the right end of its row, `pad` and 0
    before it; built in a few array operations, not one per row."""
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
    width, total = int(lengths.max()), int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(chunks), dtype=np.int64, count=total)
    rows = np.repeat(np.arange(len(chunks)), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(total) - np.repeat(starts, lengths) + np.repeat(width - lengths, lengths)
    ids = np.full((len(chunks), width), pad, dtype=np.int64)
    mask = np.zeros((len(chunks), width), dtype=np.int64)
    ids[rows, cols] = flat
    mask[rows, cols] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@cache
def _layered_static_cache() -> bool:
    """Whether transformers' StaticCache keeps one layer object per model layer, each with its
    `max_cache_len` and lazily allocated `keys` / `values` (transformers >= 4.56)."""
    try:
        from transformers.cache_utils import StaticLayer
    except ImportError:
        return False
    layer = StaticLayer(max_cache_len=1)
    return hasattr(layer, "max_cache_len") and hasattr(layer, "is_initialized")


def _round_up(n: int) -> int:
    return -(-n // STATIC_ROOM) * STATIC_ROOM


def _grown(states: torch.Tensor, size: int) -> torch.Tensor:
    """[B, H, L, D] -> [B, H, size, D], the first L positions copied, the rest zeros."""
    out = states.new_zeros((*states.shape[:2], size, states.shape[3]))
    out[:, :, : states.shape[2]] = states
    return out


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
