"""The numeric rules of a layer, written once.

Both the Trace Oracle (checking a finished layer) and the decoder (masking digits while a layer is
being written) ask the same question: given the conditions and the fields written so far, which
values may the next field take? `field_rules` answers with a list of `Rule`s, each a stable error
code and the set of integers that rule allows; the oracle reports every rule a value breaks, the
decoder intersects them. Copied fields (service, start_node, caller of a subgraph block) are
answered by `copied_value`.

The sets are built so that there are no dead ends: any value they allow leaves the rest of the
layer, and every layer below it, completable (a subtree of remaining depth d needs at least d+1
edges; a layer cannot hand out more subgraph blocks than it has calls).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .types import CALL_TYPES, CONDITION_FIELDS, USER, LayerConditions

#: Larger than any time or count a layer can hold; stands for "no upper bound".
UNBOUNDED = 10**15

# Field names as the layer grammar writes them.
EDGE_INT_FIELDS = ("id", "start", "finish")
BLOCK_COPY_FIELDS = ("service", "start_node", "caller")
#: A subgraph block writes `edge`, then the next layer's conditions in their canonical order.
BLOCK_INT_FIELDS = ("edge", *(f for f in CONDITION_FIELDS if f not in BLOCK_COPY_FIELDS))


@dataclass(frozen=True, slots=True)
class IntSet:
    """A finite union of closed integer intervals, sorted and disjoint."""

    intervals: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def range(lo: int, hi: int) -> IntSet:
        return IntSet(((lo, hi),)) if lo <= hi else IntSet()

    @staticmethod
    def exactly(value: int) -> IntSet:
        return IntSet(((value, value),))

    @staticmethod
    def at_least(lo: int) -> IntSet:
        return IntSet.range(lo, UNBOUNDED)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and any(lo <= value <= hi for lo, hi in self.intervals)

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __and__(self, other: IntSet) -> IntSet:
        out = []
        for a_lo, a_hi in self.intervals:
            for b_lo, b_hi in other.intervals:
                lo, hi = max(a_lo, b_lo), min(a_hi, b_hi)
                if lo <= hi:
                    out.append((lo, hi))
        return IntSet._normalized(out)

    def __or__(self, other: IntSet) -> IntSet:
        return IntSet._normalized([*self.intervals, *other.intervals])

    @staticmethod
    def _normalized(parts: Iterable[tuple[int, int]]) -> IntSet:
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(parts):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return IntSet(tuple(merged))

    @property
    def min(self) -> int:
        return self.intervals[0][0]

    @property
    def max(self) -> int:
        return self.intervals[-1][1]

    def admits_prefix(self, digits: str) -> bool:
        """Can a number in this set be written starting with `digits` (no leading zeros)?"""
        if not digits:
            return bool(self)
        if digits == "0":
            return 0 in self
        if digits[0] == "0":
            return False
        value = int(digits)
        for lo, hi in self.intervals:
            scale = 1
            while value * scale <= hi:  # numbers that start with `digits`: [v*10^m, v*10^m+10^m-1]
                if value * scale + scale - 1 >= lo:
                    return True
                scale *= 10
        return False

    def __repr__(self) -> str:
        return "IntSet(" + ", ".join(f"{a}..{b}" for a, b in self.intervals) + ")"


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    allowed: IntSet
    what: str  # the rule in words, for error messages


def allowed(rules: Sequence[Rule]) -> IntSet:
    out = IntSet.range(0, UNBOUNDED)
    for rule in rules:
        out &= rule.allowed
    return out


# ------------------------------------------------------------------------------------------------
# conditions: is a layer (or a whole request) feasible at all?
# ------------------------------------------------------------------------------------------------


def feasible_shape(num_edges: int, depth: int) -> bool:
    """Whether a call graph of `num_edges` calls can have depth `depth`: a chain needs one call
    per level (depth <= num_edges), and depth 1 is the root call alone (depth 1 iff one call).
    The one statement of this rule: requests (`constraints.validate`), the baseline, the shape
    prior and the benchmark grid all ask it; at layer level it is `depth_range` and
    `current_edges_range` of the root layer (a test checks they agree)."""
    return 1 <= depth <= num_edges and (depth == 1) == (num_edges == 1)


def shape_problem(num_edges: int, depth: int) -> str | None:
    """Why `feasible_shape(num_edges, depth)` is false, in words; None when it is true."""
    if feasible_shape(num_edges, depth):
        return None
    if num_edges < 1 or depth < 1:
        return f"num_edges and depth must be >= 1, got num_edges={num_edges}, depth={depth}"
    if depth > num_edges:
        return f"depth={depth} needs at least {depth} edges, but num_edges={num_edges}"
    return f"depth=1 allows only the root call, but num_edges={num_edges}"


def nearest_feasible_depth(num_edges: int, depth: int) -> int:
    """The feasible depth for `num_edges` calls closest to `depth` (1 for one call, else clamped
    to 2..num_edges): how the baseline and the shape prior complete an open depth."""
    return 1 if num_edges == 1 else min(max(depth, 2), num_edges)


def depth_range(num_edges: int) -> IntSet:
    """remaining_depth for a subtree of `num_edges` edges: a chain needs d+1 edges."""
    return IntSet.range(0, num_edges - 1)


def current_edges_range(num_edges: int, remaining_depth: int) -> IntSet:
    """num_current_edges: all edges when nothing follows, else leave `remaining_depth` below."""
    if remaining_depth == 0:
        return IntSet.exactly(num_edges)
    return IntSet.range(1, num_edges - remaining_depth)


def subgraphs_range(num_edges: int, remaining_depth: int, current: int) -> IntSet:
    """num_subgraphs: one deep child needs `remaining_depth` edges, every other child one."""
    if remaining_depth == 0:
        return IntSet.exactly(0)
    return IntSet.range(1, min(current, num_edges - current - remaining_depth + 1))


def condition_rules(c: LayerConditions) -> list[tuple[str, Rule]]:
    """(field, rule) pairs that a layer's own conditions must meet."""
    pairs = [
        ("num_edges", Rule("E_COND_NUM_EDGES", IntSet.at_least(1), "num_edges >= 1")),
        (
            "remaining_depth",
            Rule("E_COND_DEPTH", depth_range(c.num_edges), "remaining_depth <= num_edges - 1"),
        ),
        (
            "num_current_edges",
            Rule(
                "E_COND_CURRENT_EDGES",
                current_edges_range(c.num_edges, c.remaining_depth),
                "num_current_edges leaves room for remaining_depth levels below",
            ),
        ),
        (
            "num_subgraphs",
            Rule(
                "E_COND_SUBGRAPHS",
                subgraphs_range(c.num_edges, c.remaining_depth, c.num_current_edges),
                "num_subgraphs fits the calls and the edges left",
            ),
        ),
        (
            "start_communication_at",
            Rule(
                "E_COND_WINDOW",
                IntSet.range(0, c.latency),
                "0 <= start_communication_at <= latency",
            ),
        ),
    ]
    return pairs


# ------------------------------------------------------------------------------------------------
# fields of a layer's output
# ------------------------------------------------------------------------------------------------


class CallRules(Protocol):
    """The semantic rules of one request (`tracegrammar.reference.CallScope`): which calls a
    caller may make (None: any), how many levels of calls can hang below a call to a
    microservice, and which call types never have children."""

    @property
    def leaf_types(self) -> frozenset[str]: ...

    def calls_from(self, source: str) -> Mapping[str, Collection[str]] | None: ...

    def reach(self, name: str) -> int: ...


@dataclass
class Draft:
    """What has been written of one layer's output: finished calls and subgraph blocks, plus the
    fields of the one being written. Values are ints or strings, keyed by grammar field name."""

    conditions: LayerConditions
    edges: list[dict[str, int | str]] = field(default_factory=list)
    blocks: list[dict[str, int | str]] = field(default_factory=list)
    #: The semantic rules (None: any name, any type, any depth).
    calls: CallRules | None = None
    #: Requested attributes planned for this layer (None: nothing planned).
    plan: LayerPlan | None = None

    def cap(self, edge: Mapping[str, int | str] | None) -> int:
        """Levels of calls possible below a written call (unbounded without semantic rules)."""
        if self.calls is None or edge is None:
            return UNBOUNDED
        kind, name = edge.get("type"), edge.get("dm")
        if kind in self.calls.leaf_types:
            return 0
        return self.calls.reach(name) if isinstance(name, str) else UNBOUNDED

    def capable_after(self, index: object, levels: int) -> int:
        """Calls after `index` that can carry `levels` more levels."""
        return sum(
            1
            for e in self.edges
            if isinstance(e.get("id"), int)
            and isinstance(index, int)
            and e["id"] > index
            and self.cap(e) >= levels
        )

    def edge_by_index(self, index: object) -> Mapping[str, int | str] | None:
        for e in self.edges:
            if e.get("id") == index:
                return e
        return None


def edge_rules(d: Draft, k: int, name: str) -> list[Rule]:
    """Rules for field `name` of the k-th call (0-based); `d.edges[k]` holds its earlier fields."""
    c = d.conditions
    if name == "id":
        return [
            Rule(
                "E_ID_CONTINUITY",
                IntSet.exactly(c.start_edge_id + k),
                "ids consecutive from start_edge_id",
            )
        ]
    if name == "start":
        rules = [
            Rule(
                "E_START_BOUND",
                IntSet.range(c.start_communication_at, UNBOUNDED),
                "start >= start_communication_at",
            ),
            Rule("E_FINISH_BOUND", IntSet.range(0, c.latency), "start <= finish <= latency"),
        ]
        if c.start_node == USER:  # the root layer: its one call is the trace's first
            rules.append(Rule("E_ROOT_START", IntSet.exactly(0), "the root call starts at 0"))
        return rules
    if name == "finish":
        start = d.edges[k].get("start")
        rules = [Rule("E_FINISH_BOUND", IntSet.range(0, c.latency), "finish <= latency")]
        if isinstance(start, int):
            rules.append(Rule("E_START_AFTER_FINISH", IntSet.at_least(start), "start <= finish"))
        if c.start_node == USER and d.plan is not None and d.plan.min_latency:
            rules.append(
                Rule(
                    "E_HIGH_LATENCY",
                    IntSet.at_least(d.plan.min_latency),
                    f"root finish >= {d.plan.min_latency} (the service's 90th percentile)",
                )
            )
        return rules
    raise KeyError(f"no numeric rule for call field {name!r}")


def block_rules(d: Draft, i: int, name: str) -> list[Rule]:
    """Rules for numeric field `name` of the i-th subgraph block (0-based)."""
    rules = _block_rules(d, i, name)
    planned = _planned_block(d, i)
    if planned is not None:
        extra = _planned_block_rule(d, i, name, planned)
        if extra is not None:
            rules.append(extra)
    return rules


def _block_rules(d: Draft, i: int, name: str) -> list[Rule]:
    c = d.conditions
    cur = d.blocks[i]
    before = d.blocks[:i]
    depth = c.remaining_depth
    blocks_after = c.num_subgraphs - i - 1
    if name == "edge":
        ids = (
            IntSet.range(c.start_edge_id, c.start_edge_id + len(d.edges) - 1)
            if d.edges
            else IntSet()
        )
        rules = [Rule("E_SUBGRAPH_EDGE", ids, "a subgraph block refers to a call of this layer")]
        prev = before[-1].get("edge") if before else None
        if isinstance(prev, int):
            rules.append(
                Rule(
                    "E_SUBGRAPH_ORDER", IntSet.at_least(prev + 1), "blocks in increasing call order"
                )
            )
        if d.calls is not None:
            rules.append(
                Rule("E_SEMANTIC_REACH", _expandable_edges(d, i), "the call has known calls below")
            )
        last = c.start_edge_id + c.num_current_edges - 1
        rules.append(
            Rule(
                "E_SUBGRAPH_COUNT",
                IntSet.range(0, last - max(blocks_after, 0)),
                "room for the blocks still to come",
            )
        )
        return rules
    if name == "start_edge_id":
        return [Rule("E_CHILD_START_EDGE_ID", IntSet.exactly(1), "child ids start at 1")]
    if name == "num_edges":
        return [Rule("E_SUBGRAPH_BUDGET", _budget(d, i), "blocks share exactly the edges left")]
    ne = cur.get("num_edges")
    if not isinstance(ne, int):
        return []
    if name == "remaining_depth":
        rules = [
            Rule(
                "E_CHILD_DEPTH", IntSet.range(0, depth - 1), "child remaining_depth < this layer's"
            ),
            Rule(
                "E_CHILD_INFEASIBLE",
                depth_range(ne),
                "child remaining_depth <= child num_edges - 1",
            ),
        ]
        if d.calls is not None:
            reach = d.cap(_block_edge(d, i)) - 1
            rules.append(
                Rule("E_SEMANTIC_REACH", IntSet.range(0, reach), "known calls go that deep")
            )
        if _must_be_deep(d, i, ne):
            rules.append(
                Rule(
                    "E_DEPTH_NOT_REACHED",
                    IntSet.exactly(depth - 1),
                    "one child has remaining_depth one less",
                )
            )
        return rules
    rd = cur.get("remaining_depth")
    if not isinstance(rd, int):
        return []
    if name == "num_current_edges":
        return [
            Rule("E_CHILD_INFEASIBLE", current_edges_range(ne, rd), "child calls leave room below")
        ]
    if name == "num_subgraphs":
        nce = cur.get("num_current_edges")
        if not isinstance(nce, int):
            return []
        return [Rule("E_CHILD_INFEASIBLE", subgraphs_range(ne, rd, nce), "child blocks fit")]
    parent = d.edge_by_index(cur.get("edge"))
    p_start, p_finish = (parent or {}).get("start"), (parent or {}).get("finish")
    if not isinstance(p_start, int) or not isinstance(p_finish, int):
        return []
    if name == "start_communication_at":
        return [
            Rule(
                "E_CHILD_START",
                IntSet.range(p_start, p_finish),
                "call start <= child window start <= call finish",
            )
        ]
    if name == "latency":
        rules = [Rule("E_CHILD_LATENCY", IntSet.range(0, p_finish), "child latency <= call finish")]
        s = cur.get("start_communication_at")
        if isinstance(s, int):
            rules.append(
                Rule(
                    "E_CHILD_INFEASIBLE", IntSet.at_least(s), "child latency >= child window start"
                )
            )
        return rules
    raise KeyError(f"no numeric rule for subgraph field {name!r}")


def copied_value(d: Draft, i: int, name: str) -> tuple[str, str] | None:
    """(error code, the only value allowed) for a copied field of the i-th block, if known."""
    c = d.conditions
    if name == "service":
        return ("E_CHILD_SERVICE", c.service)
    if name == "caller":
        return ("E_CHILD_CALLER", c.start_node)
    if name == "start_node":
        parent = d.edge_by_index(d.blocks[i].get("edge"))
        dm = (parent or {}).get("dm")
        return ("E_CHILD_START_NODE", dm) if isinstance(dm, str) else None
    raise KeyError(f"{name!r} is not a copied field")


def _left_before(d: Draft, i: int) -> int:
    c = d.conditions
    used = sum(int(b["num_edges"]) for b in d.blocks[:i] if isinstance(b.get("num_edges"), int))
    return c.num_edges - c.num_current_edges - used


def _needs_deep(d: Draft, i: int) -> bool:
    target = d.conditions.remaining_depth - 1
    return target >= 0 and not any(b.get("remaining_depth") == target for b in d.blocks[:i])


def _block_edge(d: Draft, i: int) -> Mapping[str, int | str] | None:
    return d.edge_by_index(d.blocks[i].get("edge"))


def _deep_options(d: Draft, i: int) -> tuple[bool, bool]:
    """(can this block be the deep one, can a later block be)."""
    depth = d.conditions.remaining_depth
    after = d.conditions.num_subgraphs - i - 1
    here = d.cap(_block_edge(d, i)) >= depth
    later = after >= 1 and d.capable_after(d.blocks[i].get("edge"), depth) >= 1
    return here, later


def _budget(d: Draft, i: int) -> IntSet:
    left = _left_before(d, i)
    depth = d.conditions.remaining_depth
    after = d.conditions.num_subgraphs - i - 1
    if after <= 0:
        out = IntSet.exactly(left) & IntSet.at_least(1)
        return out & IntSet.at_least(depth) if _needs_deep(d, i) else out
    out = IntSet.range(1, left - after)
    if _needs_deep(d, i):
        # either this block is the deep one, or enough is left for a later deep one
        here, later = _deep_options(d, i)
        options = IntSet()
        if here:
            options |= IntSet.at_least(depth)
        if later:
            options |= IntSet.range(1, left - (after - 1) - depth)
        out &= options
    return out


def _must_be_deep(d: Draft, i: int, ne: int) -> bool:
    if not _needs_deep(d, i):
        return False
    after = d.conditions.num_subgraphs - i - 1
    rest = _left_before(d, i) - ne
    return (
        after <= 0
        or rest < (after - 1) + d.conditions.remaining_depth
        or not _deep_options(d, i)[1]
    )


def _expandable_edges(d: Draft, i: int) -> IntSet:
    """Semantic option: calls a block may expand, leaving expandable calls for the blocks to come
    and a deep enough one for the deep block."""
    depth = d.conditions.remaining_depth
    after = d.conditions.num_subgraphs - i - 1
    need_deep = _needs_deep(d, i)
    out = IntSet()
    for e in d.edges:
        j = e.get("id")
        if not isinstance(j, int) or d.cap(e) < 1 or d.capable_after(j, 1) < after:
            continue
        if need_deep and d.cap(e) < depth and not (after >= 1 and d.capable_after(j, depth) >= 1):
            continue
        out |= IntSet.exactly(j)
    return out


def _need(d: Draft, k: int) -> int:
    """Semantic rules: levels of calls the k-th call must be able to carry so that the layer's
    subgraph blocks stay possible (0: none; 1: it may have to be expanded; more: it may have to
    be the deep one)."""
    c = d.conditions
    if c.num_subgraphs == 0:
        return 0
    prior = d.edges[:k]
    after = c.num_current_edges - k - 1
    need = 1 if sum(d.cap(e) >= 1 for e in prior) + after < c.num_subgraphs else 0
    if after == 0 and not any(d.cap(e) >= c.remaining_depth for e in prior):
        need = max(need, c.remaining_depth)
    return need


def _destination_cap(d: Draft, name: str, kinds: Collection[str]) -> int:
    assert d.calls is not None
    if all(k in d.calls.leaf_types for k in kinds):
        return 0
    return d.calls.reach(name)


def allowed_destinations(d: Draft, k: int) -> frozenset[str] | None:
    """Semantic rules: destinations the k-th call may have: ones the caller is known to call,
    expandable enough that the layer's subgraph blocks stay possible. None: unrestricted."""
    planned = _planned_edge(d, k)
    if d.calls is None:
        return None if planned is None else frozenset({planned.destination})
    known = d.calls.calls_from(d.conditions.start_node)
    if known is None:
        return None if planned is None else frozenset({planned.destination})
    need = _need(d, k)
    out = frozenset(m for m, kinds in known.items() if _destination_cap(d, m, kinds) >= need)
    return out if planned is None else out & {planned.destination}


def allowed_types(d: Draft, k: int) -> frozenset[str] | None:
    """Semantic rules: call types the k-th call may have. A call that may have to be expanded
    cannot be of a leaf type; None: unrestricted (the grammar still limits types to the calls
    seen from the caller)."""
    planned = _planned_edge(d, k)
    if d.calls is None or _need(d, k) == 0:
        return None if planned is None else frozenset({planned.type})
    known = d.calls.calls_from(d.conditions.start_node)
    name = d.edges[k].get("dm")
    kinds = known.get(name, ()) if known is not None and isinstance(name, str) else CALL_TYPES
    out = frozenset(t for t in kinds if t not in d.calls.leaf_types)
    return out if planned is None else out & {planned.type}


# ------------------------------------------------------------------------------------------------
# requested attributes: planned calls (tracegrammar.attributes plans them)
# ------------------------------------------------------------------------------------------------
#
# A plan forces a tree of calls, rooted at the root call: each planned call sits in the first
# slots of its layer (planned calls with planned calls below them first, so that the first
# subgraph blocks expand them in order), and the subgraph block of a planned call must leave its
# layer room for everything planned below it. `plan_layer_feasible` is the one statement of
# "room": the numeric rules below only keep values for which it stays true, so a plan never
# leads to a dead end, and the planner asks the same function before any model is touched.


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A call the plan puts in a layer, with the planned calls of the layer below it."""

    destination: str
    type: str
    below: tuple[PlannedCall, ...] = ()

    @property
    def expands(self) -> bool:
        return bool(self.below)

    @property
    def levels(self) -> int:
        """Levels of planned calls below this one (0: none)."""
        return 1 + max(b.levels for b in self.below) if self.below else 0

    @property
    def size(self) -> int:
        """Planned calls in this subtree, this one included."""
        return 1 + sum(b.size for b in self.below)


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """What the plan asks of one layer: its first calls, and (root layer) the least latency."""

    calls: tuple[PlannedCall, ...] = ()
    min_latency: int = 0


def planned_cap(calls: CallRules | None, call: PlannedCall) -> int:
    """Levels of calls that can hang below a planned call under the semantic rules."""
    if calls is None:
        return UNBOUNDED
    return 0 if call.type in calls.leaf_types else calls.reach(call.destination)


def plan_min_edges(call: PlannedCall, depth: int, calls: CallRules | None) -> int | None:
    """The fewest num_edges of the layer below `call` with remaining_depth `depth` that can hold
    everything planned below it; None when no num_edges can."""
    best: int | None = None
    for nce in range(max(1, len(call.below)), len(call.below) + 2):
        for nsg in range(_expanders(call), _expanders(call) + 2):
            need = _layer_need(call, depth, nce, nsg, calls)
            if need is not None and (best is None or nce + need < best):
                best = nce + need
    return best


def plan_layer_feasible(
    call: PlannedCall, ne: int, depth: int, nce: int, nsg: int, calls: CallRules | None
) -> bool:
    """Whether a layer below `call` with these conditions can hold what is planned below it."""
    if depth > ne - 1 or nce not in current_edges_range(ne, depth):
        return False
    if nsg not in subgraphs_range(ne, depth, nce):
        return False
    need = _layer_need(call, depth, nce, nsg, calls)
    return need is not None and ne - nce >= need


def _expanders(call: PlannedCall) -> int:
    return sum(1 for b in call.below if b.expands)


def _least_block(call: PlannedCall, below: int, calls: CallRules | None) -> int | None:
    """The fewest num_edges of the block expanding planned `call` with remaining_depth at most
    `below` (None: none fits)."""
    options = [plan_min_edges(call, r, calls) for r in range(max(call.levels - 1, 0), below + 1)]
    found = [o for o in options if o is not None]
    return min(found) if found else None


def _layer_need(
    call: PlannedCall, depth: int, nce: int, nsg: int, calls: CallRules | None
) -> int | None:
    """Edges the subgraph blocks of the layer below `call` need (None: impossible) with these
    conditions: each planned block its least, every other block one, plus the deep block's."""
    planned = call.below
    e, p = _expanders(call), len(planned)
    if nce < p or nsg < e or nsg > nce or depth < call.levels - 1:
        return None
    if depth >= planned_cap(calls, call):  # the calls below `call` cannot go that deep
        return None
    if depth == 0:
        return 0 if nsg == 0 and e == 0 else None
    least = [_least_block(b, depth - 1, calls) for b in planned[:e]]
    if any(m is None for m in least):
        return None
    mins = [m for m in least if m is not None]
    extra = nsg - e
    capable_planned = sum(1 for b in planned[e:] if planned_cap(calls, b) >= 1)
    if extra > capable_planned + (nce - p):
        return None
    deep: list[int] = []
    for b, m in zip(planned[:e], mins, strict=True):
        exact = plan_min_edges(b, depth - 1, calls) if planned_cap(calls, b) >= depth else None
        if exact is not None:
            deep.append(exact - m)
    if extra >= 1 and (nce > p or any(planned_cap(calls, b) >= depth for b in planned[e:])):
        deep.append(depth - 1)
    if not deep:
        return None
    return sum(mins) + extra + min(deep)


def _planned_edge(d: Draft, k: int) -> PlannedCall | None:
    if d.plan is None or k >= len(d.plan.calls):
        return None
    return d.plan.calls[k]


def _planned_block(d: Draft, i: int) -> PlannedCall | None:
    if d.plan is None:
        return None
    expanders = [b for b in d.plan.calls if b.expands]
    return expanders[i] if i < len(expanders) else None


def _rest_need(d: Draft, i: int, deep_done: bool) -> int | None:
    """Edges the blocks after the i-th need (None: they cannot be written)."""
    assert d.plan is not None
    c = d.conditions
    depth = c.remaining_depth
    expanders = [b for b in d.plan.calls if b.expands]
    e = len(expanders)
    total = 0
    deep: list[int] = []
    for k in range(i + 1, c.num_subgraphs):
        if k < e:
            m = _least_block(expanders[k], depth - 1, d.calls)
            if m is None:
                return None
            total += m
            if not deep_done and planned_cap(d.calls, expanders[k]) >= depth:
                exact = plan_min_edges(expanders[k], depth - 1, d.calls)
                if exact is not None:
                    deep.append(exact - m)
        else:
            total += 1
    if not deep_done and c.num_subgraphs > max(e, i + 1):
        first = max(e, i + 1)
        prev = d.blocks[first - 1].get("edge") if first - 1 < len(d.blocks) else None
        prev = prev if isinstance(prev, int) else c.start_edge_id + e - 1
        if d.capable_after(prev, depth) >= 1:
            deep.append(depth - 1)
    if not deep_done:
        if not deep:
            return None
        total += min(deep)
    return total


def _planned_block_rule(d: Draft, i: int, name: str, planned: PlannedCall) -> Rule | None:
    """What the i-th block (which expands the i-th planned call with calls planned below it)
    must keep room for."""
    c = d.conditions
    cur = d.blocks[i]
    code, what = "E_MISSING_CALL", "the block leaves room for the planned calls below it"
    if name == "edge":
        return Rule(code, IntSet.exactly(c.start_edge_id + i), "the block expands its planned call")
    ne = cur.get("num_edges")
    if name == "num_edges":
        left = _left_before(d, i)
        done = not _needs_deep(d, i)
        out = IntSet()
        least = _least_block(planned, c.remaining_depth - 1, d.calls)
        rest = _rest_need(d, i, done)
        if least is not None and rest is not None:
            out |= IntSet.range(least, left - rest)
        if not done and planned_cap(d.calls, planned) >= c.remaining_depth:
            deep = plan_min_edges(planned, c.remaining_depth - 1, d.calls)
            rest = _rest_need(d, i, True)
            if deep is not None and rest is not None:
                out |= IntSet.range(deep, left - rest)
        return Rule(code, out, what)
    if not isinstance(ne, int):
        return None
    if name == "remaining_depth":
        ok = IntSet()
        for r in range(0, min(ne, c.remaining_depth)):
            least = plan_min_edges(planned, r, d.calls)
            if least is not None and least <= ne:
                ok |= IntSet.exactly(r)
        if _needs_deep(d, i):
            rest = _rest_need(d, i, False)
            if rest is None or _left_before(d, i) - ne < rest:
                ok &= IntSet.exactly(c.remaining_depth - 1)
        return Rule(code, ok, what)
    rd = cur.get("remaining_depth")
    if not isinstance(rd, int):
        return None
    if name == "num_current_edges":
        ok = IntSet()
        for nce in range(1, ne + 1):
            if any(
                plan_layer_feasible(planned, ne, rd, nce, nsg, d.calls) for nsg in range(0, nce + 1)
            ):
                ok |= IntSet.exactly(nce)
        return Rule(code, ok, what)
    nce = cur.get("num_current_edges")
    if name == "num_subgraphs" and isinstance(nce, int):
        ok = IntSet()
        for nsg in range(0, nce + 1):
            if plan_layer_feasible(planned, ne, rd, nce, nsg, d.calls):
                ok |= IntSet.exactly(nsg)
        return Rule(code, ok, what)
    return None


# ------------------------------------------------------------------------------------------------
# windows of traffic: the graph contexts of a time window (coarse-to-fine, first paper)
# ------------------------------------------------------------------------------------------------
#
# A window request is (start, end) in epoch seconds, a number of traces and service ids that must
# appear. Its contexts are one line per trace: the arrival as integer ms from the window's start
# (start <= arrival < end), the service, num_edges, depth and latency. The rules below answer,
# line by line, which values each field may take so that any prefix they allow can still be
# completed: the count is fixed by the grammar, arrivals are non-decreasing and inside the window,
# the required ids not yet written always fit in the lines left, and every shape is feasible.

#: Upper bound on a context's latency (ms): ten minutes, far above any trace in the samples.
MAX_CONTEXT_LATENCY = 600_000


def window_length_ms(start: float, end: float) -> int:
    """How many integer ms offsets a window holds: offset t is inside when start + t/1000 < end."""
    span = (end - start) * 1000
    whole = int(span)
    return whole if whole == span else whole + 1


def window_problem(
    start: float,
    end: float,
    num_traces: int,
    include: Collection[str] = (),
    known: Collection[str] | None = None,
) -> tuple[str, str] | None:
    """(field, reason) when no window of contexts can meet the request; None when one can.
    Fields: `end`, `num_traces`, `include`. `known`: the services contexts may use (None: any)."""
    if end <= start:
        return "end", f"end must be after start, got start={start!r} and end={end!r} (epoch s)"
    if isinstance(num_traces, bool) or not isinstance(num_traces, int) or num_traces < 1:
        return "num_traces", f"num_traces must be an integer >= 1, got {num_traces!r}"
    wanted = list(dict.fromkeys(include))
    if len(wanted) > num_traces:
        return (
            "include",
            f"{len(wanted)} required service ids do not fit in num_traces={num_traces}",
        )
    if known is not None:
        unknown = [s for s in wanted if s not in known]
        if unknown:
            return "include", f"unknown service id {unknown[0]!r} (not in the known services)"
    return None


def arrival_range(previous: int, length_ms: int) -> IntSet:
    """The arrival offset (ms from the window start) of the next line: not before the previous
    line's, inside the window."""
    return IntSet.range(max(previous, 0), length_ms - 1)


def missing_services(include: Iterable[str], written: Iterable[str]) -> list[str]:
    """Required ids not written yet, in request order."""
    seen = set(written)
    return [s for s in dict.fromkeys(include) if s not in seen]


def context_services(
    include: Iterable[str],
    written: Iterable[str],
    lines_left: int,
    known: Collection[str] | None = None,
) -> frozenset[str] | None:
    """Services the next line may name, `lines_left` counting it: any known one while the
    required ids still fit in the lines after it, else only a missing required id. None: any."""
    missing = missing_services(include, written)
    if missing and len(missing) >= lines_left:
        return frozenset(missing)
    return frozenset(known) if known is not None else None


def context_edges_range(max_edges: int, max_depth: int = UNBOUNDED) -> IntSet:
    """num_edges of a context: one call when the service's graphs cannot go below the root."""
    return IntSet.exactly(1) if max_depth <= 1 else IntSet.range(1, max_edges)


def context_depth_range(num_edges: int, max_depth: int = UNBOUNDED) -> IntSet:
    """depth of a context with `num_edges` calls: the feasible ones (`feasible_shape`), at most
    `max_depth` (how deep the known calls go)."""
    if num_edges == 1:
        return IntSet.exactly(1)
    return IntSet.range(2, min(num_edges, max_depth))


def context_latency_range() -> IntSet:
    return IntSet.range(0, MAX_CONTEXT_LATENCY)
