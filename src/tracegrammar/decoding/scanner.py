"""Follows a layer's output character by character and knows which field is being written.

The layer grammar writes every value as `key:value` (see grammars/layer.lark), so the scanner
needs no copy of the grammar: a key is the identifier before a `:`, a value runs to the next
space, `)`, `>` or newline. `id:` opens a call, `edge:` opens a subgraph block. The values written
so far form a `rules.Draft`, from which `tracegrammar.rules` answers what the current field may be.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..rules import (
    BLOCK_COPY_FIELDS,
    BLOCK_INT_FIELDS,
    EDGE_INT_FIELDS,
    CallRules,
    Draft,
    IntSet,
    LayerPlan,
    allowed,
    allowed_destinations,
    allowed_types,
    block_rules,
    copied_value,
    edge_rules,
)
from ..types import LayerConditions

TERMINATORS = frozenset(" )>\n,")
_IDENT = frozenset("abcdefghijklmnopqrstuvwxyz_")


class KeyValueReader:
    """The `key:value` reading shared by the scanners: a subclass holds `key`, `field` and `buf`
    and says what opening a field (`_open`) and finishing its value (`_commit`) mean."""

    key: str
    field: str | None
    buf: str

    def feed(self, text: str) -> None:
        if self.field is not None and text.isalnum():  # no terminator: all of it is value
            self.buf += text
            return
        for ch in text:
            self._step(ch)

    def _step(self, ch: str) -> None:
        if self.field is not None:
            if ch not in TERMINATORS:
                self.buf += ch
                return
            self._commit()
        if ch == ":" and self.key:
            self._open(self.key)
            self.key = ""
        elif ch in _IDENT:
            self.key += ch
        else:
            self.key = ""

    def _open(self, name: str) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError


@dataclass
class FieldScanner(KeyValueReader):
    """Scanner state for one layer output. `feed()` text as it is generated."""

    conditions: LayerConditions
    draft: Draft = field(init=False)
    section: str | None = None  # "edge" or "block": where the current key belongs
    key: str = ""  # identifier characters seen since the last non-identifier
    field: str | None = None  # the field whose value is being written
    buf: str = ""  # its characters so far
    #: what the current field may be: an IntSet, the one string it must copy, a set of strings
    #: it must be one of, or None (free)
    target: IntSet | str | frozenset[str] | None = None
    calls: CallRules | None = None  # the semantic rules (a reference.CallScope)
    plan: LayerPlan | None = None  # requested attributes planned for this layer

    def __post_init__(self) -> None:
        self.draft = Draft(self.conditions, calls=self.calls, plan=self.plan)

    def _open(self, name: str) -> None:
        if name == "id":
            self.section = "edge"
            self.draft.edges.append({})
        elif name == "edge":
            self.section = "block"
            self.draft.blocks.append({})
        self.field, self.buf = name, ""
        self.target = self._target(name)

    def _target(self, name: str) -> IntSet | str | frozenset[str] | None:
        d = self.draft
        if self.section == "edge" and name == "dm":
            return allowed_destinations(d, len(d.edges) - 1)
        if self.section == "edge" and name == "type":
            return allowed_types(d, len(d.edges) - 1)
        if self.section == "edge" and name in EDGE_INT_FIELDS:
            return allowed(edge_rules(d, len(d.edges) - 1, name))
        if self.section == "block" and name in BLOCK_INT_FIELDS:
            return allowed(block_rules(d, len(d.blocks) - 1, name))
        if self.section == "block" and name in BLOCK_COPY_FIELDS:
            expected = copied_value(d, len(d.blocks) - 1, name)
            return expected[1] if expected else None
        return None

    def _commit(self) -> None:
        name, raw = self.field, self.buf
        assert name is not None
        value: int | str = raw
        if name in EDGE_INT_FIELDS or name in BLOCK_INT_FIELDS:
            value = int(raw) if raw.isdigit() else raw
        items = self.draft.edges if self.section == "edge" else self.draft.blocks
        if items:
            items[-1][name] = value
        self.field, self.buf, self.target = None, "", None


class FreeScanner(FieldScanner):
    """A scanner that constrains nothing: for grammars without numeric rules (tabular)."""

    def _target(self, name: str) -> IntSet | str | frozenset[str] | None:
        return None
