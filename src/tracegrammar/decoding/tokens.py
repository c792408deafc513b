"""Per-tokenizer tables, built once per process and shared by every request.

Every digit of the default tokenizer is its own token, so a number is written digit by digit and
can be kept inside an integer set exactly. Tokens that would mix digits with other characters
(none exist in the default vocabulary) are never allowed, and neither are tokens that continue
past a `:` (the grammar's key/value separator) so the scanner always sees a value start cleanly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ModelError
from ..rules import IntSet
from .scanner import TERMINATORS, FieldScanner

DIGITS = "0123456789"


@dataclass(frozen=True)
class Allowed:
    """What the numeric rules allow next in a field: the tokens `ids`, plus every non-digit
    token when a number may end here (`nondigit`), plus every token that starts with a value
    terminator when a copied name is complete (`terminators`)."""

    ids: tuple[int, ...]
    nondigit: bool = False
    terminators: bool = False


@dataclass
class TokenTable:
    """Token strings and the masks the numeric processor combines."""

    strings: list[str]
    vocab_size: int
    digit_ids: list[int]  # token id of "0".."9"
    nondigit: torch.Tensor  # bool[V]: token has no ASCII digit and is allowed at all
    terminator_start: torch.Tensor  # bool[V]: nondigit tokens whose first char ends a value
    allowed_base: torch.Tensor  # bool[V]: every token the numeric processor ever allows
    by_string: dict[str, list[int]] = field(default_factory=dict)
    #: `allowed_base` as a list: `allows` looks one token up per forced token, and indexing a
    #: tensor costs a microsecond or two where a list costs tens of nanoseconds
    base_flags: list[bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.base_flags = self.allowed_base.tolist()

    @classmethod
    def build(cls, tokenizer: Any, vocab_size: int | None = None) -> TokenTable:
        n = vocab_size or len(tokenizer)
        strings = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        strings += [""] * (n - len(strings))  # model rows beyond the tokenizer: never allowed
        digit_ids = []
        for d in DIGITS:
            ids = tokenizer.encode(d, add_special_tokens=False)
            if len(ids) != 1:
                raise ModelError(f"tokenizer writes digit {d!r} as {len(ids)} tokens; need one")
            digit_ids.append(ids[0])
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        nondigit = torch.zeros(n, dtype=torch.bool)
        term = torch.zeros(n, dtype=torch.bool)
        base = torch.zeros(n, dtype=torch.bool)
        by_string: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(strings):
            if not s or i in special:
                continue
            has_digit = any(c in DIGITS for c in s)
            colon_tail = ":" in s and not s.endswith(":")
            if has_digit and len(s) != 1:
                continue
            if colon_tail:
                continue
            base[i] = True
            by_string[s].append(i)
            if not has_digit:
                nondigit[i] = True
                term[i] = s[0] in TERMINATORS
        for d in digit_ids:
            base[d] = True
        return cls(strings, n, digit_ids, nondigit, term, base, dict(by_string))

    # -- masks ----------------------------------------------------------------------------------

    def mask(self, scanner: FieldScanner) -> torch.Tensor:
        """bool[V]: the tokens the numeric rules allow next, given what the scanner has seen."""
        if scanner.field is None:
            return self.allowed_base
        return self.mask_for(scanner.target, scanner.buf)

    def mask_for(self, target: IntSet | str | frozenset[str] | None, buf: str) -> torch.Tensor:
        """bool[V]: the tokens allowed next in a field that may be `target` and holds `buf`."""
        if target is None:
            return self.allowed_base
        allowed = self.allowed_for(target, buf)
        out = torch.zeros(self.vocab_size, dtype=torch.bool)
        out[list(allowed.ids)] = True
        if allowed.nondigit:
            out |= self.nondigit
        if allowed.terminators:
            out |= self.terminator_start
        return out

    def allowed_for(self, target: IntSet | str | frozenset[str], buf: str) -> Allowed:
        """What a field that may be `target` and holds `buf` allows next: the one statement of
        it, which `mask_for` and the packed masks (`masks.NumericMasks`) are built from."""
        if isinstance(target, IntSet):
            digits = () if buf == "0" else tuple(
                tid
                for d, tid in zip(DIGITS, self.digit_ids, strict=True)
                if target.admits_prefix(buf + d)
            )  # fmt: skip
            return Allowed(digits, nondigit=bool(buf) and buf.isdigit() and int(buf) in target)
        ids: list[int] = []
        complete = False
        for name in (target,) if isinstance(target, str) else target:  # any of the names
            if not name.startswith(buf):
                continue
            rest = name[len(buf) :]
            complete = complete or not rest
            for k in range(1, len(rest) + 1):
                ids.extend(self.by_string.get(rest[:k], ()))
        return Allowed(tuple(ids), terminators=complete)

    def allows(self, scanner: FieldScanner, tid: int) -> bool:
        """Scalar version of `mask(scanner)[tid]` (for forced tokens; tested to agree)."""
        if not self.base_flags[tid]:
            return False
        target, buf, s = scanner.target, scanner.buf, self.strings[tid]
        if scanner.field is None or target is None:
            return True
        if isinstance(target, IntSet):
            if len(s) == 1 and s in DIGITS:
                return buf != "0" and target.admits_prefix(buf + s)
            return bool(buf) and buf.isdigit() and int(buf) in target
        names = (target,) if isinstance(target, str) else target
        for name in names:
            if not name.startswith(buf):
                continue
            rest = name[len(buf) :]
            if (rest and rest.startswith(s)) or (not rest and s[0] in TERMINATORS):
                return True
        return False
