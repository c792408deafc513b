"""Layer writers: what a layer lets the model write next, and when it is finished.

The scheduler drives every layer of a wave the same way, through a `LayerWriter`:

- `begin()`: tokens forced before the first sampled one (they follow the prompt);
- `mask()`: the tokens allowed next (None: any);
- `accept(token)`: record a sampled token, return the tokens forced after it;
- `done` and `text`.

`ConstrainedWriter` follows the grammar and the numeric (and semantic) rules through an engine
session; `FreeWriter` lets the model write until it closes the layer, emits end-of-sequence or
runs out of its token budget. A `Writers` factory is chosen once per run, so the scheduler never
asks which mode it is in; it also serves the rows of a pass together (`begin_all`, `masks`,
`accept_all`): the constrained writers compute all their masks in one engine batch, the free
ones have none. `adjust` lets a factory reweigh the model's logits before a constrained row
samples (the context writers' data priors); the others leave them as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Protocol

import torch

from ..attributes import AttributePlan
from ..grammar import grammar_text
from ..reference import CallScope
from ..types import LayerConditions
from .engine import Engine, LayerSession

#: Rough token cost of a layer (prompt, per call, per subgraph block, per tabular row), for
#: context checks and the free writer's budget.
PROMPT_TOKENS, CALL_TOKENS, BLOCK_TOKENS, ROW_TOKENS = 80, 40, 70, 45
END_TAGS = ("</layer>", "</graph>")


class LayerWriter(Protocol):
    engine_s: float  # time spent in the constraint engine (0 for free writing)

    def begin(self) -> list[int]: ...

    def mask(self) -> torch.Tensor | None: ...

    def accept(self, token: int) -> list[int]: ...

    @property
    def done(self) -> bool: ...

    @property
    def text(self) -> str: ...


class Writers(Protocol):
    """Makes the writer of each layer of a run, and serves many of its writers at once."""

    def new(
        self, graph: int, cond: LayerConditions, root: bool, prefix: str | None = None
    ) -> LayerWriter:
        """The writer of the layer of graph `graph` that expands call `prefix` (None: root)."""
        ...

    def begin_all(self, writers: Sequence[LayerWriter]) -> list[list[int]]:
        """`[w.begin() for w in writers]`."""
        ...

    def masks(
        self, writers: Sequence[LayerWriter], device: torch.device | None = None
    ) -> torch.Tensor | None:
        """bool[n, vocab]: `w.mask()` of every writer, stacked (None: no row is masked), on
        `device` (default: the CPU)."""
        ...

    def accept_all(self, writers: Sequence[LayerWriter], tokens: Sequence[int]) -> list[list[int]]:
        """`[w.accept(t) for w, t in zip(writers, tokens)]`."""
        ...

    def adjust(
        self,
        writers: Sequence[LayerWriter],
        logits: torch.Tensor,
        masks: torch.Tensor,
        temperature: float,
    ) -> torch.Tensor:
        """The logits [n, vocab] the rows sample from (before masking and temperature), given
        their masks; `logits` itself when nothing changes."""
        ...


def unadjusted(
    writers: Sequence[LayerWriter], logits: torch.Tensor, masks: torch.Tensor, temperature: float
) -> torch.Tensor:
    """`Writers.adjust` of the factories that leave the model's logits as they are."""
    return logits


# ------------------------------------------------------------------------------------------------
# constrained
# ------------------------------------------------------------------------------------------------


class ConstrainedWriter:
    """A layer under the grammar and the rules: only valid continuations are allowed, and every
    token that is the only one allowed is forced (appended without sampling)."""

    def __init__(self, session: LayerSession, engine_s: float = 0.0) -> None:
        self.session = session
        self.engine_s = engine_s

    def begin(self) -> list[int]:
        return self._timed(self.session.forced)

    def mask(self) -> torch.Tensor:
        return self._timed(self.session.mask)

    def accept(self, token: int) -> list[int]:
        def step() -> list[int]:
            self.session.consume(token)
            return self.session.forced() if not self.session.done else []

        return self._timed(step)

    @property
    def done(self) -> bool:
        return self.session.done

    @property
    def text(self) -> str:
        return self.session.text

    def _timed(self, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.engine_s += time.perf_counter() - t0


class ConstrainedWriters:
    """Constrained writers for one run: layer formats with each graph's semantic rules
    (`scopes[graph]`) and planned attributes (`plans[graph]`), or the tabular format under its
    grammar alone."""

    def __init__(
        self,
        engine: Engine,
        fmt: str,
        scopes: Sequence[CallScope | None],
        plans: Sequence[AttributePlan | None] = (),
    ) -> None:
        self.engine = engine
        self.fmt = fmt
        self.scopes = scopes
        self.plans = plans

    def new(
        self, graph: int, cond: LayerConditions, root: bool, prefix: str | None = None
    ) -> LayerWriter:
        t0 = time.perf_counter()
        if self.fmt == "tabular":
            session = self.engine.free_session(tabular_grammar(cond.num_edges), cond)
        else:
            scope = self.scopes[graph] if graph < len(self.scopes) else None
            plan = self.plans[graph] if graph < len(self.plans) else None
            layer = plan.layer(prefix) if plan is not None else None
            session = self.engine.session(cond, self.fmt, scope, layer)
        return ConstrainedWriter(session, time.perf_counter() - t0)

    def begin_all(self, writers: Sequence[LayerWriter]) -> list[list[int]]:
        return _timed(writers, lambda sessions: self.engine.advance(sessions))

    def masks(
        self, writers: Sequence[LayerWriter], device: torch.device | None = None
    ) -> torch.Tensor:
        return _timed(writers, lambda sessions: self.engine.masks(sessions, device))

    def accept_all(self, writers: Sequence[LayerWriter], tokens: Sequence[int]) -> list[list[int]]:
        return _timed(writers, lambda sessions: self.engine.advance(sessions, tokens))

    adjust = staticmethod(unadjusted)  # the model's logits as they are


def _timed(writers: Sequence[LayerWriter], fn: Callable[[list[LayerSession]], Any]) -> Any:
    """`fn` of the writers' sessions, its time shared out evenly as their engine time."""
    constrained = [w for w in writers if isinstance(w, ConstrainedWriter)]
    assert len(constrained) == len(writers), "a run's writers are all of one kind"
    t0 = time.perf_counter()
    try:
        return fn([w.session for w in constrained])
    finally:
        share = (time.perf_counter() - t0) / max(len(constrained), 1)
        for w in constrained:
            w.engine_s += share


@cache
def tabular_grammar(num_edges: int) -> str:
    return grammar_text("tabular", {"p_rows": f"row ~ {num_edges}"}, start="graph_output")


# ------------------------------------------------------------------------------------------------
# free
# ------------------------------------------------------------------------------------------------


class FreeWriter:
    """The model writing freely: any token, until it closes the layer (or graph), writes
    end-of-sequence, or has written `budget` tokens."""

    engine_s = 0.0

    def __init__(self, tokenizer: Any, eos: int, budget: int) -> None:
        self.tokenizer = tokenizer
        self.eos = eos
        self.budget = budget
        self.tokens: list[int] = []

    def begin(self) -> list[int]:
        return []

    def mask(self) -> None:
        return None

    def accept(self, token: int) -> list[int]:
        self.tokens.append(token)
        return []

    @property
    def done(self) -> bool:
        if self.tokens and self.tokens[-1] == self.eos:
            return True
        if len(self.tokens) >= self.budget:
            return True
        tail = self.tokenizer.decode(self.tokens[-4:]) if self.tokens else ""
        return tail.endswith(END_TAGS)

    @property
    def text(self) -> str:
        return self.tokenizer.decode([t for t in self.tokens if t != self.eos])


class FreeWriters:
    """Free writers for one run, with a token budget from the layer's (or graph's) size."""

    def __init__(self, tokenizer: Any, eos: int, fmt: str) -> None:
        self.tokenizer = tokenizer
        self.eos = eos
        self.fmt = fmt

    def new(
        self, graph: int, cond: LayerConditions, root: bool, prefix: str | None = None
    ) -> LayerWriter:
        if self.fmt == "tabular" and root:
            budget = ROW_TOKENS * cond.num_edges + 20
        else:
            budget = 64 + 2 * (
                CALL_TOKENS * cond.num_current_edges + BLOCK_TOKENS * cond.num_subgraphs
            )
        return FreeWriter(self.tokenizer, self.eos, budget)

    def begin_all(self, writers: Sequence[LayerWriter]) -> list[list[int]]:
        return [w.begin() for w in writers]

    def masks(self, writers: Sequence[LayerWriter], device: torch.device | None = None) -> None:
        return None

    def accept_all(self, writers: Sequence[LayerWriter], tokens: Sequence[int]) -> list[list[int]]:
        return [w.accept(t) for w, t in zip(writers, tokens, strict=True)]

    adjust = staticmethod(unadjusted)  # the model's logits as they are
