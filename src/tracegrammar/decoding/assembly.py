"""One requested graph as its layers come back from the scheduler: the calls so far (a
`layers.GraphBuilder`, the same one `layers.reassemble` uses), the text the model wrote, and why
it failed if it did; at the end, a `Generation` with the oracle's verdict. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..constraints import Constraints
from ..encode import ParsedLayer, ParseError, parse_layer_output, parse_tabular_output
from ..layers import GraphBuilder, call_id
from ..oracle import Violation, check, check_attributes, check_layer
from ..reference import Reference
from ..types import CallGraph, LayerConditions


@dataclass(frozen=True)
class Generation:
    """One requested graph: what the model wrote and the oracle's verdict."""

    constraints: Constraints
    graph: CallGraph | None  # None: the output did not parse (unfinished or off-format)
    text: str
    violations: tuple[Violation, ...]

    @property
    def valid(self) -> bool:
        return self.graph is not None and not self.violations


@dataclass
class GraphAssembly:
    """The decoder's state of one requested graph."""

    constraints: Constraints
    size: int  # the requested num_edges (bounds runaway free-written output)
    builder: GraphBuilder = field(init=False)
    texts: list[str] = field(default_factory=list)
    failure: str | None = None
    problems: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.builder = GraphBuilder(self.constraints.service)

    def add_tabular(self, text: str) -> None:
        try:
            self.builder.edges.extend(parse_tabular_output(text))
        except ParseError as exc:
            self.failure = str(exc)

    def add_layer(
        self,
        prefix: str | None,
        cond: LayerConditions,
        parsed: ParsedLayer,
        fmt: str,
        check_rules: bool,
    ) -> list[tuple[str, LayerConditions]]:
        """Add a finished layer's calls; return (rpc id, conditions) of the layers its subgraph
        blocks ask for. `check_rules`: replay the layer rules (output the engine did not
        constrain), recording what they find."""
        if check_rules:
            self.problems += check_layer(parsed, fmt, conditions=cond, where=f"layer {prefix}")
        ids = self.builder.add_calls(prefix, cond.start_node, parsed.edges)
        children: list[tuple[str, LayerConditions]] = []
        # Free-written output may ask for any number of layers: stop a graph that has grown far
        # past what was requested. The bound is the whole graph's (this layer's own num_edges
        # is only its subtree's). Constrained output never reaches it.
        limit = 2 * max(self.size, 1) + 8
        for edge, values in parsed.subgraphs:
            try:
                child = LayerConditions(**values)  # type: ignore[arg-type]
            except TypeError:
                self.failure = "subgraph block with missing conditions"
                return []
            if len(self.builder.edges) + len(children) > limit:
                self.failure = "more layers than the graph can hold"
                return []
            children.append((ids.get(edge, call_id(prefix or "0", edge)), child))
        return children

    def result(
        self, reference: Reference | None, attributes: Reference | None = None
    ) -> Generation:
        """The verdict: the oracle on the whole graph (with `reference`, its semantic checks
        too), plus what the layer rules found on the way; requested attributes are judged
        against `attributes` (the run's reference) when the request has any."""
        c = self.constraints
        text = "\n".join(self.texts)
        if self.failure is not None:
            problem = Violation("E_SYNTAX", "output", "", self.failure)
            return Generation(c, None, text, (problem,))
        graph = self.builder.graph()
        problems = tuple(check(graph, c, reference)) + tuple(self.problems)
        if c.has_attributes and not problems:
            problems = tuple(check_attributes(graph, c, attributes))
        return Generation(c, graph, text, problems)


def parse_layer(text: str, fmt: str, strict: bool) -> ParsedLayer:
    """A finished layer's output. Constrained output (`strict`) is in `fmt` by construction;
    a model writing freely may use either layer variant (the scratch pad is optional content),
    so both are accepted then. Raises ParseError."""
    try:
        return parse_layer_output(text, fmt)
    except ParseError:
        if strict:
            raise
        other = "layer" if fmt == "layer_instruct" else "layer_instruct"
        try:
            return parse_layer_output(text, other)
        except ParseError:
            pass
        raise
