"""Per-request grammars: the layer grammar with its parameter rules bound to one layer's numbers.

Only what is known before the layer is written goes here (how many calls and blocks, the service,
the caller, the scratch pad, the allowed destinations); what depends on values written inside the
layer is the numeric processor's job (tracegrammar.rules via the scanner). Torch-free.
"""

from __future__ import annotations

from ..encode import render_scratch
from ..grammar import grammar_text, lark_literal
from ..reference import CallScope
from ..types import LayerConditions

OUTPUT_START = "layer_output"


def layer_bindings(
    cond: LayerConditions, fmt: str = "layer", scope: CallScope | None = None
) -> dict[str, str]:
    bindings = {
        "p_edges": f"edge ~ {cond.num_current_edges}",
        "p_subgraphs": f"subgraph ~ {cond.num_subgraphs}" if cond.num_subgraphs else "",
        "p_service": lark_literal(cond.service),
        "p_caller": lark_literal(cond.start_node),
    }
    if fmt == "layer_instruct":
        bindings["p_scratch"] = lark_literal(render_scratch(cond))
    if scope is not None:
        call = semantic_call_rule(scope, cond.start_node)
        if call is not None:
            bindings["p_call"] = call
    return bindings


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


def layer_grammar(cond: LayerConditions, fmt: str = "layer", scope: CallScope | None = None) -> str:
    """The grammar of this layer's output (from `<edges>` to `</layer>`)."""
    return grammar_text(fmt, layer_bindings(cond, fmt, scope), start=OUTPUT_START)
