"""Graphs <-> layers: decompose a call graph into the recursive layers and reassemble it.

Layer `k` holds the calls made by one caller while serving one call, with the conditions that the
calls below must meet. Layers are listed depth-first: a layer, then (for each of its subgraph blocks
in order) all layers of that subtree. Only the conditions travel from a layer to the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .errors import InputError
from .types import (
    NONE,
    ROOT_ID,
    USER,
    CallGraph,
    Edge,
    Layer,
    LayerConditions,
    LayerEdge,
    SubgraphBlock,
    rpc_parts,
)


def root_conditions(
    service: str, num_edges: int, depth: int, latency: int, start: int = 0
) -> LayerConditions:
    """The conditions of the first layer of a graph with these attributes (one call: `0`)."""
    return LayerConditions(
        service=service,
        start_node=USER,
        caller=NONE,
        start_edge_id=0,
        num_edges=num_edges,
        remaining_depth=depth - 1,
        num_current_edges=1,
        num_subgraphs=1 if num_edges > 1 else 0,
        start_communication_at=start,
        latency=latency,
    )


def decompose(graph: CallGraph) -> list[Layer]:
    """The layers of a valid call graph, depth-first. Raises ValueError on a graph that is not a
    tree rooted at `0` (run the oracle first)."""
    if ROOT_ID not in graph.by_id:
        raise InputError(f"graph of {graph.service} has no root call {ROOT_ID!r}")
    root = graph.by_id[ROOT_ID]
    sizes, heights = _subtree_stats(graph)
    cond = root_conditions(graph.service, graph.num_edges, graph.depth, root.finish, root.start)
    return list(_layers(graph, cond, (root,), sizes, heights))


def _layers(
    graph: CallGraph,
    cond: LayerConditions,
    calls: Sequence[Edge],
    sizes: dict[str, int],
    heights: dict[str, int],
) -> Iterator[Layer]:
    blocks: list[SubgraphBlock] = []
    below: list[tuple[LayerConditions, tuple[Edge, ...]]] = []
    for call in calls:
        kids = graph.children.get(call.rpc_id)
        if not kids:
            continue
        child = LayerConditions(
            service=cond.service,
            start_node=call.destination,
            caller=cond.start_node,
            start_edge_id=_index(kids[0]),
            num_edges=sizes[call.rpc_id] - 1,
            remaining_depth=heights[call.rpc_id] - 1,
            num_current_edges=len(kids),
            num_subgraphs=sum(1 for k in kids if k.rpc_id in graph.children),
            start_communication_at=min(k.start for k in kids),
            latency=max(k.finish for k in kids),
        )
        blocks.append(SubgraphBlock(_index(call), child))
        below.append((child, kids))
    edges = tuple(LayerEdge(_index(c), c.destination, c.type, c.start, c.finish) for c in calls)
    yield Layer(cond, edges, tuple(blocks))
    for child, kids in below:
        yield from _layers(graph, child, kids, sizes, heights)


def _index(e: Edge) -> int:
    return rpc_parts(e.rpc_id)[-1]


def _subtree_stats(graph: CallGraph) -> tuple[dict[str, int], dict[str, int]]:
    """Per call: edges in its subtree (itself included) and levels below it."""
    sizes: dict[str, int] = {}
    heights: dict[str, int] = {}
    for e in sorted(graph.edges, key=lambda e: -e.depth):  # children before parents
        kids = graph.children.get(e.rpc_id, ())
        sizes[e.rpc_id] = 1 + sum(sizes[k.rpc_id] for k in kids)
        heights[e.rpc_id] = 1 + max((heights[k.rpc_id] for k in kids), default=0) if kids else 0
    return sizes, heights


def call_id(prefix: str | None, index: int) -> str:
    """The rpc id of call `index` of the layer that expands call `prefix` (None: the root)."""
    return str(index) if prefix is None else f"{prefix}.{index}"


class GraphBuilder:
    """One call graph put together layer by layer (by `reassemble`, and by the decoder as
    layers are written): each layer's calls get their rpc ids from the call they expand."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.edges: list[Edge] = []

    def add_calls(
        self, prefix: str | None, source: str, calls: Sequence[LayerEdge]
    ) -> dict[int, str]:
        """Add one layer's calls (made by `source` below call `prefix`); return index -> id."""
        ids: dict[int, str] = {}
        for e in calls:
            ids[e.index] = call_id(prefix, e.index)
            self.edges.append(Edge(ids[e.index], source, e.destination, e.type, e.start, e.finish))
        return ids

    def graph(self) -> CallGraph:
        return CallGraph(self.service, tuple(self.edges))


def reassemble(layers: Sequence[Layer]) -> CallGraph:
    """Inverse of `decompose`: rebuild the call graph from its layers (depth-first order)."""
    if not layers:
        raise InputError("no layers to reassemble")
    builder = GraphBuilder(layers[0].conditions.service)
    pending: list[str | None] = [None]  # the call each coming layer expands, next one last
    for pos, layer in enumerate(layers):
        if not pending:
            raise InputError(f"{len(layers) - pos} layers left over after the tree was complete")
        ids = builder.add_calls(pending.pop(), layer.conditions.start_node, layer.edges)
        for block in reversed(layer.subgraphs):
            if block.edge not in ids:
                raise InputError(f"subgraph block refers to edge {block.edge}, not in its layer")
            pending.append(ids[block.edge])
    if pending:
        raise InputError("a subgraph block has no layer to expand it")
    return builder.graph()
