"""A probabilistic call-graph generator: the papers' "Alibaba probabilistic model" baseline.

In the spirit of Luo et al.'s generator (children per depth, call types by depth), extended to
whole graphs with names and times so it can be scored by the same metrics as the LLM:

- shape: (num_edges, depth) per service (else global) when a request leaves them open; the tree
  is a depth-d spine plus the remaining calls attached under the depth cap, each to a parent
  chosen by the fitted children-count distribution of its depth. Exact size and depth hold by
  construction, not by rejection.
- names: the root call (destination, type) per service; a child's type given (depth, parent
  type, whether it has children), restricted to types its source was seen making; its
  destination given (service, source, type, whether it has children), backing off to (source,
  type), then type, then global; a call that must have children prefers destinations seen
  calling out. Backing off is what makes unseen (non-semantic) calls possible.
- times: a response time per call drawn from the training values of (destination, type), else
  type; children run one after another inside their parent (the real data is ~98% sequential),
  a parent lasts at least as long as its children; the whole graph is scaled down (integer,
  monotone, so nesting holds) when it exceeds the requested latency.

Every conditional distribution is a table of counts (`str` keys, `str` values) so the fitted
model is plain JSON. Sampling uses one `numpy.random.Generator(seed)`: same seed, same graphs.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .constraints import Constraints
from .errors import InputError
from .io import atomic_writer
from .rules import MAX_CONTEXT_LATENCY, feasible_shape, nearest_feasible_depth
from .types import CALL_TYPES, ROOT_ID, USER, CallGraph, Edge
from .workloads import WindowContext, WindowRequest

FORMAT = "tracegrammar.baseline/1"
ANY = "*"  # the key of a table's unconditioned (global) row
#: Continuation weight of a parent with c children: (#nodes with > c + PRIOR) / (#nodes >= c + 1).
PRIOR = 0.1
#: How much less likely a call that needs children goes to a microservice never seen calling out.
NON_CALLER_WEIGHT = 0.01

Table = dict[str, dict[str, int]]  # condition key -> value -> count
TABLES: tuple[str, ...] = ("shape", "entry", "children", "type", "dest", "caller", "rt")


def _key(*parts: object) -> str:
    return "|".join(str(p) for p in parts)


@dataclass
class _Node:
    """One call of a tree being sampled (mutable while the sampler fills it in)."""

    parent: int | None
    depth: int
    kids: list[int] = field(default_factory=list)
    source: str = ""
    destination: str = ""
    type: str = ""
    duration: int = 0
    start: int = 0


@dataclass(frozen=True)
class ProbabilisticBaseline:
    """Fitted count tables; build with `fit`, persist with `save`/`load`, draw with `sample`.

    Tables (row key -> value -> count; `inner` is 1 for a call that has children, else 0):

    - `shape`: service -> "num_edges,depth"; `entry`: service -> "destination|type" of the root;
    - `children`: depth -> number of children of a call at that depth;
    - `type`: "depth|parent type|inner", "depth|parent type", "depth" -> call type;
    - `dest`: "service|source|type|inner", "source|type|inner", "source|type", "type" ->
      destination; `caller`: `*` -> microservices seen calling out;
    - `rt`: "destination|type", "type" -> response time (ms).

    Every table also has the global row `*`. Lookups go from the most specific row to `*`.
    """

    tables: dict[str, Table]

    # ------------------------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, graphs: Iterable[CallGraph]) -> ProbabilisticBaseline:
        counts: dict[str, defaultdict[str, Counter[str]]] = {
            name: defaultdict(Counter) for name in TABLES
        }
        seen = 0
        arrivals: list[float] = []
        for g in graphs:
            if g.edges:
                seen += 1
                _count_graph(counts, g)
                if g.timestamp is not None:
                    arrivals.append(g.timestamp)
        if not seen:
            raise InputError("cannot fit the baseline on no call graphs")
        tables = {
            name: {k: dict(sorted(c.items())) for k, c in sorted(rows.items())}
            for name, rows in counts.items()
        }
        gaps = _arrival_gaps(arrivals)
        if gaps:  # optional: graphs without arrival times (TraceLLM text) have none
            tables["gap"] = {ANY: gaps}
        return cls(tables)

    def save(self, path: str | Path) -> None:
        with atomic_writer(path) as fh:
            json.dump({"format": FORMAT, "tables": self.tables}, fh)

    @classmethod
    def load(cls, path: str | Path) -> ProbabilisticBaseline:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8
            raise InputError(f"{path}: not a baseline model: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{path}: not a baseline model (format {FORMAT!r} expected)")
        tables = data.get("tables")
        missing = [t for t in TABLES if not isinstance(tables, dict) or t not in tables]
        if missing:
            raise InputError(f"{path}: baseline model lacks table {missing[0]!r}")
        return cls(tables)

    # ------------------------------------------------------------------------------- sampling

    def sample(self, constraints: Constraints, n: int, seed: int) -> list[CallGraph]:
        """`n` graphs that each pass `check(graph, constraints)`."""
        if n < 0:
            raise InputError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        return [self._one(constraints, rng) for _ in range(n)]

    # ---- windows of traffic (the coarse level of a workload)

    @property
    def services(self) -> frozenset[str]:
        """The services of the fitted graphs: the ones a window's contexts may name."""
        return frozenset(k for k in self.tables["shape"] if k != ANY)

    @property
    def service_mix(self) -> dict[str, int]:
        """Fitted graphs per service: what window services are drawn from, here and by the
        context decoder's data prior (`context_prior.ServicePrior`); equal to
        `context_prior.service_counts` of the fitted graphs."""
        return {s: sum(row.values()) for s, row in self.tables["shape"].items() if s != ANY}

    def window_contexts(self, request: WindowRequest, seed: int) -> list[WindowContext]:
        """The contexts of a window drawn from the data's counts: arrivals from the fitted gaps
        between arrivals (exponential, i.e. a Poisson process, without them), rescaled to fill
        the window; each required id at a random line, the other lines' services from the
        service mix; each line's shape from its service's shapes and its latency from the
        response times of its service's root calls. Meets `request` like the decoder does."""
        request.check_known(self.services)
        rng = np.random.default_rng(seed)
        n = request.num_traces
        mix = self.service_mix
        lines = [str(_choose(mix, rng)) for _ in range(n)]
        spots = rng.choice(n, size=len(request.include), replace=False)
        for spot, service in zip(spots, request.include, strict=True):
            lines[int(spot)] = service
        out = []
        for at, service in zip(self._arrivals(n, request.length_ms, rng), lines, strict=True):
            num, depth = self._shape(Constraints(service), rng)
            entry = self._draw("entry", [service], rng) or ""
            latency = int(self._draw("rt", [entry], rng) or 0) if "|" in entry else 0
            out.append(WindowContext(at, service, num, depth, min(latency, MAX_CONTEXT_LATENCY)))
        return out

    def _arrivals(self, n: int, length_ms: int, rng: np.random.Generator) -> list[int]:
        """n sorted ms offsets in [0, length_ms): n + 1 gaps (the first before the first arrival,
        the last after the final one) drawn from the `gap` table, scaled to span the window.
        With exponential gaps this is exactly n uniform arrivals, sorted."""
        row = self.tables.get("gap", {}).get(ANY)
        if row:
            values = np.array([float(v) for v in row])
            p = np.array([row[v] for v in row], float)
            gaps = values[rng.choice(len(values), size=n + 1, p=p / p.sum())] + 1e-3
        else:
            gaps = rng.exponential(size=n + 1)
        cuts = np.cumsum(gaps)[:-1] / gaps.sum() * length_ms
        return sorted(min(int(t), length_ms - 1) for t in cuts)

    def _one(self, c: Constraints, rng: np.random.Generator) -> CallGraph:
        num_edges, depth = self._shape(c, rng)
        nodes = self._tree(num_edges, depth, rng)
        self._name(nodes, c.service, rng)
        self._time(nodes, c.latency, rng)
        return CallGraph(c.service, tuple(_edges(nodes)))

    def _draw(
        self,
        table: str,
        keys: Sequence[str],
        rng: np.random.Generator,
        weight: dict[str, float] | None = None,
    ) -> str | None:
        """A value from the first row of `keys` (most specific first) that has any mass after
        reweighting by `weight` (missing values keep weight 1); the global row is the last resort.
        Without mass anywhere, retry without the reweighting; None if the table is empty."""
        rows = self.tables.get(table, {})
        for w in (weight, None) if weight else (None,):
            for key in (*keys, ANY):
                row = rows.get(key)
                if not row:
                    continue
                values = list(row)
                p = np.array([row[v] * (w.get(v, 1.0) if w else 1.0) for v in values], float)
                if p.sum() > 0:
                    return values[int(rng.choice(len(values), p=p / p.sum()))]
        return None

    # ---- shape

    def _shape(self, c: Constraints, rng: np.random.Generator) -> tuple[int, int]:
        """(num_edges, depth): as requested; an open one is drawn from the service's observed
        shapes that agree with the request, else the global ones, else from the global marginal
        of the open attribute restricted to values feasible with the requested one."""
        if c.num_edges is not None and c.depth is not None:
            return c.num_edges, c.depth
        rows = self.tables["shape"]
        for key in (c.service, ANY):
            fits = {v: k for v, k in rows.get(key, {}).items() if _fits(_pair(v), c)}
            if fits:
                return _pair(_choose(fits, rng))
        marginal: Counter[str] = Counter()
        for v, k in rows.get(ANY, {}).items():
            n, d = _pair(v)
            n, d = (c.num_edges, d) if c.num_edges is not None else (n, c.depth or d)
            if feasible_shape(n, d):
                marginal[f"{n},{d}"] += k
        if marginal:
            return _pair(_choose(dict(marginal), rng))
        n = c.num_edges if c.num_edges is not None else c.depth or 1
        return n, c.depth if c.depth is not None else nearest_feasible_depth(n, 2)

    def _tree(self, num_edges: int, depth: int, rng: np.random.Generator) -> list[_Node]:
        """A tree with exactly `num_edges` calls and depth `depth`: a spine down to `depth`, then
        each remaining call under a node shallower than `depth`, chosen with weight
        P(children > c | depth) / P(children >= c | depth) for a node with c children so far.

        Each parent is the one `rng.choice` would pick among the open nodes (shallower than
        `depth`, in creation order) with those weights, from the same one uniform draw, so the
        trees are those of the earlier quadratic builder; `_ParentPicker` finds it in O(log n)."""
        weights: dict[tuple[int, int], float] = {}

        def weight(node: _Node) -> float:
            key = (node.depth, len(node.kids))
            if key not in weights:
                weights[key] = self._continue(*key)
            return weights[key]

        nodes = [_Node(parent=None, depth=1)]
        for d in range(2, depth + 1):
            _attach(nodes, len(nodes) - 1, d)
        picker = _ParentPicker(num_edges)
        for i, node in enumerate(nodes):
            if node.depth < depth:
                picker.set(i, weight(node))
        for _ in range(num_edges - depth):
            parent = picker.draw(rng)
            _attach(nodes, parent, nodes[parent].depth + 1)
            picker.set(parent, weight(nodes[parent]))
            if nodes[-1].depth < depth:
                picker.set(len(nodes) - 1, weight(nodes[-1]))
        for node in nodes:  # the spine child need not be the first one
            node.kids = [node.kids[i] for i in rng.permutation(len(node.kids))]
        return nodes

    def _continue(self, depth: int, kids: int) -> float:
        rows = self.tables["children"]
        row = rows.get(str(depth)) or rows.get(ANY, {})
        at_least = sum(n for c, n in row.items() if int(c) >= kids)
        more = sum(n for c, n in row.items() if int(c) > kids)
        return (more + PRIOR) / (at_least + 1)

    # ---- names

    def _name(self, nodes: list[_Node], service: str, rng: np.random.Generator) -> None:
        entry = self._draw("entry", [service], rng) or "MS_0|http"
        root = nodes[0]
        root.source = USER
        root.destination, root.type = entry.split("|")
        for i in _preorder(nodes):
            parent = nodes[i]
            for k in parent.kids:
                self._name_child(service, parent, nodes[k], rng)

    def _name_child(
        self, service: str, parent: _Node, child: _Node, rng: np.random.Generator
    ) -> None:
        child.source = parent.destination
        made = self.tables["dest"]
        seen = {t: 1.0 if _key(child.source, t) in made else 0.0 for t in CALL_TYPES}
        inner = int(bool(child.kids))
        keys = [_key(child.depth, parent.type, inner), _key(child.depth, parent.type)]
        child.type = self._draw("type", [*keys, str(child.depth)], rng, seen) or "rpc"
        prefer = self._prefer_callers if inner else None
        keys = [
            _key(service, child.source, child.type, inner),
            _key(child.source, child.type, inner),
        ]
        keys += [_key(child.source, child.type), child.type]
        child.destination = self._draw("dest", keys, rng, prefer) or "MS_0"

    @cached_property
    def _prefer_callers(self) -> dict[str, float]:
        """Destination weights for a call that must have children: seen calling out, or not."""
        callers = self.tables["caller"].get(ANY, {})
        dests = self.tables["dest"].get(ANY, {})
        return {d: 1.0 if d in callers else NON_CALLER_WEIGHT for d in dests}

    # ---- times

    def _time(self, nodes: list[_Node], latency: int | None, rng: np.random.Generator) -> None:
        for i in reversed(_preorder(nodes)):  # children before parents
            node = nodes[i]
            drawn = self._draw("rt", [_key(node.destination, node.type), node.type], rng)
            node.duration = max(int(drawn or 0), sum(nodes[k].duration for k in node.kids))
        for i in _preorder(nodes):
            _lay_out_children(nodes, nodes[i], rng)
        root = nodes[0].duration
        if latency is not None and root > latency:
            for node in nodes:  # floor(t * latency / root) is monotone: nesting survives
                finish = node.start + node.duration
                node.start = node.start * latency // root
                node.duration = finish * latency // root - node.start


def _arrival_gaps(arrivals: list[float]) -> dict[str, int]:
    """Counts of the ms between consecutive arrivals (the `gap` table)."""
    ordered = sorted(arrivals)
    gaps = Counter(str(round((b - a) * 1000)) for a, b in itertools.pairwise(ordered))
    return dict(sorted(gaps.items()))


def _count_graph(counts: dict[str, defaultdict[str, Counter[str]]], g: CallGraph) -> None:
    def both(table: str, key: str, value: object) -> None:
        counts[table][key][str(value)] += 1
        counts[table][ANY][str(value)] += 1

    both("shape", g.service, f"{g.num_edges},{g.depth}")
    root = g.by_id.get(ROOT_ID, g.edges[0])
    both("entry", g.service, _key(root.destination, root.type))
    for e in g.edges:
        both("children", str(e.depth), len(g.children.get(e.rpc_id, ())))
        both("rt", _key(e.destination, e.type), e.finish - e.start)
        counts["rt"][e.type][str(e.finish - e.start)] += 1
        parent = g.by_id.get(e.parent_id) if e.parent_id is not None else None
        if parent is None:
            continue
        inner = int(e.rpc_id in g.children)
        both("type", _key(e.depth, parent.type, inner), e.type)
        counts["type"][_key(e.depth, parent.type)][e.type] += 1
        counts["type"][str(e.depth)][e.type] += 1
        both("dest", _key(g.service, e.source, e.type, inner), e.destination)
        counts["dest"][_key(e.source, e.type, inner)][e.destination] += 1
        counts["dest"][_key(e.source, e.type)][e.destination] += 1
        counts["dest"][e.type][e.destination] += 1
        counts["caller"][ANY][e.source] += 1


def _pair(value: str) -> tuple[int, int]:
    n, d = value.split(",")
    return int(n), int(d)


def _fits(pair: tuple[int, int], c: Constraints) -> bool:
    return (c.num_edges is None or pair[0] == c.num_edges) and (
        c.depth is None or pair[1] == c.depth
    )


def _choose(weights: dict[str, int], rng: np.random.Generator) -> str:
    values = list(weights)
    p = np.array([weights[v] for v in values], float)
    return values[int(rng.choice(len(values), p=p / p.sum()))]


class _ParentPicker:
    """Weighted draws among positions 0..capacity-1 (weight 0: not drawable) that give exactly
    what `rng.choice(len(w), p=w / w.sum())` gives over the positive weights `w` in position
    order, in O(log n) per draw and per weight change instead of O(n).

    numpy's `Generator.choice` with `p` (replace=True, one sample) takes `cdf = p.cumsum();
    cdf /= cdf[-1]`, draws one `random()` u and returns `cdf.searchsorted(u, side="right")`:
    the first position whose cumulative share exceeds u. Here the weights sit in the leaves of a
    binary sum tree; a descent finds the leaf whose interval holds `u * total`. Rounding makes
    both computations inexact, but by less than `slack * total` (a bound on the error of either
    sum, with a wide margin); when `u * total` lies farther than that from both ends of the
    leaf's interval, numpy's computation picks the same leaf. Otherwise (about once in 10^10
    draws) the draw is recomputed numpy's way from the same u. Either way the generator
    consumes exactly one double per draw, as `choice` does."""

    def __init__(self, capacity: int, slack: float | None = None) -> None:
        self.size = 1 << max(0, capacity - 1).bit_length()
        self.tree = [0.0] * (2 * self.size)
        self.used = 0  # positions 0..used-1 have been set
        #: how close (as a share of the total) to an interval's end a draw is recomputed
        self.slack = (capacity + 64) * 2.0**-48 if slack is None else slack
        self.recomputed = 0

    def set(self, position: int, weight: float) -> None:
        tree = self.tree
        i = self.size + position
        tree[i] = weight
        i >>= 1
        while i:  # sums recomputed from the children: no drift from repeated updates
            tree[i] = tree[2 * i] + tree[2 * i + 1]
            i >>= 1
        self.used = max(self.used, position + 1)

    def draw(self, rng: np.random.Generator) -> int:
        u = rng.random()
        tree, size = self.tree, self.size
        total = tree[1]
        target = u * total
        i, before = 1, 0.0
        while i < size:
            left = 2 * i
            if target < before + tree[left]:
                i = left
            else:
                before += tree[left]
                i = left + 1
        weight = tree[i]
        margin = self.slack * total
        if weight > 0 and target - before > margin and before + weight - target > margin:
            return i - size
        self.recomputed += 1
        return self._exact(u)

    def _exact(self, u: float) -> int:
        """numpy's `choice` computation on the positive weights, with the uniform `u`."""
        leaves = np.array(self.tree[self.size : self.size + self.used])
        positions = np.flatnonzero(leaves > 0)
        w = leaves[positions]
        cdf = (w / w.sum()).cumsum()
        cdf /= cdf[-1]
        return int(positions[int(cdf.searchsorted(u, side="right"))])


def _attach(nodes: list[_Node], parent: int, depth: int) -> None:
    nodes.append(_Node(parent=parent, depth=depth))
    nodes[parent].kids.append(len(nodes) - 1)


def _preorder(nodes: list[_Node]) -> list[int]:
    order, stack = [], [0]
    while stack:
        i = stack.pop()
        order.append(i)
        stack.extend(reversed(nodes[i].kids))
    return order


def _lay_out_children(nodes: list[_Node], node: _Node, rng: np.random.Generator) -> None:
    """Children one after another inside the parent, the parent's spare time split at random
    into the gaps before, between and after them."""
    if not node.kids:
        return
    busy = sum(nodes[k].duration for k in node.kids)
    spare = node.duration - busy
    gaps = rng.multinomial(spare, np.full(len(node.kids) + 1, 1 / (len(node.kids) + 1)))
    t = node.start
    for k, gap in zip(node.kids, gaps, strict=False):
        t += int(gap)
        nodes[k].start = t
        t += nodes[k].duration


def _edges(nodes: list[_Node]) -> list[Edge]:
    ids = {0: ROOT_ID}
    out = []
    for i in _preorder(nodes):
        node = nodes[i]
        for n, k in enumerate(node.kids, start=1):
            ids[k] = f"{ids[i]}.{n}"
        finish = node.start + node.duration
        out.append(Edge(ids[i], node.source, node.destination, node.type, node.start, finish))
    return out


def draw_window_contexts(
    data: ProbabilisticBaseline | Iterable[CallGraph],
    start: float,
    end: float,
    n: int,
    include: Sequence[str] = (),
    seed: int = 0,
) -> list[WindowContext]:
    """The contexts of `n` traces arriving in [start, end) (epoch seconds), each of `include`
    among them, drawn from the data's counts (a fitted baseline, or graphs to fit one on). Same
    contract as the context decoder: ConstraintError for a request no window can meet or an id
    the data does not know."""
    baseline = data if isinstance(data, ProbabilisticBaseline) else ProbabilisticBaseline.fit(data)
    return baseline.window_contexts(WindowRequest(start, end, n, tuple(include)), seed)
