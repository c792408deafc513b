"""Token masks packed as llguidance writes them: token t is bit t % 32 of int32 word t // 32.

The batched engine keeps every mask in this form: a grammar bitmask from llguidance and the
numeric rules' mask are intersected word by word, a dead end or a single allowed token is found
from the words, and only the rows that sample are unpacked to bool[vocab], all at once. A packed
row is 1/8 of a bool row, so intersecting 256 rows moves 1.5 MB instead of 12 MB.

`NumericMasks` is `TokenTable.mask` packed and cached: what the numeric rules allow depends only
on (field target, value so far), and the same few pairs come back at almost every step.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import torch

from ..rules import IntSet
from .scanner import FieldScanner
from .tokens import DIGITS, TokenTable

_BIT = torch.arange(32, dtype=torch.int32)
#: `np.unpackbits(bitorder="little")` on the bytes of an int32 word gives its bits in token
#: order only where the word's low byte comes first
_LITTLE_ENDIAN = sys.byteorder == "little"


def words_for(vocab: int) -> int:
    return (vocab + 31) // 32


def pack(mask: torch.Tensor, words: int) -> torch.Tensor:
    """bool[V] -> int32[words]; bits past V are 0, tokens past 32 * words are dropped."""
    bits = torch.zeros(words * 32, dtype=torch.int64)
    keep = min(mask.shape[0], words * 32)
    bits[:keep] = mask[:keep].long()
    value = (bits.view(words, 32) << _BIT.long()).sum(dim=1)  # 0 .. 2**32 - 1
    return torch.where(value >= 2**31, value - 2**32, value).to(torch.int32)


def unpack(bits: torch.Tensor, vocab: int) -> torch.Tensor:
    """int32[n, words] -> bool[n, vocab], every row at once (on the tensor's device); tokens
    past 32 * words (a model vocabulary larger than the tokenizer's) are never allowed."""
    if bits.device.type == "cpu" and _LITTLE_ENDIAN:
        raw = np.unpackbits(bits.contiguous().numpy().view(np.uint8), axis=1, bitorder="little")
        out = torch.from_numpy(raw.view(np.bool_))
    else:  # an accelerator does this fast
        out = ((bits.unsqueeze(-1) >> _BIT.to(bits.device)) & 1).reshape(bits.shape[0], -1).bool()
    if out.shape[1] < vocab:
        missing = torch.zeros(out.shape[0], vocab - out.shape[1], dtype=torch.bool)
        out = torch.cat([out, missing.to(out.device)], dim=1)
    return out[:, :vocab]


def empty_rows(bits: torch.Tensor) -> torch.Tensor:
    """bool[n]: rows that allow no token."""
    return ~(bits != 0).any(dim=1)


def only_tokens(bits: torch.Tensor) -> list[int | None]:
    """For each row the one token it allows, or None (none or several)."""
    out: list[int | None] = [None] * bits.shape[0]
    nonzero = bits != 0
    rows = torch.nonzero(nonzero.sum(dim=1) == 1).flatten()
    if rows.numel() == 0:
        return out
    words = nonzero[rows].to(torch.uint8).argmax(dim=1)  # each row's one nonzero word
    values = bits[rows, words]
    for row, word, value in zip(rows.tolist(), words.tolist(), values.tolist(), strict=True):
        value &= 0xFFFFFFFF  # the int32 as its 32 bits
        if value & (value - 1) == 0:  # one bit set
            out[row] = word * 32 + value.bit_length() - 1
    return out


class _Lru(OrderedDict[Hashable, torch.Tensor]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def hit(self, key: Hashable) -> torch.Tensor | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: Hashable, value: torch.Tensor) -> torch.Tensor:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class NumericMasks:
    """`TokenTable.mask(scanner)`, packed into `words` int32 words and cached.

    Two levels: (target, value so far) -> the mask, a dict look-up at almost every step, and a
    canonical description of the mask (which digits, whether the number may end here; which
    name continuations) -> the one tensor for it, so the many (target, prefix) pairs that allow
    the same tokens share one tensor. Cached tensors are shared: never write into them."""

    def __init__(self, table: TokenTable, words: int, *, size: int = 16384) -> None:
        self.table = table
        self.words = words
        self.base = pack(table.allowed_base, words)
        self._nondigit = pack(table.nondigit, words)
        self._by_state = _Lru(size)
        self._by_content = _Lru(size // 4)

    def for_scanner(self, scanner: FieldScanner) -> torch.Tensor:
        """int32[words]: the packed `table.mask(scanner)`."""
        target = scanner.target
        if scanner.field is None or target is None:
            return self.base
        key = (target, scanner.buf)
        hit = self._by_state.hit(key)
        if hit is not None:
            return hit
        return self._by_state.put(key, self._content(target, scanner.buf))

    def _content(self, target: IntSet | str | frozenset[str], buf: str) -> torch.Tensor:
        key = _content_key(target, buf)
        hit = self._by_content.hit(key)
        if hit is not None:
            return hit
        # built by the per-row implementation: one source of truth for what is allowed
        return self._by_content.put(key, pack(self.table.mask_for(target, buf), self.words))


def _content_key(target: IntSet | str | frozenset[str], buf: str) -> Hashable:
    """All that `TokenTable.mask_for(target, buf)` depends on: for a number, which digits may
    come next and whether it may end here; for names, what is left to write of each name that
    `buf` is a prefix of."""
    if isinstance(target, IntSet):
        digits = "" if buf == "0" else "".join(d for d in DIGITS if target.admits_prefix(buf + d))
        return ("int", digits, bool(buf) and buf.isdigit() and int(buf) in target)
    names = (target,) if isinstance(target, str) else target
    return ("names", frozenset(n[len(buf) :] for n in names if n.startswith(buf)))
