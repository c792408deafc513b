"""The catalogue of error codes: every `E_...` code that the Trace Oracle (`oracle`) or the numeric
rules (`rules`, shared with the decoder) can report, with the rule it names in words.

A new rule gets its code here first; `tests/test_codes.py` checks that every `"E_..."` literal in
the package is a key of `CODES`, and `tests/test_oracle_codes.py` that every code is tested.
"""

from __future__ import annotations

from .types import CALL_TYPES

#: Longest rpc-id component (digits) and longest name or service id the oracle reads; beyond them
#: a value is reported, not parsed (Python refuses int() of over 4,300 digits).
MAX_ID_PART_DIGITS = 9
MAX_NAME_CHARS = 128

#: Every error code, with the rule in words.
CODES: dict[str, str] = {
    # whole graph
    "E_SYNTAX": "the text is not in the grammar",
    "E_FIELD_TYPE": "a graph is a CallGraph of Edges; its service, rpc ids, names and call types "
    "are strings",
    "E_TIME_TYPE": "start and finish are whole milliseconds: integers, not booleans, fractions, "
    "NaN or infinities",
    "E_TOO_LONG": f"an rpc-id component has at most {MAX_ID_PART_DIGITS} digits; a name or the "
    f"service id at most {MAX_NAME_CHARS} characters",
    "E_EMPTY": "a call graph has at least one call",
    "E_RPC_ID": "rpc ids are dot-decimal under 0 (0, 0.1, 0.1.2 ...)",
    "E_DUPLICATE_ID": "one call per rpc id",
    "E_ROOT_MISSING": "the root call 0 exists",
    "E_ROOT_SOURCE": "the root call's source is USER",
    "E_ROOT_START": "the root call starts at 0",
    "E_ORPHAN": "every call's parent call exists",
    "E_ID_GAP": "the children of a call are numbered 1, 2, ... without gaps",
    "E_SOURCE_MISMATCH": "a child call's source is its parent's destination",
    "E_CALL_TYPE": f"the call type is one of {', '.join(CALL_TYPES)}",
    "E_NAME": "microservice names are well formed (MS_<n> or a 64-hex hash)",
    "E_SERVICE_FORMAT": "the service id looks like S_<n>",
    "E_NEGATIVE_TIME": "times are >= 0",
    "E_START_AFTER_FINISH": "a call starts no later than it finishes",
    "E_CHILD_BEFORE_PARENT": "a child call starts no earlier than its parent",
    "E_CHILD_AFTER_PARENT": "a child call finishes no later than its parent",
    "E_SERVICE": "the graph has the requested service",
    "E_NUM_EDGES": "the graph has the requested number of calls",
    "E_DEPTH": "the graph has the requested depth",
    "E_LATENCY": "the root call finishes within the requested latency",
    "E_UNSEEN_CALL": "every (source, destination, type) call is in the reference set",
    "E_LEAF_PARENT": "a call of a type the reference never saw with children (mc, db, mq) has none",
    # requested attributes (`oracle.check_attributes`, against the reference's statistics)
    "E_HIGH_LATENCY": "the root call finishes at or above the service's 90th percentile latency",
    "E_MISSING_CALL": "every requested (source, destination, type) call appears",
    "E_NO_UNCOMMON_CALL": "at least one call appears that is in under 10% of the service's real "
    "graphs",
    # one layer
    "E_LAYER_STRUCTURE": "layers nest into one tree (one layer per subgraph block)",
    "E_COND_MISSING": "a layer states all its conditions",
    "E_COND_NUM_EDGES": "num_edges >= 1",
    "E_COND_DEPTH": "remaining_depth <= num_edges - 1",
    "E_COND_CURRENT_EDGES": "num_current_edges leaves room for remaining_depth levels below",
    "E_COND_SUBGRAPHS": "num_subgraphs fits the calls and the edges left",
    "E_COND_WINDOW": "0 <= start_communication_at <= latency",
    "E_EDGE_COUNT": "a layer has exactly num_current_edges calls",
    "E_ID_CONTINUITY": "call ids are consecutive from start_edge_id",
    "E_START_BOUND": "every start >= start_communication_at",
    "E_FINISH_BOUND": "every finish <= latency",
    "E_SUBGRAPH_UNEXPECTED": "no subgraph block when remaining_depth is 0 or no edges remain",
    "E_SUBGRAPH_COUNT": "a layer has exactly num_subgraphs subgraph blocks",
    "E_SUBGRAPH_EDGE": "a subgraph block refers to a call of its layer",
    "E_SUBGRAPH_ORDER": "subgraph blocks refer to distinct calls in increasing order",
    "E_SUBGRAPH_BUDGET": "subgraph blocks share exactly num_edges - num_current_edges",
    "E_CHILD_SERVICE": "a child layer keeps the service",
    "E_CHILD_START_NODE": "a child layer's start_node is its call's destination",
    "E_CHILD_CALLER": "a child layer's caller is this layer's start_node",
    "E_CHILD_START_EDGE_ID": "a child layer's ids start at 1",
    "E_CHILD_DEPTH": "a child layer's remaining_depth is below this layer's",
    "E_DEPTH_NOT_REACHED": "at least one child layer has remaining_depth exactly one less",
    "E_CHILD_INFEASIBLE": "a child layer's conditions can be met",
    "E_CHILD_START": "a child window starts within its call",
    "E_CHILD_LATENCY": "a child layer's latency <= its call's finish",
    "E_SCRATCH": "the scratch pad's arithmetic is right",
    # semantic rules of decoding (reported by the decoder's rules, not by `check`)
    "E_SEMANTIC_REACH": "a subgraph block expands a call whose known calls go deep enough",
}
