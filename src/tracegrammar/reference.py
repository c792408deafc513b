"""The reference set of real calls, for semantic checks and the semantic rules of decoding.

A `Reference` holds what a set of real graphs (the training split) shows about calls:

- every (source, destination, type) call, and the same per service;
- the call types that never have children (`leaf_types`: `mc`, `db`, `mq` in the samples);
- per service, for the requested attributes (`tracegrammar.attributes`): how many graphs it has,
  the 90th percentile of their root latency, and for each call how many of its graphs contain it
  (a call's share = graphs containing it / the service's graphs; under 10% is "uncommon").
  References written before these statistics load without them (`has_attribute_stats`).

Decoding asks it through a `CallScope`: the calls one request may make. A scope restricted to a
service allows, from each caller, the calls seen from that caller in that service's graphs, and
backs off to every call seen from that caller where the service has none; an unrestricted scope
(novel calls) allows any call but still keeps leaf types leaves. `reach` says how many levels of
allowed calls can hang below a call, so the decoder never starts a subtree it cannot finish.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import InputError
from .rules import UNBOUNDED
from .types import CALL_TYPES, CallGraph

Call = tuple[str, str, str]  # (source, destination, type)
ServiceCall = tuple[str, str, str, str]  # (service, source, destination, type)
#: Destination -> call types, as the decoder sees the calls allowed from one caller.
Calls = Mapping[str, tuple[str, ...]]

FORMAT = "tracegrammar.reference/2"
#: A call is uncommon in a service when it is in under this share of the service's graphs.
UNCOMMON_SHARE = 0.1
#: Written beside a trained adapter: the training graphs' reference (the default semantic rules).
REFERENCE_FILE = "reference.json"


@dataclass(frozen=True)
class Reference:
    """Calls seen in a set of graphs (e.g. the training split); see the module docstring."""

    calls: frozenset[Call] = field(default_factory=frozenset)
    service_calls: frozenset[ServiceCall] = field(default_factory=frozenset)
    #: Call types never seen with children (empty: no type is known to be a leaf).
    leaf_types: frozenset[str] = field(default_factory=frozenset)
    #: (service, graphs, 90th percentile of root latency in ms), sorted by service.
    service_stats: tuple[tuple[str, int, int], ...] = ()
    #: (service, source, destination, type, graphs of the service containing the call), sorted.
    service_call_graphs: tuple[tuple[str, str, str, str, int], ...] = ()

    @classmethod
    def from_graphs(cls, graphs: Iterable[CallGraph]) -> Reference:
        calls: set[Call] = set()
        scoped: set[ServiceCall] = set()
        seen_types: set[str] = set()
        parent_types: set[str] = set()
        latencies: dict[str, list[int]] = defaultdict(list)
        containing: Counter[ServiceCall] = Counter()
        for g in graphs:
            latencies[g.service].append(g.latency)
            mine: set[ServiceCall] = set()
            for e in g.edges:
                calls.add((e.source, e.destination, e.type))
                mine.add((g.service, e.source, e.destination, e.type))
                seen_types.add(e.type)
                if e.rpc_id in g.children:
                    parent_types.add(e.type)
            scoped |= mine
            containing.update(mine)
        leaves = frozenset(t for t in seen_types - parent_types if t in CALL_TYPES)
        stats = tuple(
            (svc, len(lat), percentile(lat, 90)) for svc, lat in sorted(latencies.items())
        )
        counts = tuple(sorted((*call, n) for call, n in containing.items()))
        return cls(frozenset(calls), frozenset(scoped), leaves, stats, counts)

    @property
    def has_attribute_stats(self) -> bool:
        """Whether this reference has the per-service statistics (older files do not)."""
        return bool(self.service_stats)

    def service_graphs(self, service: str) -> int:
        """Graphs of `service` in the reference set (0: unknown service or no statistics)."""
        return self._stats.get(service, (0, 0))[0]

    def latency_p90(self, service: str) -> int | None:
        """The 90th percentile (nearest rank) of `service`'s root latency; None when unknown."""
        hit = self._stats.get(service)
        return hit[1] if hit else None

    def call_share(self, service: str, call: Call) -> float:
        """Share of `service`'s graphs that contain `call` (0.0 when never seen or unknown)."""
        total = self.service_graphs(service)
        return self._containing.get((service, *call), 0) / total if total else 0.0

    def uncommon_calls(self, service: str, below: float = UNCOMMON_SHARE) -> frozenset[Call]:
        """The calls seen in `service`'s graphs that appear in under `below` of them."""
        return frozenset(
            (s, d, t)
            for (svc, s, d, t) in self._containing
            if svc == service and self.call_share(service, (s, d, t)) < below
        )

    @cached_property
    def _stats(self) -> dict[str, tuple[int, int]]:
        return {svc: (n, p90) for svc, n, p90 in self.service_stats}

    @cached_property
    def _containing(self) -> dict[ServiceCall, int]:
        return {(svc, s, d, t): n for svc, s, d, t, n in self.service_call_graphs}

    def __contains__(self, call: object) -> bool:
        return call in self.calls

    def __len__(self) -> int:
        return len(self.calls)

    def calls_from(self, source: str, service: str | None = None) -> Calls:
        """destination -> call types seen from `source` (sorted, for stable grammars): in
        `service`'s graphs when given and it has any from `source`, else in all graphs."""
        if service is not None:
            hit = self._by_service_source.get((service, source))
            if hit:
                return hit
        return self._by_source.get(source, {})

    def scope(self, service: str | None) -> CallScope:
        """The calls a request for `service` may make (None: every call seen, any service)."""
        return CallScope(self, service if service in self._services else None)

    def reach(self, name: str, service: str | None = None) -> int:
        """How many levels of known calls can hang below a call to `name`: 0 when `name` calls
        nothing, `UNBOUNDED` when its calls can cycle back (self-calls included). Calls of a
        leaf type end a chain."""
        return self.scope(service).reach(name)

    @cached_property
    def _services(self) -> frozenset[str]:
        return frozenset(s for s, *_ in self.service_calls)

    @cached_property
    def _by_source(self) -> dict[str, dict[str, tuple[str, ...]]]:
        return _index((s, d, t) for s, d, t in self.calls)

    @cached_property
    def _by_service_source(self) -> dict[tuple[str, str], dict[str, tuple[str, ...]]]:
        rows: dict[tuple[str, str], list[Call]] = defaultdict(list)
        for svc, s, d, t in self.service_calls:
            rows[(svc, s)].append((s, d, t))
        return {key: _index(calls)[key[1]] for key, calls in rows.items()}

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        from .io import atomic_writer

        data = {
            "format": FORMAT,
            "calls": sorted(self.calls),
            "service_calls": sorted(self.service_calls),
            "leaf_types": sorted(self.leaf_types),
        }
        if self.has_attribute_stats:
            data["service_stats"] = [list(row) for row in self.service_stats]
            data["service_call_graphs"] = [list(row) for row in self.service_call_graphs]
        with atomic_writer(path) as fh:
            json.dump(data, fh)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a reference written by `save` (or the older plain list of calls)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a reference file: {exc}") from None
        if isinstance(data, list):
            data = {"calls": data}
        if not isinstance(data, dict) or data.get("format", FORMAT) != FORMAT:
            raise InputError(f"{path}: not a reference file (format {FORMAT!r} expected)")
        try:
            calls = frozenset(_tuple(c, 3) for c in data.get("calls", []))
            scoped = frozenset(_tuple(c, 4) for c in data.get("service_calls", []))
            leaves = frozenset(str(t) for t in data.get("leaf_types", []))
            stats = tuple(_counted(r, 3, 1) for r in data.get("service_stats", []))
            counts = tuple(_counted(r, 5, 4) for r in data.get("service_call_graphs", []))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: malformed reference entry: {exc}") from None
        return cls(calls, scoped, leaves, stats, counts)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CallScope:
    """The calls one request may make (see the module docstring). `reference=None` with
    `leaf_types` is the unrestricted scope: novel calls allowed, leaf types still leaves."""

    reference: Reference | None
    service: str | None = None
    leaves: frozenset[str] | None = None  # overrides the reference's leaf types when set

    @property
    def restricted(self) -> bool:
        return self.reference is not None

    @property
    def leaf_types(self) -> frozenset[str]:
        if self.leaves is not None:
            return self.leaves
        return self.reference.leaf_types if self.reference is not None else frozenset()

    def calls_from(self, source: str) -> Calls | None:
        """Allowed destination -> types from `source`; None: any call."""
        if self.reference is None:
            return None
        return self.reference.calls_from(source, self.service)

    def reach(self, name: str) -> int:
        if self.reference is None:
            return UNBOUNDED
        return self._levels.get(name, 0)

    def call_reach(self, destination: str, kind: str) -> int:
        """Levels that can hang below one call of type `kind` to `destination`."""
        return 0 if kind in self.leaf_types else self.reach(destination)

    @cached_property
    def _levels(self) -> dict[str, int]:
        """reach() of every microservice: 0 without calls, 1 + the deepest non-leaf call below;
        UNBOUNDED where non-leaf calls can cycle."""
        import networkx as nx

        assert self.reference is not None
        sources = {s for s, _, _ in self.reference.calls}
        g = nx.DiGraph()
        g.add_nodes_from(sources)
        for s in sources:
            for d, kinds in self.reference.calls_from(s, self.service).items():
                if any(k not in self.leaf_types for k in kinds):
                    g.add_edge(s, d)
        cond = nx.condensation(g)
        levels: dict[int, int] = {}
        for scc in reversed(list(nx.topological_sort(cond))):
            members = cond.nodes[scc]["members"]
            cyclic = len(members) > 1 or any(g.has_edge(m, m) for m in members)
            below = [levels[s] for s in cond.successors(scc)]
            if cyclic or any(b >= UNBOUNDED for b in below):
                levels[scc] = UNBOUNDED
            else:
                calls_out = any(m in sources for m in members)
                levels[scc] = 1 + max(below, default=0) if calls_out else 0
        return {m: levels[cond.graph["mapping"][m]] for m in g.nodes}

    def describe(self) -> str:
        if self.reference is None:
            return "any call (novel calls allowed)"
        return f"calls seen in {self.service}" if self.service else "calls seen in any service"


def _index(calls: Iterable[Call]) -> dict[str, dict[str, tuple[str, ...]]]:
    index: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for s, d, t in calls:
        index[s][d].add(t)
    return {
        s: {d: tuple(sorted(ts)) for d, ts in sorted(by_d.items())} for s, by_d in index.items()
    }


def percentile(values: Iterable[int], q: float) -> int:
    """The nearest-rank `q`-th percentile of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def _counted(item: object, size: int, strings: int) -> tuple[str | int, ...]:
    """A row of `strings` strings followed by non-negative integers."""
    if not isinstance(item, list | tuple) or len(item) != size:
        raise ValueError(f"expected {size} values, got {item!r}")
    numbers = item[strings:]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise ValueError(f"expected counts, got {item!r}")
    return (*(str(x) for x in item[:strings]), *numbers)


def _tuple(item: object, size: int) -> tuple[str, ...]:
    if not isinstance(item, list | tuple) or len(item) != size:
        raise ValueError(f"expected {size} strings, got {item!r}")
    return tuple(str(x) for x in item)
