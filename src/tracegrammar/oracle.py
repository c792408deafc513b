"""The Trace Oracle: every rule of the catalogue, each failure named by a stable error code.

`check(graph)` checks a whole call graph (a `CallGraph`, or tabular / layers text);
`check_layer(layer)` checks one layer against its conditions, replaying the numeric rules of
`tracegrammar.rules` (the same ones the decoder enforces). Both return a list of `Violation`s,
empty when valid, and never raise on bad input: wrong types (a float, NaN or boolean time, a
name that is not a string, something that is not a CallGraph) and oversized ids are violations
too (E_FIELD_TYPE, E_TIME_TYPE, E_TOO_LONG), reported before any other rule reads the values.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .codes import CODES, MAX_ID_PART_DIGITS, MAX_NAME_CHARS
from .constraints import MS_RE, SERVICE_RE, Constraints
from .encode import LAYER_ENCODINGS, ParsedLayer, ParseError, parse_layer_text, parse_tabular
from .reference import UNCOMMON_SHARE, Reference
from .rules import (
    BLOCK_COPY_FIELDS,
    BLOCK_INT_FIELDS,
    EDGE_INT_FIELDS,
    Draft,
    Rule,
    block_rules,
    condition_rules,
    copied_value,
    edge_rules,
)
from .types import CALL_TYPES, ROOT_ID, USER, CallGraph, Edge, Layer, LayerConditions

RPC_ID_RE = re.compile(r"0(\.[1-9][0-9]*)*")


@dataclass(frozen=True, slots=True)
class Violation:
    code: str
    where: str
    value: object
    rule: str

    def __str__(self) -> str:
        return f"{self.code} at {self.where}: {self.rule} (got {self.value!r})"


def _v(code: str, where: str, value: object, rule: str | None = None) -> Violation:
    return Violation(code, where, value, rule or CODES[code])


# ------------------------------------------------------------------------------------------------
# whole graphs
# ------------------------------------------------------------------------------------------------


def check(
    graph: CallGraph | str,
    constraints: Constraints | None = None,
    reference: Reference | None = None,
) -> list[Violation]:
    """All violations of a call graph (empty list: valid). Text is read as tabular (`<graph`) or
    as layers (`<layer`); text that does not parse gives one E_SYNTAX violation."""
    if isinstance(graph, str):
        parsed = _graph_from_text(graph)
        if isinstance(parsed, list):
            return parsed
        graph = parsed
    typed = _types(graph, constraints, reference)
    if typed:  # the rules below compare and parse values: only well-typed ones
        return typed
    out = _structure(graph)
    if constraints is not None:
        out += _constraints(graph, constraints)
    if reference is not None:
        out += [
            _v("E_UNSEEN_CALL", e.rpc_id, (e.source, e.destination, e.type))
            for e in graph.edges
            if (e.source, e.destination, e.type) not in reference
        ]
        out += [
            _v("E_LEAF_PARENT", e.rpc_id, e.type)
            for e in graph.edges
            if e.type in reference.leaf_types and e.rpc_id in graph.children
        ]
    return out


def _graph_from_text(text: str) -> CallGraph | list[Violation]:
    from .layers import reassemble

    try:
        if text.lstrip().startswith("<graph"):
            return parse_tabular(text)
        chunks = [c for c in text.strip("\n").split("\n\n") if c.strip()]
        if not chunks:
            raise ParseError("empty text")
        layers: list[Layer] = []
        problems: list[Violation] = []
        for n, chunk in enumerate(chunks):
            parsed = parse_layer_text(
                chunk, "layer_instruct" if "\ngenerated " in chunk else "layer"
            )
            problems += check_layer(parsed, where=f"layer {n}")
            layers.append(parsed.to_layer())
        if problems:
            return problems
        return reassemble(layers)
    except ParseError as exc:
        return [_v("E_SYNTAX", "text", text[:80], str(exc))]
    except ValueError as exc:
        return [_v("E_LAYER_STRUCTURE", "layers", len(text), str(exc))]
    except Exception as exc:
        return [_v("E_SYNTAX", "text", text[:80], f"{type(exc).__name__}: {exc}")]


def _types(g: object, c: object, reference: object) -> list[Violation]:
    """Wrong types and oversized values, found before any rule compares or parses them."""
    if not isinstance(g, CallGraph):
        return [_v("E_FIELD_TYPE", "graph", type(g).__name__)]
    out: list[Violation] = []
    if c is not None and not isinstance(c, Constraints):
        out.append(_v("E_FIELD_TYPE", "constraints", type(c).__name__))
    if reference is not None and not isinstance(reference, Reference):
        out.append(_v("E_FIELD_TYPE", "reference", type(reference).__name__))
    out += _name_type("graph.service", g.service)
    if not isinstance(g.edges, tuple):
        return [*out, _v("E_FIELD_TYPE", "graph.edges", type(g.edges).__name__)]
    for k, e in enumerate(g.edges):
        if not isinstance(e, Edge):
            out.append(_v("E_FIELD_TYPE", f"edge {k}", type(e).__name__))
            continue
        at = e.rpc_id if isinstance(e.rpc_id, str) and len(e.rpc_id) <= 80 else f"edge {k}"
        out += _rpc_id_type(at, e.rpc_id)
        for name in ("source", "destination", "type"):
            out += _name_type(f"{at}.{name}", getattr(e, name))
        for name in ("start", "finish"):
            value = getattr(e, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                out.append(_v("E_TIME_TYPE", f"{at}.{name}", _short(value)))
    return out


def _name_type(where: str, value: object) -> list[Violation]:
    if not isinstance(value, str):
        return [_v("E_FIELD_TYPE", where, _short(value))]
    if len(value) > MAX_NAME_CHARS:
        return [_v("E_TOO_LONG", where, f"{len(value)} characters: {value[:20]}...")]
    return []


def _rpc_id_type(where: str, value: object) -> list[Violation]:
    if not isinstance(value, str):
        return [_v("E_FIELD_TYPE", f"{where}.rpc_id", _short(value))]
    longest = max(map(len, value.split(".")))
    if longest > MAX_ID_PART_DIGITS:
        return [_v("E_TOO_LONG", f"{where}.rpc_id", f"a component of {longest} characters")]
    return []


def _short(value: object) -> object:
    """The value itself when small, else its type and size (a Violation is printed)."""
    if isinstance(value, str | bytes | list | tuple | dict) and len(value) > 80:
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"int of {value.bit_length()} bits"
    return value


def _structure(g: CallGraph) -> list[Violation]:
    out: list[Violation] = []
    if not SERVICE_RE.fullmatch(g.service or ""):
        out.append(_v("E_SERVICE_FORMAT", "graph", g.service))
    if not g.edges:
        return [*out, _v("E_EMPTY", "graph", 0)]
    seen: set[str] = set()
    for e in g.edges:
        if not RPC_ID_RE.fullmatch(e.rpc_id):
            out.append(_v("E_RPC_ID", e.rpc_id, e.rpc_id))
        if e.rpc_id in seen:
            out.append(_v("E_DUPLICATE_ID", e.rpc_id, e.rpc_id))
        seen.add(e.rpc_id)
        out += _call(g, e)
    root = g.by_id.get(ROOT_ID)
    if root is None:
        out.append(_v("E_ROOT_MISSING", "graph", sorted(seen)[:3]))
    else:
        if root.source != USER:
            out.append(_v("E_ROOT_SOURCE", ROOT_ID, root.source))
        if root.start != 0:
            out.append(_v("E_ROOT_START", ROOT_ID, root.start))
    for parent, kids in g.children.items():
        numbers = [int(k.rpc_id.rsplit(".", 1)[1]) for k in kids if RPC_ID_RE.fullmatch(k.rpc_id)]
        if numbers and numbers != list(range(1, len(numbers) + 1)):
            out.append(_v("E_ID_GAP", parent, numbers))
    return out


def _call(g: CallGraph, e) -> list[Violation]:
    out: list[Violation] = []
    if e.type not in CALL_TYPES:
        out.append(_v("E_CALL_TYPE", e.rpc_id, e.type))
    if not isinstance(e.destination, str) or not MS_RE.fullmatch(e.destination):
        out.append(_v("E_NAME", e.rpc_id, e.destination))
    if e.rpc_id != ROOT_ID and (not isinstance(e.source, str) or not MS_RE.fullmatch(e.source)):
        out.append(_v("E_NAME", e.rpc_id, e.source))
    if e.start < 0:
        out.append(_v("E_NEGATIVE_TIME", e.rpc_id, e.start))
    if e.start > e.finish:
        out.append(_v("E_START_AFTER_FINISH", e.rpc_id, (e.start, e.finish)))
    if e.parent_id is None:
        return out
    parent = g.by_id.get(e.parent_id)
    if parent is None:
        return [*out, _v("E_ORPHAN", e.rpc_id, e.parent_id)]
    if e.source != parent.destination:
        out.append(_v("E_SOURCE_MISMATCH", e.rpc_id, (e.source, parent.destination)))
    if e.start < parent.start:
        out.append(_v("E_CHILD_BEFORE_PARENT", e.rpc_id, (e.start, parent.start)))
    if e.finish > parent.finish:
        out.append(_v("E_CHILD_AFTER_PARENT", e.rpc_id, (e.finish, parent.finish)))
    return out


def _constraints(g: CallGraph, c: Constraints) -> list[Violation]:
    out: list[Violation] = []
    if g.service != c.service:
        out.append(_v("E_SERVICE", "graph", g.service, f"service == {c.service}"))
    if c.num_edges is not None and g.num_edges != c.num_edges:
        out.append(_v("E_NUM_EDGES", "graph", g.num_edges, f"num_edges == {c.num_edges}"))
    if c.depth is not None and g.depth != c.depth:
        out.append(_v("E_DEPTH", "graph", g.depth, f"depth == {c.depth}"))
    if c.latency is not None and g.latency > c.latency:
        out.append(_v("E_LATENCY", "graph", g.latency, f"latency <= {c.latency}"))
    return out


def check_attributes(
    graph: CallGraph, constraints: Constraints, reference: Reference | None
) -> list[Violation]:
    """Violations of the requested attributes (`high_latency`, `include_calls`,
    `uncommon_call`), judged against the reference's per-service statistics: the root call
    finishes at or above the service's 90th percentile (E_HIGH_LATENCY); every requested call
    appears (E_MISSING_CALL); some call appears that is in under 10% of the service's graphs
    (E_NO_UNCOMMON_CALL; a call the service never made does not count). Without statistics the
    latency and uncommon checks cannot pass."""
    c, out = constraints, []
    stats = reference if reference is not None and reference.has_attribute_stats else None
    calls = {(e.source, e.destination, e.type) for e in graph.edges}
    if c.high_latency:
        p90 = stats.latency_p90(c.service) if stats is not None else None
        if p90 is None or graph.latency < p90:
            out.append(_v("E_HIGH_LATENCY", "graph", graph.latency, f"latency >= {p90}"))
    for call in c.include_calls:
        if call not in calls:
            out.append(_v("E_MISSING_CALL", "graph", ",".join(call)))
    if c.uncommon_call:
        uncommon = stats.uncommon_calls(c.service, UNCOMMON_SHARE) if stats is not None else ()
        if not any(call in uncommon for call in calls):
            out.append(_v("E_NO_UNCOMMON_CALL", "graph", len(calls)))
    return out


# ------------------------------------------------------------------------------------------------
# one layer
# ------------------------------------------------------------------------------------------------


def check_layer(
    layer: Layer | ParsedLayer | str,
    fmt: str = "layer",
    conditions: LayerConditions | None = None,
    where: str = "layer",
) -> list[Violation]:
    """All violations of one layer. `conditions` overrides the ones the layer states (use it when
    the prompt was shortened); text that does not parse gives E_SYNTAX."""
    try:
        parsed = _as_parsed(layer, fmt)
    except ParseError as exc:
        return [_v("E_SYNTAX", where, str(layer)[:80], str(exc))]
    cond = conditions
    if cond is None:
        try:
            cond = parsed.to_layer().conditions
        except ParseError as exc:
            return [_v("E_COND_MISSING", where, sorted(parsed.conditions), str(exc))]
    try:
        return _dedupe(_layer_violations(parsed, cond, where))
    except Exception as exc:
        return [_v("E_SYNTAX", where, repr(exc)[:80], "layer values of the wrong type")]


def _as_parsed(layer: Layer | ParsedLayer | str, fmt: str) -> ParsedLayer:
    if isinstance(layer, ParsedLayer):
        return layer
    if isinstance(layer, str):
        if fmt not in LAYER_ENCODINGS:
            raise ParseError(f"unknown layer format {fmt!r}")
        return parse_layer_text(layer, fmt)
    return ParsedLayer(
        conditions=dict(layer.conditions.as_dict()),
        edges=layer.edges,
        subgraphs=tuple((b.edge, dict(b.conditions.as_dict())) for b in layer.subgraphs),
        scratch=None,
    )


def _layer_violations(p: ParsedLayer, cond: LayerConditions, where: str) -> Iterable[Violation]:
    for name, rule in condition_rules(cond):
        yield from _against(rule, getattr(cond, name), f"{where} conditions.{name}")
    if len(p.edges) != cond.num_current_edges:
        yield _v("E_EDGE_COUNT", where, len(p.edges), f"{cond.num_current_edges} calls")
    draft = Draft(cond)
    for k, e in enumerate(p.edges):
        at = f"{where} call {k}"
        draft.edges.append({})
        for name, value in (("id", e.index), ("start", e.start), ("finish", e.finish)):
            assert name in EDGE_INT_FIELDS
            for rule in edge_rules(draft, k, name):
                yield from _against(rule, value, f"{at}.{name}")
            draft.edges[k][name] = value
        draft.edges[k]["dm"] = e.destination
        if not MS_RE.fullmatch(str(e.destination)):
            yield _v("E_NAME", f"{at}.dm", e.destination)
        if e.type not in CALL_TYPES:
            yield _v("E_CALL_TYPE", f"{at}.type", e.type)
    left = cond.num_edges - cond.num_current_edges
    if p.subgraphs and (cond.remaining_depth == 0 or left == 0):
        yield _v("E_SUBGRAPH_UNEXPECTED", where, len(p.subgraphs))
    if len(p.subgraphs) != cond.num_subgraphs:
        yield _v("E_SUBGRAPH_COUNT", where, len(p.subgraphs), f"{cond.num_subgraphs} blocks")
    for i, (edge, values) in enumerate(p.subgraphs):
        yield from _block(draft, i, {"edge": edge, **values}, f"{where} block {i}")
    used = sum(v.get("num_edges", 0) for _, v in p.subgraphs if isinstance(v.get("num_edges"), int))
    if p.subgraphs and used != left:
        yield _v("E_SUBGRAPH_BUDGET", where, used, f"blocks share {left} edges")
    target = cond.remaining_depth - 1
    if (
        p.subgraphs
        and target >= 0
        and all(v.get("remaining_depth") != target for _, v in p.subgraphs)
    ):
        yield _v("E_DEPTH_NOT_REACHED", where, [v.get("remaining_depth") for _, v in p.subgraphs])
    if p.scratch is not None:
        yield from _scratch(p.scratch, cond, where)


def _block(draft: Draft, i: int, values: dict, at: str) -> Iterable[Violation]:
    draft.blocks.append({})
    for name in ("edge", *BLOCK_COPY_FIELDS, *BLOCK_INT_FIELDS[1:]):
        value = values.get(name)
        if name in BLOCK_COPY_FIELDS:
            expected = copied_value(draft, i, name)
            if expected is not None and value != expected[1]:
                yield _v(expected[0], f"{at}.{name}", value, f"{name} == {expected[1]}")
        else:
            for rule in block_rules(draft, i, name):
                yield from _against(rule, value, f"{at}.{name}")
        draft.blocks[i][name] = value


def _scratch(numbers: tuple[int, ...], cond: LayerConditions, where: str) -> Iterable[Violation]:
    from .encode import scratch_numbers

    expected = scratch_numbers(cond)
    if numbers != expected:
        yield _v("E_SCRATCH", f"{where} scratch", numbers, f"expected {expected}")


def _against(rule: Rule, value: object, where: str) -> Iterable[Violation]:
    if value not in rule.allowed:
        yield _v(rule.code, where, value, rule.what)


def _dedupe(items: Iterable[Violation]) -> list[Violation]:
    seen: set[tuple[str, str]] = set()
    out = []
    for v in items:
        if (v.code, v.where) not in seen:
            seen.add((v.code, v.where))
            out.append(v)
    return out


def is_valid(graph: CallGraph | str, constraints: Constraints | None = None) -> bool:
    return not check(graph, constraints)
