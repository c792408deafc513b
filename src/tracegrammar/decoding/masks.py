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


#: A numeric mask that allows at most this many tokens is intersected with the grammar by
#: asking the matcher about each of them, not by computing its whole mask (a few microseconds
#: against tens for a mask in a lexer state not met before)
FEW = 16


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


def only_tokens(bits: np.ndarray, nonzero: np.ndarray | None = None) -> np.ndarray:
    """int64[n]: for each row of int32[n, words] the one token it allows, or -1 (none or
    several); `nonzero` is each row's count of nonzero words, if known."""
    if nonzero is None:
        nonzero = np.count_nonzero(bits, axis=1)
    out = np.full(bits.shape[0], -1, dtype=np.int64)
    rows = np.flatnonzero(nonzero == 1)
    if rows.size == 0:
        return out
    sub = bits[rows]
    words = np.argmax(sub != 0, axis=1)  # each row's one nonzero word
    values = sub[np.arange(rows.size), words].view(np.uint32).astype(np.int64)
    one = (values & (values - 1)) == 0  # one bit set
    # log2 of a power of two below 2**32 is exact in float64
    bit = np.log2(np.where(one, values, 1).astype(np.float64)).astype(np.int64)
    out[rows[one]] = words[one] * 32 + bit[one]
    return out


class NumericMasks:
    """`TokenTable.mask(scanner)`, packed into `words` int32 words: the rows of one table
    (`rows`), found by `index(scanner)`, so that a batch gathers its rows by index.

    Two dict levels: (target, value so far) -> row, a look-up at almost every step, and a
    canonical description of the mask (which digits, whether the number may end here; which
    name continuations) -> row, so the many (target, prefix) pairs that allow the same tokens
    share one row. Row 0 is the mask outside a constrained field. The table only grows while
    a batch is being served; `trim()`, called between batches, starts it over once it holds
    more than `size` rows (a run meets few distinct masks, so this is rare)."""

    def __init__(self, table: TokenTable, words: int, *, size: int = 4096) -> None:
        self.table = table
        self.words = words
        self.size = size
        self.base = pack(table.allowed_base, words)
        #: packed `table.nondigit` and `table.terminator_start`, OR-ed into rows being built
        self._nondigit = pack(table.nondigit, words).numpy().view(np.uint32)
        self._terminators = pack(table.terminator_start, words).numpy().view(np.uint32)
        self.rows = np.zeros((64, words), dtype=np.int32)
        #: the one token each row allows, or -1
        self.only = np.full(64, -1, dtype=np.int64)
        #: the tokens each row allows if they are at most FEW, else None
        self.few: list[tuple[int, ...] | None] = []
        self._count = 0
        self._by_state: dict[Hashable, int] = {}
        self._by_content: dict[Hashable, int] = {}
        self._add(self.base)

    def trim(self) -> None:
        """Start over if the table has grown past `size` rows (never during a batch: the rows
        a batch has looked up stay valid until it is served)."""
        if self._count > self.size:
            self._count = 0
            del self.few[:]
            self._by_state.clear()
            self._by_content.clear()
            self._add(self.base)
        elif len(self._by_state) > 4 * self.size:
            self._by_state.clear()  # the content rows stay valid

    def index(self, scanner: FieldScanner) -> int:
        """The row of `rows` that is the packed `table.mask(scanner)`."""
        target = scanner.target
        if scanner.field is None or target is None:
            return 0
        key = (target, scanner.buf)
        row = self._by_state.get(key)
        if row is None:
            row = self._by_state[key] = self._content(target, scanner.buf)
        return row

    def for_scanner(self, scanner: FieldScanner) -> torch.Tensor:
        """int32[words]: the packed `table.mask(scanner)` (a copy)."""
        return torch.from_numpy(self.rows[self.index(scanner)].copy())

    def _content(self, target: IntSet | str | frozenset[str], buf: str) -> int:
        key = _content_key(target, buf)
        row = self._by_content.get(key)
        if row is None:
            row = self._by_content[key] = self._add(self._packed(target, buf))
        return row

    def _packed(self, target: IntSet | str | frozenset[str], buf: str) -> np.ndarray:
        """uint32[words]: `table.mask_for(target, buf)` packed, built from what the field allows
        (`TokenTable.allowed_for`) without a vocabulary-wide bool mask."""
        allowed = self.table.allowed_for(target, buf)
        out = np.zeros(self.words, dtype=np.uint32)
        if allowed.nondigit:
            out |= self._nondigit
        if allowed.terminators:
            out |= self._terminators
        if allowed.ids:
            tokens = np.asarray(allowed.ids, dtype=np.int64)
            tokens = tokens[tokens < 32 * self.words]
            np.bitwise_or.at(out, tokens >> 5, np.left_shift(1, tokens & 31).astype(np.uint32))
        return out

    def _add(self, packed: torch.Tensor | np.ndarray) -> int:
        if self._count == self.rows.shape[0]:
            self.rows = np.concatenate([self.rows, np.zeros_like(self.rows)])
            self.only = np.concatenate([self.only, np.full_like(self.only, -1)])
        row = self._count
        words = packed.numpy() if isinstance(packed, torch.Tensor) else packed
        self.rows[row] = words.view(np.int32)
        self.only[row] = only_tokens(self.rows[row : row + 1])[0]
        allowed = _tokens(self.rows[row])
        self.few.append(tuple(allowed) if len(allowed) <= FEW else None)
        self._count += 1
        return row


def _tokens(row: np.ndarray) -> list[int]:
    """The tokens a packed row allows, in order."""
    if not _LITTLE_ENDIAN:
        return (
            unpack(torch.from_numpy(row[None]), row.shape[0] * 32)[0].nonzero().flatten().tolist()
        )
    return np.flatnonzero(np.unpackbits(row.view(np.uint8), bitorder="little")).tolist()


def _content_key(target: IntSet | str | frozenset[str], buf: str) -> Hashable:
    """All that `TokenTable.mask_for(target, buf)` depends on: for a number, which digits may
    come next and whether it may end here; for names, what is left to write of each name that
    `buf` is a prefix of."""
    if isinstance(target, IntSet):
        digits = "" if buf == "0" else "".join(d for d in DIGITS if target.admits_prefix(buf + d))
        return ("int", digits, bool(buf) and buf.isdigit() and int(buf) in target)
    names = (target,) if isinstance(target, str) else target
    return ("names", frozenset(n[len(buf) :] for n in names if n.startswith(buf)))
