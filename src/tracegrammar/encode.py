"""Text encodings: render and parse call graphs and layers through the grammars in `grammars/`.

Two encodings (see grammars/README.md):
- tabular: `<graph ...attributes...>` then one line per call with all six fields;
- recursive layers: a layer prompt `<layer ...conditions...>` and its output (calls, optional
  scratch pad, subgraph blocks). `layer_instruct` adds the papers' intermediate arithmetic.

Rendering writes the exact bytes the grammar fixes; parsing goes through the cached Lark parser,
and the property tests hold them to `parse(render(x)) == x`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lark import Token, Transformer, v_args
from lark.exceptions import LarkError

from .errors import InputError
from .grammar import parser
from .types import (
    CONDITION_FIELDS,
    CallGraph,
    Edge,
    Layer,
    LayerConditions,
    LayerEdge,
    SubgraphBlock,
)

LAYER_ENCODINGS = ("layer", "layer_instruct")
INT_CONDITIONS = frozenset(CONDITION_FIELDS) - {"service", "start_node", "caller"}
GRAPH_ATTRIBUTES = ("service", "num_edges", "depth", "latency")


class ParseError(InputError):
    """Text that the grammar does not accept; the message says where."""


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------


def render_conditions(values: dict[str, str | int], *, tag: str = "<layer") -> str:
    """`<layer k:v k:v ...>\\n` in the order of `values` (any subset of the condition fields)."""
    return tag + "".join(f" {k}:{v}" for k, v in values.items()) + ">\n"


def render_layer_prompt(cond: LayerConditions) -> str:
    return render_conditions(cond.as_dict())


def render_edge(e: LayerEdge) -> str:
    return f"(id:{e.index} dm:{e.destination} type:{e.type} start:{e.start} finish:{e.finish})\n"


def render_subgraph(block: SubgraphBlock) -> str:
    return render_conditions(block.conditions.as_dict(), tag=f"<subgraph edge:{block.edge}")


def scratch_numbers(cond: LayerConditions) -> tuple[int, ...]:
    """The numbers the instruction variant's scratch pad writes, in order."""
    n, cur = cond.num_edges, cond.num_current_edges
    numbers: tuple[int, ...] = (cur, n, n, cur, n - cur)
    if cond.num_subgraphs > 0:
        numbers += (cond.remaining_depth, cond.remaining_depth - 1)
    return numbers


def render_scratch(cond: LayerConditions) -> str:
    """The instruction variant's arithmetic: fixed by the conditions alone, so always forced."""
    cur, n, _, _, left, *depth = scratch_numbers(cond)
    text = f"generated {cur} of {n} edges, remaining {n} - {cur} = {left}"
    if depth:
        text += f", child depth {depth[0]} - 1 = {depth[1]}"
    return text + "\n"


def render_layer_output(layer: Layer, fmt: str = "layer") -> str:
    _check_layer_format(fmt)
    parts = ["<edges>\n", *map(render_edge, layer.edges), "</edges>\n"]
    if fmt == "layer_instruct":
        parts.append(render_scratch(layer.conditions))
    parts.extend(map(render_subgraph, layer.subgraphs))
    parts.append("</layer>")
    return "".join(parts)


def render_layer(layer: Layer, fmt: str = "layer") -> str:
    return render_layer_prompt(layer.conditions) + render_layer_output(layer, fmt)


def render_layers(layers: Iterable[Layer], fmt: str = "layer") -> str:
    """A whole graph as its layers, one after another, separated by a blank line."""
    return "\n\n".join(render_layer(layer, fmt) for layer in layers) + "\n"


def render_request(
    min_latency: int | None = None,
    include_calls: Sequence[tuple[str, str, str]] = (),
    uncommon_call: bool = False,
) -> str:
    """The requested attributes in words, the line that ends an instruction root prompt
    (grammars/layer_instruct.lark `request`); empty when nothing is requested."""
    items = []
    if min_latency is not None:
        items.append(f"latency(ms) >= {min_latency}")
    if include_calls:
        calls = " and ".join(f"{s} -> {d} ({t})" for s, d, t in include_calls)
        items.append(f"include calls {calls}")
    if uncommon_call:
        items.append("at least one uncommon call")
    return f"requested: {', '.join(items)}\n" if items else ""


def parse_request(text: str) -> dict[str, object]:
    """`render_request`'s line back to {min_latency?, include_calls?, uncommon_call?}."""
    tree = _parse("layer_instruct", text, start="request")
    return _request_values(tree)


def _request_values(tree: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in tree.children:  # type: ignore[attr-defined]
        if item.data == "r_high_latency":
            out["min_latency"] = item.children[0]
        elif item.data == "r_include_calls":
            out["include_calls"] = tuple(
                (c.children[0], str(c.children[1]), str(c.children[2])) for c in item.children
            )
        else:
            out["uncommon_call"] = True
    return out


def render_graph_prompt(attributes: dict[str, str | int]) -> str:
    return render_conditions(attributes, tag="<graph")


def render_row(e: Edge) -> str:
    return (
        f"(id:{e.rpc_id} src:{e.source} dm:{e.destination} type:{e.type} "
        f"start:{e.start} finish:{e.finish})\n"
    )


def render_tabular(graph: CallGraph) -> str:
    attrs = {
        "service": graph.service,
        "num_edges": graph.num_edges,
        "depth": graph.depth,
        "latency": graph.latency,
    }
    return render_graph_prompt(attrs) + "".join(map(render_row, graph.edges)) + "</graph>"


def _check_layer_format(fmt: str) -> None:
    if fmt not in LAYER_ENCODINGS:
        raise InputError(f"layer format must be one of {LAYER_ENCODINGS}, got {fmt!r}")


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedLayer:
    """Everything a layer text says, before any rule is checked. Conditions may be partial."""

    conditions: dict[str, str | int]
    edges: tuple[LayerEdge, ...]
    subgraphs: tuple[tuple[int, dict[str, str | int]], ...]
    scratch: tuple[int, ...] | None  # the instruction variant's numbers, in order

    def to_layer(self) -> Layer:
        """The typed Layer; raises ParseError when a condition is missing."""
        cond = conditions_from_dict(self.conditions)
        blocks = tuple(SubgraphBlock(e, conditions_from_dict(c)) for e, c in self.subgraphs)
        return Layer(cond, self.edges, blocks)


def conditions_from_dict(values: dict[str, str | int]) -> LayerConditions:
    missing = [f for f in CONDITION_FIELDS if f not in values]
    if missing:
        raise ParseError(f"layer conditions lack {', '.join(missing)}")
    return LayerConditions(**{f: values[f] for f in CONDITION_FIELDS})  # type: ignore[arg-type]


@v_args(inline=True)
class _ToValues(Transformer):
    """Lark tree -> plain Python values (shared by both encodings)."""

    def INT(self, tok: Token) -> int:
        return int(tok)

    def node(self, tok: Token) -> str:
        return str(tok)

    def p_caller(self, value: str) -> str:
        return value

    def p_service(self, tok: Token) -> str:
        return str(tok)

    def p_call(self, dm: Token, typ: Token) -> tuple[str, str]:
        return (str(dm), str(typ))

    def edge(self, index: int, call: tuple[str, str], start: int, finish: int) -> LayerEdge:
        return LayerEdge(index, call[0], call[1], start, finish)

    def subgraph(self, edge: int, *values: str | int) -> tuple[int, dict[str, str | int]]:
        return (edge, dict(zip(CONDITION_FIELDS, values, strict=True)))

    def scratch(self, *values: object) -> tuple[int, ...]:
        flat: list[int] = []
        for v in values:
            flat.extend(v if isinstance(v, tuple) else (v,))  # type: ignore[arg-type]
        return tuple(flat)

    def scratch_depth(self, a: int, b: int) -> tuple[int, int]:
        return (a, b)

    def row(self, rid: Token, src: str, dm: Token, typ: Token, start: int, finish: int) -> Edge:
        return Edge(str(rid), src, str(dm), str(typ), start, finish)


def _named_pairs(children: Sequence[object], prefix_len: int) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for child in children:
        name = child.data[prefix_len:]  # type: ignore[attr-defined]
        if name in out:
            raise ParseError(f"condition {name!r} given twice")
        value = child.children[0]  # type: ignore[attr-defined]
        out[name] = str(value) if isinstance(value, Token) else value
    return out


def _parse(fmt: str, text: str, start: str = "start"):
    try:
        return _ToValues().transform(parser(fmt, start).parse(text))
    except LarkError as exc:
        raise ParseError(f"{fmt}: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def parse_layer_text(text: str, fmt: str = "layer") -> ParsedLayer:
    """Parse one layer (prompt + output)."""
    _check_layer_format(fmt)
    tree = _parse(fmt, text)
    prompt, output = tree.children
    conditions = _named_pairs([c for c in prompt.children if c.data.startswith("c_")], len("c_"))
    p_edges, p_scratch, p_subgraphs = output.children
    scratch = p_scratch.children[0] if p_scratch.children else None
    return ParsedLayer(
        conditions=conditions,
        edges=tuple(p_edges.children),
        subgraphs=tuple(p_subgraphs.children),
        scratch=scratch,
    )


def parse_layer_output(text: str, fmt: str = "layer") -> ParsedLayer:
    """Parse a layer's output alone (from `<edges>` to `</layer>`); conditions are left empty."""
    _check_layer_format(fmt)
    p_edges, p_scratch, p_subgraphs = _parse(fmt, text, start="layer_output").children
    return ParsedLayer(
        conditions={},
        edges=tuple(p_edges.children),
        subgraphs=tuple(p_subgraphs.children),
        scratch=p_scratch.children[0] if p_scratch.children else None,
    )


def parse_tabular_output(text: str) -> tuple[Edge, ...]:
    """Parse the rows of a tabular graph (everything after the header line)."""
    return tuple(_parse("tabular", text, start="graph_output").children[0].children)


def parse_layer(text: str, fmt: str = "layer") -> Layer:
    return parse_layer_text(text, fmt).to_layer()


def parse_conditions(prompt: str) -> dict[str, str | int]:
    """The (possibly partial, shuffled) conditions of a layer prompt, in the order written."""
    tree = _parse("layer", prompt, start="layer_prompt")
    return _named_pairs(tree.children, len("c_"))


def parse_layers(text: str, fmt: str = "layer") -> list[Layer]:
    chunks = [c for c in text.strip("\n").split("\n\n") if c.strip()]
    return [parse_layer(chunk, fmt) for chunk in chunks]


def parse_tabular_text(text: str) -> tuple[dict[str, str | int], tuple[Edge, ...]]:
    tree = _parse("tabular", text)
    prompt, output = tree.children
    attributes = _named_pairs(prompt.children, len("a_"))
    return attributes, tuple(output.children[0].children)


def parse_tabular(text: str) -> CallGraph:
    attributes, edges = parse_tabular_text(text)
    if "service" not in attributes:
        raise ParseError("tabular: the header has no service")
    return CallGraph(str(attributes["service"]), edges)
