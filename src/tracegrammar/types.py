"""Plain data types at every boundary: calls, call graphs, and the layers of the recursive encoding.

Nothing here imports torch; everything is a frozen dataclass so values can be hashed, compared and
shared between threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # networkx is imported lazily: it is only needed for the conversions.
    import networkx as nx

CALL_TYPES: tuple[str, ...] = ("http", "rpc", "mc", "db", "mq")
ROOT_ID = "0"
USER = "USER"  # source of the root call
NONE = "NONE"  # caller of the root layer (nobody called USER)
#: The fields of a call that may be unknown (None) in an incomplete graph (`CallGraph.missing`).
MISSING_FIELDS: tuple[str, ...] = ("source", "destination", "type", "start", "finish")


def rpc_parts(rpc_id: str) -> tuple[int, ...]:
    """`"0.1.2"` -> `(0, 1, 2)`; the sort key of calls (numeric, not lexicographic)."""
    return tuple(int(p) for p in rpc_id.split("."))


def rpc_parent(rpc_id: str) -> str | None:
    head, sep, _ = rpc_id.rpartition(".")
    return head if sep else None


def rpc_depth(rpc_id: str) -> int:
    """Number of components: `0` has depth 1, `0.1.2` has depth 3."""
    return rpc_id.count(".") + 1


@dataclass(frozen=True, slots=True)
class Edge:
    """One call: `source` calls `destination` during [start, finish] (integer ms from trace start).

    In an incomplete graph (real traces with missing values) any field but `rpc_id` may be None:
    unknown. Such a graph is never valid; `tracegrammar.infill` fills it.
    """

    rpc_id: str
    source: str
    destination: str
    type: str
    start: int
    finish: int

    @property
    def depth(self) -> int:
        return rpc_depth(self.rpc_id)

    @property
    def parent_id(self) -> str | None:
        return rpc_parent(self.rpc_id)


@dataclass(frozen=True)
class CallGraph:
    """A tree of calls of one service. Edges are kept sorted by rpc id (numerically).

    The graph attributes (`num_edges`, `depth`, `latency`) are derived from the edges, so they can
    never disagree with them. A CallGraph may be invalid (it is what the oracle checks); use
    `tracegrammar.check` to find out.

    `timestamp` is when the root call started: epoch seconds UTC (`tracegrammar.times`), or None
    for a graph with no place in time (times are then only relative to the root). It is not part
    of equality or hashing: the same calls at another time are the same graph.
    """

    service: str
    edges: tuple[Edge, ...]
    timestamp: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.edges, key=_edge_key))
        if ordered != self.edges:
            object.__setattr__(self, "edges", ordered)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def depth(self) -> int:
        return max((e.depth for e in self.edges), default=0)

    @property
    def latency(self) -> int:
        """Finish time of the root call (0 when there is no root call)."""
        root = self.by_id.get(ROOT_ID)
        return root.finish if root is not None else 0

    @cached_property
    def by_id(self) -> dict[str, Edge]:
        return {e.rpc_id: e for e in self.edges}

    @cached_property
    def children(self) -> dict[str, tuple[Edge, ...]]:
        """rpc id -> its child calls in id order (only ids that have children)."""
        kids: dict[str, list[Edge]] = {}
        for e in self.edges:
            parent = e.parent_id
            if parent is not None:
                kids.setdefault(parent, []).append(e)
        return {k: tuple(v) for k, v in kids.items()}

    @property
    def missing(self) -> tuple[tuple[str, str], ...]:
        """(rpc id, field) of every unknown (None) field, in id order; empty for a complete graph.
        A call whose destination, type, start and finish are all unknown is a missing call."""
        return tuple(
            (e.rpc_id, name)
            for e in self.edges
            for name in MISSING_FIELDS
            if getattr(e, name) is None
        )

    def calls(self) -> Iterator[tuple[str, str, str]]:
        """(source, destination, type) of every call."""
        for e in self.edges:
            yield (e.source, e.destination, e.type)

    def to_networkx(self) -> nx.DiGraph:
        """The call tree: a node per call (keyed by rpc id), an arc parent -> child."""
        import networkx as nx

        g = nx.DiGraph(service=self.service)
        if self.timestamp is not None:
            g.graph["timestamp"] = self.timestamp
        for e in self.edges:
            g.add_node(
                e.rpc_id,
                source=e.source,
                destination=e.destination,
                type=e.type,
                start=e.start,
                finish=e.finish,
            )
        for e in self.edges:
            if e.parent_id is not None and e.parent_id in g:
                g.add_edge(e.parent_id, e.rpc_id)
        return g

    @classmethod
    def from_networkx(cls, g: nx.DiGraph) -> CallGraph:
        edges = [
            Edge(
                rpc_id=str(node),
                source=data["source"],
                destination=data["destination"],
                type=data["type"],
                start=int(data["start"]),
                finish=int(data["finish"]),
            )
            for node, data in g.nodes(data=True)
        ]
        return cls(g.graph["service"], tuple(edges), g.graph.get("timestamp"))

    def service_graph(self) -> nx.MultiDiGraph:
        """Microservices as nodes, one arc per call (what degree metrics are computed on)."""
        import networkx as nx

        g = nx.MultiDiGraph(service=self.service)
        for e in self.edges:
            g.add_edge(e.source, e.destination, type=e.type, rt=e.finish - e.start)
        return g


def _edge_key(e: Edge) -> tuple[tuple[int, ...], str]:
    try:
        return (rpc_parts(e.rpc_id), e.rpc_id)
    except (ValueError, AttributeError, TypeError):
        # malformed or wrong-typed ids (the oracle reports them) sort last, in a stable order
        return ((1 << 62,), repr(getattr(e, "rpc_id", e)))


# ----------------------------------------------------------------------------------------------
# The recursive layer encoding
# ----------------------------------------------------------------------------------------------

#: Condition fields in their canonical order (the order the grammar writes a subgraph block in;
#: each field is sampled after the ones it depends on).
CONDITION_FIELDS: tuple[str, ...] = (
    "service",
    "start_node",
    "caller",
    "start_edge_id",
    "num_edges",
    "remaining_depth",
    "num_current_edges",
    "num_subgraphs",
    "start_communication_at",
    "latency",
)


@dataclass(frozen=True, slots=True)
class LayerConditions:
    """The prompt of one layer: what the calls made by `start_node` must add up to.

    `num_edges` counts the edges left in this subtree including this layer; `remaining_depth` is
    how many levels may follow this layer (0: these calls are leaves); `num_subgraphs` is how many
    of this layer's calls have children of their own. `latency` bounds every finish time here and
    `start_communication_at` bounds every start time from below.
    """

    service: str
    start_node: str
    caller: str
    start_edge_id: int
    num_edges: int
    remaining_depth: int
    num_current_edges: int
    num_subgraphs: int
    start_communication_at: int
    latency: int

    def as_dict(self) -> dict[str, str | int]:
        return {f: getattr(self, f) for f in CONDITION_FIELDS}


@dataclass(frozen=True, slots=True)
class LayerEdge:
    """A call inside a layer: its source is the layer's `start_node`; `index` is the last rpc-id
    component (`0.1.3` has index 3)."""

    index: int
    destination: str
    type: str
    start: int
    finish: int


@dataclass(frozen=True, slots=True)
class SubgraphBlock:
    """The conditions of the next layer below the call with index `edge`."""

    edge: int
    conditions: LayerConditions


@dataclass(frozen=True, slots=True)
class Layer:
    conditions: LayerConditions
    edges: tuple[LayerEdge, ...]
    subgraphs: tuple[SubgraphBlock, ...] = field(default=())
