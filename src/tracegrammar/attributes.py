"""Requested attributes, planned before any model is touched.

`plan_request(constraints, reference)` turns `high_latency`, `include_calls` and
`uncommon_call` into an `AttributePlan`: the least root latency (the service's 90th percentile in
the reference set) and a tree of planned calls rooted at the root call, each required call joined
to the root by the shortest chain of calls the semantic rules allow (the service's calls, backing
off per caller to every service's as `reference.CallScope` does). The decoder forces the planned
calls into the first slots of their layers (`rules.LayerPlan`), and the numeric rules keep room
for them, so every constrained graph has them. A request no plan can meet raises
`ConstraintError` (a ValueError) naming the field and the value. Torch-free.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .constraints import Constraints
from .errors import ConstraintError
from .reference import UNCOMMON_SHARE, Call, CallScope, Reference
from .rules import LayerPlan, PlannedCall, feasible_shape, plan_min_edges
from .types import USER


@dataclass(frozen=True)
class AttributePlan:
    """What the decoder must force for one request (see the module docstring)."""

    service: str
    min_latency: int = 0
    root: PlannedCall | None = None
    #: the calls the plan makes sure of (the requested ones and the uncommon one it picked)
    required: tuple[Call, ...] = ()
    #: other plans that meet the request equally (other uncommon calls), tried in order when
    #: this one does not fit a drawn shape
    alternatives: tuple[AttributePlan, ...] = ()

    @property
    def empty(self) -> bool:
        return self.root is None and not self.min_latency

    def layer(self, prefix: str | None) -> LayerPlan | None:
        """The plan of the layer that expands call `prefix` (None: the root layer)."""
        if prefix is None:
            if self.root is None and not self.min_latency:
                return None
            calls = (self.root,) if self.root is not None else ()
            return LayerPlan(calls, self.min_latency)
        node = self._node(prefix)
        return LayerPlan(node.below) if node is not None and node.below else None

    def _node(self, rpc_id: str) -> PlannedCall | None:
        parts = rpc_id.split(".")
        if parts[0] != "0" or self.root is None:
            return None
        node = self.root
        for part in parts[1:]:
            k = int(part) - 1
            if not 0 <= k < len(node.below):
                return None
            node = node.below[k]
        return node

    def min_edges(self, depth: int, scope: CallScope | None) -> int | None:
        """The fewest calls a graph of `depth` levels needs to hold the plan (None: none)."""
        if self.root is None:
            return 1 if depth >= 1 else None
        if depth == 1:
            return 1 if not self.root.below else None
        below = plan_min_edges(self.root, depth - 2, scope)
        return None if below is None else below + 1

    def fits(self, num_edges: int, depth: int, scope: CallScope | None) -> bool:
        least = self.min_edges(depth, scope)
        return feasible_shape(num_edges, depth) and least is not None and least <= num_edges

    def choose(
        self, c: Constraints, num_edges: int, depth: int, scope: CallScope | None
    ) -> tuple[AttributePlan, int, int]:
        """The first of this plan and its alternatives that holds the drawn shape as it is, else
        the first that holds it moved (`fit_shape`)."""
        options = [self, *self.alternatives]
        for plan in options:
            if plan.root is None or plan.fits(num_edges, depth, scope):
                return plan, num_edges, depth
        for plan in options:
            try:
                return plan, *plan.fit_shape(c, num_edges, depth, scope)
            except ConstraintError:
                continue
        return self, *self.fit_shape(c, num_edges, depth, scope)

    def fit_shape(
        self, c: Constraints, num_edges: int, depth: int, scope: CallScope | None
    ) -> tuple[int, int]:
        """The drawn (num_edges, depth) of a request, moved as little as needed to hold the plan
        (the user's own values are kept: `plan_request` checked that they can)."""
        if self.root is None or self.fits(num_edges, depth, scope):
            return num_edges, depth
        depths = [depth] if c.depth is not None else _nearest(depth, _MAX_DEPTH)
        for d in depths:
            least = self.min_edges(d, scope)
            if least is None:
                continue
            n = num_edges if c.num_edges is not None else max(num_edges, least, d)
            n = 1 if d == 1 and c.num_edges is None else n
            if self.fits(n, d, scope):
                return n, d
        raise ConstraintError(
            f"the planned calls {_calls(self.required)} do not fit num_edges={num_edges}, "
            f"depth={depth}",
            "include_calls",
        )


_MAX_DEPTH = 64


def _nearest(depth: int, top: int) -> list[int]:
    return sorted(range(1, top + 1), key=lambda d: (abs(d - depth), d))


def _calls(calls: Sequence[Call]) -> str:
    return " ".join(",".join(c) for c in calls)


def plan_request(c: Constraints, reference: Reference | None) -> AttributePlan:
    """The plan of one request's attributes (an empty plan when none is requested). Raises
    ConstraintError naming the field and the value when no graph can meet them."""
    if not c.has_attributes:
        return AttributePlan(c.service)
    if reference is None or not reference.has_attribute_stats:
        field = "high_latency" if c.high_latency else "include_calls"
        field = "uncommon_call" if c.uncommon_call and not c.include_calls else field
        raise ConstraintError(
            f"{field}: the reference set has no per-service statistics (rebuild it with "
            f"scripts/rebuild_reference.py)",
            field,
        )
    scope = reference.scope(c.service)
    min_latency = 0
    if c.high_latency:
        p90 = reference.latency_p90(c.service)
        if p90 is None:
            raise ConstraintError(
                f"high_latency: service {c.service} has no graphs in the reference set", "service"
            )
        if c.latency is not None and p90 > c.latency:
            raise ConstraintError(
                f"latency={c.latency} is below {c.service}'s 90th percentile ({p90} ms) that "
                f"high_latency asks for",
                "latency",
            )
        min_latency = p90
    chains: list[tuple[Call, list[Call]]] = []
    for call in c.include_calls:
        chain = _chain(scope, call)
        if chain is None:
            raise ConstraintError(
                f"include_calls: call {','.join(call)} is never seen for {c.service} under the "
                f"semantic rules (not from {call[0]} in its graphs, nor in any service's, or "
                f"{call[0]} is never reached from the root)",
                "include_calls",
            )
        chains.append((call, chain))
    chains = _common_root(scope, chains)
    plan = _plan(c.service, min_latency, chains)
    _check_shape(c, plan, scope, "include_calls", [call for call, _ in chains])
    uncommon = reference.uncommon_calls(c.service, UNCOMMON_SHARE)
    if c.uncommon_call and not any(call in uncommon for call in c.include_calls):
        plan = _with_uncommon(c, reference, scope, plan, chains)
    return plan


def _with_uncommon(
    c: Constraints,
    reference: Reference,
    scope: CallScope,
    plan: AttributePlan,
    chains: list[tuple[Call, list[Call]]],
) -> AttributePlan:
    uncommon = reference.uncommon_calls(c.service, UNCOMMON_SHARE)
    if not uncommon:
        raise ConstraintError(
            f"uncommon_call: no call of {c.service} is in under {UNCOMMON_SHARE:.0%} of its "
            f"{reference.service_graphs(c.service)} graphs in the reference set",
            "uncommon_call",
        )
    options = []
    for call in uncommon:
        chain = _chain(scope, call)
        if chain is not None:  # the most common of the uncommon calls, on the shortest chain
            options.append((len(chain), -reference.call_share(c.service, call), call, chain))
    fitting = []
    for *_, call, chain in sorted(options):
        candidate = _plan(c.service, plan.min_latency, [*chains, (call, chain)])
        if _shape_ok(c, candidate, scope):
            fitting.append(candidate)
    if fitting:
        return replace(fitting[0], alternatives=tuple(fitting[1:]))
    raise ConstraintError(
        f"uncommon_call: none of {c.service}'s {len(uncommon)} uncommon calls fits "
        f"num_edges={c.num_edges}, depth={c.depth} under the semantic rules",
        "uncommon_call",
    )


def _common_root(
    scope: CallScope, chains: list[tuple[Call, list[Call]]]
) -> list[tuple[Call, list[Call]]]:
    """The chains, all from one root call if they can be (the one with the fewest calls in
    all): a graph has one root call."""
    roots = {chain[0] for _, chain in chains}
    if len(roots) <= 1:
        return chains
    best: list[tuple[Call, list[Call]]] | None = None
    for d, kinds in (scope.calls_from(USER) or {}).items():
        for kind in kinds:
            root = (USER, d, kind)
            found = [(call, _chain(scope, call, root)) for call, _ in chains]
            if any(chain is None for _, chain in found):
                continue
            options = [(call, chain) for call, chain in found if chain is not None]
            if best is None or sum(map(len, (ch for _, ch in options))) < sum(
                map(len, (ch for _, ch in best))
            ):
                best = options
    return best if best is not None else chains


def _chain(scope: CallScope, call: Call, root: Call | None = None) -> list[Call] | None:
    """The shortest chain of allowed calls from USER (through `root` when given) whose last call
    is `call`: every call but the last is of a type that can have children. None when there is
    none."""
    src, dst, kind = call
    if kind not in (scope.calls_from(src) or {}).get(dst, ()):
        return None
    if src == USER:
        return [call] if root is None or root == call else None
    if root is not None:
        if root[2] in scope.leaf_types:
            return None
        if root[1] == src:
            return [root, call]
    seen = {USER}
    start: list[Call] = [] if root is None else [root]
    node0 = USER if root is None else root[1]
    seen.add(node0)
    queue: deque[tuple[str, list[Call]]] = deque([(node0, start)])
    while queue:
        node, path = queue.popleft()
        for d, kinds in (scope.calls_from(node) or {}).items():
            usable = [k for k in kinds if k not in scope.leaf_types]
            if not usable or d in seen:
                continue
            step = [*path, (node, d, usable[0])]
            if d == src:
                return [*step, call]
            seen.add(d)
            queue.append((d, step))
    return None


def _plan(service: str, min_latency: int, chains: list[tuple[Call, list[Call]]]) -> AttributePlan:
    """Merge the chains into one tree of planned calls (shared prefixes once)."""
    tree: dict[tuple[str, str], dict] = {}
    for _, chain in chains:
        level = tree
        for _, d, k in chain:
            level = level.setdefault((d, k), {})
    if not tree:
        return AttributePlan(service, min_latency)
    if len(tree) > 1:  # two different root calls cannot both be the root
        (d1, _), (d2, _) = list(tree)[:2]
        raise ConstraintError(
            f"include_calls: the requested calls need two different root calls (USER to {d1} "
            f"and to {d2})",
            "include_calls",
        )

    def build(key: tuple[str, str], below: dict) -> PlannedCall:
        kids = [build(k, v) for k, v in below.items()]
        kids.sort(key=lambda p: not p.expands)  # calls with planned calls below first (stable)
        return PlannedCall(key[0], key[1], tuple(kids))

    ((key, below),) = tree.items()
    return AttributePlan(service, min_latency, build(key, below), tuple(c for c, _ in chains))


def _shape_ok(c: Constraints, plan: AttributePlan, scope: CallScope) -> bool:
    try:
        _check_shape(c, plan, scope, "uncommon_call", list(plan.required))
    except ConstraintError:
        return False
    return True


def _check_shape(
    c: Constraints, plan: AttributePlan, scope: CallScope, field: str, calls: list[Call]
) -> None:
    """The requested shape (the set parts of it) can hold the plan."""
    if plan.root is None:
        return
    what = f"{field}: call {_calls(calls)}"
    levels = plan.root.levels + 1
    if c.depth is not None and c.depth < levels:
        raise ConstraintError(f"{what} needs depth >= {levels}, got depth={c.depth}", field)
    if c.num_edges is not None and c.num_edges < plan.root.size:
        raise ConstraintError(
            f"{what} needs num_edges >= {plan.root.size}, got num_edges={c.num_edges}", field
        )
    if c.num_edges is not None and c.depth is not None:
        if not plan.fits(c.num_edges, c.depth, scope):
            raise ConstraintError(
                f"{what} does not fit num_edges={c.num_edges}, depth={c.depth} under the "
                f"semantic rules",
                field,
            )
    elif c.num_edges is not None:
        if not any(plan.fits(c.num_edges, d, scope) for d in range(1, c.num_edges + 1)):
            raise ConstraintError(
                f"{what} does not fit num_edges={c.num_edges} at any depth", field
            )
    elif c.depth is not None and plan.min_edges(c.depth, scope) is None:
        raise ConstraintError(f"{what} does not fit depth={c.depth}", field)
