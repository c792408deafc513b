"""Per-request grammars: the layer grammar with its parameter rules bound to one layer's numbers.

Only what is known before the layer is written goes here; what depends on values written inside
the layer is the numeric processor's job (tracegrammar.rules via the scanner).

A layer's grammar binds its counts (how many calls and blocks), the instruction variant's scratch
pad and, with the semantic rules, the calls its caller may make. Its service and caller are also
known when it starts, but they stay their terminals (`SERVICE`, `node`): the scanner holds each
to its one value (`rules.copied_value`), and the engine writes what is left of it as forced
tokens (`FIXED_FIELDS`), as a literal in the grammar would. So layers of the same counts share
one compiled grammar and llguidance's lexer states, instead of building their own at almost every
step (`literals=True` gives the grammar with both compiled in: the reference the engine's tests
compare masks and forced tokens with). Torch-free.
"""

from __future__ import annotations

from functools import cache, lru_cache

from lark.exceptions import LarkError

from ..encode import render_scratch
from ..grammar import grammar_text, lark_literal, literal_after, parser
from ..reference import CallScope
from ..types import LayerConditions

OUTPUT_START = "layer_output"
#: subgraph block field -> the parameter rule of the value it must repeat, known when the layer
#: starts: a shared grammar leaves these rules general, and the engine forces the value
FIXED_FIELDS = {"service": "p_service", "caller": "p_caller"}


def layer_bindings(
    cond: LayerConditions,
    fmt: str = "layer",
    scope: CallScope | None = None,
    *,
    literals: bool = False,
) -> dict[str, str]:
    bindings = {
        "p_edges": f"edge ~ {cond.num_current_edges}",
        "p_subgraphs": f"subgraph ~ {cond.num_subgraphs}" if cond.num_subgraphs else "",
    }
    fixed = {"p_service": cond.service, "p_caller": cond.start_node}
    for rule, value in fixed.items():
        # a value its general rule would not take (none in the data) keeps its literal, so the
        # grammar allows exactly what it always did
        if literals or not fits(fmt, rule, value):
            bindings[rule] = lark_literal(value)
    if fmt == "layer_instruct":
        bindings["p_scratch"] = lark_literal(render_scratch(cond))
    if scope is not None:
        call = semantic_call_rule(scope, cond.start_node)
        if call is not None:
            bindings["p_call"] = call
    return bindings


@lru_cache(maxsize=1 << 16)
def fits(fmt: str, rule: str, text: str) -> bool:
    """Whether `text` is a whole `rule` of `fmt`'s grammar."""
    try:
        parser(fmt, rule).parse(text)
    except LarkError:
        return False
    return True


@cache
def fixed_follows(fmt: str) -> dict[str, str]:
    """FIXED_FIELDS' field -> the text the grammar writes right after its value (the engine
    forces the value and the start of that text, so the matcher knows the value has ended)."""
    return {field: literal_after(fmt, rule) for field, rule in FIXED_FIELDS.items()}


def semantic_call_rule(scope: CallScope, source: str) -> str | None:
    """`p_call` restricted to the (destination, type) pairs `scope` allows from `source`; None
    when it allows any call. A caller the reference never saw calling cannot be given calls
    (its reach is 0), except at a layer the rules cannot avoid: then it stays unrestricted."""
    seen = scope.calls_from(source)
    if not seen:
        return None
    alts = []
    for dest, types in seen.items():
        kinds = " | ".join(lark_literal(t) for t in types)
        alts.append(f'{lark_literal(dest)} " type:" ({kinds})')
    return "\n    | ".join(alts)


def layer_grammar(
    cond: LayerConditions,
    fmt: str = "layer",
    scope: CallScope | None = None,
    *,
    literals: bool = False,
) -> str:
    """The grammar of this layer's output (from `<edges>` to `</layer>`); `literals`: with its
    service and caller compiled in (see the module's docstring)."""
    return grammar_text(
        fmt, layer_bindings(cond, fmt, scope, literals=literals), start=OUTPUT_START
    )
