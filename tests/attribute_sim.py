"""A model-free writer for the layer rules: every field takes a random value the rules allow
(as a constrained decoder with a random model would), so tests can check that a plan never
meets a dead end and always comes out in the graph, over many draws and no model."""

from __future__ import annotations

import random

from tracegrammar.attributes import AttributePlan
from tracegrammar.layers import call_id, root_conditions
from tracegrammar.reference import CallScope
from tracegrammar.rules import (
    BLOCK_INT_FIELDS,
    Draft,
    IntSet,
    allowed,
    allowed_destinations,
    allowed_types,
    block_rules,
    copied_value,
    edge_rules,
)
from tracegrammar.types import CALL_TYPES, CallGraph, Edge, LayerConditions


class DeadEnd(AssertionError):
    pass


def _pick(s: IntSet, rng: random.Random, where: str) -> int:
    if not s:
        raise DeadEnd(f"no value allowed for {where}")
    lo, hi = rng.choice(s.intervals)
    return rng.randint(lo, min(hi, lo + 40))


def _pick_name(options: list[str], rng: random.Random, where: str) -> str:
    if not options:
        raise DeadEnd(f"no value allowed for {where}")
    return rng.choice(sorted(options))


def write_graph(
    service: str,
    num_edges: int,
    depth: int,
    latency: int,
    scope: CallScope,
    plan: AttributePlan | None,
    rng: random.Random,
) -> CallGraph:
    edges: list[Edge] = []
    todo: list[tuple[str | None, LayerConditions]] = [
        (None, root_conditions(service, num_edges, depth, latency))
    ]
    while todo:
        prefix, cond = todo.pop()
        layer_plan = plan.layer(prefix) if plan is not None else None
        d = Draft(cond, calls=scope, plan=layer_plan)
        for k in range(cond.num_current_edges):
            d.edges.append({})
            d.edges[k]["id"] = _pick(allowed(edge_rules(d, k, "id")), rng, "id")
            seen = scope.calls_from(cond.start_node) or {}
            dests = allowed_destinations(d, k)
            names = [m for m in seen if dests is None or m in dests]
            d.edges[k]["dm"] = _pick_name(names, rng, f"dm of {prefix}/{k}")
            kinds = allowed_types(d, k)
            grammar = seen.get(d.edges[k]["dm"], CALL_TYPES)
            d.edges[k]["type"] = _pick_name(
                [t for t in grammar if kinds is None or t in kinds], rng, "type"
            )
            for name in ("start", "finish"):
                d.edges[k][name] = _pick(allowed(edge_rules(d, k, name)), rng, name)
            e = d.edges[k]
            edges.append(
                Edge(
                    call_id(prefix, int(e["id"])), cond.start_node, str(e["dm"]), str(e["type"]),
                    int(e["start"]), int(e["finish"]),
                )
            )  # fmt: skip
        for i in range(cond.num_subgraphs):
            d.blocks.append({})
            values: dict[str, int | str] = {}
            for name in BLOCK_INT_FIELDS:
                v = _pick(allowed(block_rules(d, i, name)), rng, f"{name} of block {prefix}/{i}")
                d.blocks[i][name] = v
                if name == "edge":
                    for copied in ("service", "start_node", "caller"):
                        hit = copied_value(d, i, copied)
                        assert hit is not None
                        values[copied] = d.blocks[i][copied] = hit[1]
                else:
                    values[name] = v
            child = LayerConditions(**values)  # type: ignore[arg-type]
            todo.append((call_id(prefix, int(d.blocks[i]["edge"])), child))
    return CallGraph(service, tuple(edges))
