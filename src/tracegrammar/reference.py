"""The reference set of real calls, for semantic checks and the semantic decoding option."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .types import CallGraph

Call = tuple[str, str, str]  # (source, destination, type)


@dataclass(frozen=True)
class Reference:
    """Every (source, destination, type) call seen in a set of graphs (e.g. the training split)."""

    calls: frozenset[Call] = field(default_factory=frozenset)

    @classmethod
    def from_graphs(cls, graphs: Iterable[CallGraph]) -> Reference:
        return cls(frozenset(c for g in graphs for c in g.calls()))

    def __contains__(self, call: object) -> bool:
        return call in self.calls

    def __len__(self) -> int:
        return len(self.calls)

    def calls_from(self, source: str) -> dict[str, tuple[str, ...]]:
        """destination -> call types seen from `source` (sorted, for stable grammars)."""
        return self._by_source.get(source, {})

    @cached_property
    def _by_source(self) -> dict[str, dict[str, tuple[str, ...]]]:
        index: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for s, d, t in self.calls:
            index[s][d].add(t)
        return {
            s: {d: tuple(sorted(ts)) for d, ts in sorted(by_d.items())} for s, by_d in index.items()
        }

    def reach(self, name: str) -> int:
        """How many levels of known calls can hang below a call to `name`: 0 when `name` calls
        nothing, unbounded (`UNBOUNDED`) when its calls can cycle back (self-calls included)."""
        return self._reach.get(name, 0)

    @cached_property
    def _reach(self) -> dict[str, int]:
        import networkx as nx

        from .rules import UNBOUNDED

        g = nx.DiGraph((s, d) for s, d, _ in self.calls)
        cond = nx.condensation(g)
        levels: dict[int, int] = {}
        for scc in reversed(list(nx.topological_sort(cond))):
            members = cond.nodes[scc]["members"]
            cyclic = len(members) > 1 or any(g.has_edge(m, m) for m in members)
            below = [levels[s] for s in cond.successors(scc)]
            if cyclic or any(b >= UNBOUNDED for b in below):
                levels[scc] = UNBOUNDED
            else:
                levels[scc] = 1 + max(below) if below else 0
        return {m: levels[cond.graph["mapping"][m]] for m in g.nodes}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(sorted(self.calls)))

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        return cls(frozenset(tuple(c) for c in json.loads(Path(path).read_text())))  # type: ignore[misc]
