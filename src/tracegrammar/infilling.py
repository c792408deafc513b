"""Infilling incomplete call graphs: fill the unknown values (None, `CallGraph.missing`) so that the
graph passes the oracle, never touching a known value.

A graph's unknown values are grouped into *parts*: a missing call (destination, type, start and
finish all unknown: the call between a parent layer and its child layer) or one missing field
(destination, type, start or finish). An unknown source is never a part of its own: it is the
parent call's destination (the root's is USER) and is filled with it.

Each part is filled in id order (a parent before its children; destination, type, start, finish),
from the values the rules allow there given everything known or filled so far (`allowed`):

- destination: what the semantic rules (`Reference`) saw called from the source (in this service,
  else in any; else any microservice seen), with a type that may have children when the call has
  children; those whose known child calls were also seen come first (when any);
- type: the call types seen for (source, destination), never a leaf type (mc, db, mq) for a call
  with children;
- start and finish: integers inside every known ancestor's interval and around every known
  descendant's (the root starts at 0; its finish has no upper bound and is capped at
  `root_finish_cap`).

A `Chooser` picks one of the allowed values: `FrequencyChooser` (the most common value in that
context in the training graphs) here, the model (`tracegrammar.decoding.infill`) that ranks the
allowed values by their likelihood and writes numbers digit by digit under the range. So every
filled graph is valid by construction; `infill` still checks it with the oracle and raises
`InfillError` (one line naming the graph and the reason) instead of returning an invalid graph.

The text the model reads is the `infill` grammar (grammars/infill.lark): `render_prompt`,
`render_answer`; `parse_answer` reads an answer back. Nothing here imports torch.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from lark.exceptions import LarkError

from .errors import InputError
from .grammar import parser
from .reference import Reference
from .types import CALL_TYPES, ROOT_ID, USER, CallGraph, Edge, rpc_parent

MISSING = "[MISSING]"
#: The fields one part may fill, in the order they are filled.
FIELDS: tuple[str, ...] = ("destination", "type", "start", "finish")
#: What a part is: one missing field, or a whole missing call.
TASKS: tuple[str, ...] = (*FIELDS, "call")
#: The most missing parts one graph may have.
MAX_PARTS = 8
#: Most destinations offered to a chooser (the most frequent allowed ones when there are more).
MAX_DESTINATIONS = 32
_KEYS = {"destination": "dm", "type": "type", "start": "start", "finish": "finish"}
#: Rows of a prompt's layer beyond which far siblings are left out (long layers).
MAX_LAYER_ROWS = 24


class InfillError(InputError):
    """A graph that cannot be infilled; the message names the graph and the reason."""


@dataclass(frozen=True, slots=True)
class Part:
    """One missing part: `kind` is a field name or `call`."""

    rpc_id: str
    kind: str

    @property
    def fields(self) -> tuple[str, ...]:
        return FIELDS if self.kind == "call" else (self.kind,)


@dataclass(frozen=True, slots=True)
class IntRange:
    """The integers lo..hi (inclusive)."""

    lo: int
    hi: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.lo <= value <= self.hi

    def clamp(self, value: int) -> int:
        return min(max(value, self.lo), self.hi)


Allowed = tuple[str, ...] | IntRange


class Chooser(Protocol):
    """Picks one allowed value for `field` of `part`. `graph` holds everything known or filled
    so far; `answer` the values already chosen for this part (a missing call's earlier fields)."""

    def choose(
        self, graph: CallGraph, part: Part, field: str, allowed: Allowed, answer: dict[str, object]
    ) -> str | int: ...


def describe(graph: CallGraph) -> str:
    """How errors name a graph: its service and its root call's destination and size."""
    root = graph.by_id.get(ROOT_ID)
    head = root.destination if root is not None else None
    return f"graph {graph.service} (root {head}, {graph.num_edges} calls)"


# ------------------------------------------------------------------------------------------------
# parts and masks
# ------------------------------------------------------------------------------------------------


def missing_parts(graph: CallGraph) -> list[Part]:
    """The missing parts of `graph`, in the order they are filled."""
    parts: list[Part] = []
    for e in graph.edges:
        unknown = [f for f in FIELDS if getattr(e, f) is None]
        if len(unknown) == len(FIELDS):
            parts.append(Part(e.rpc_id, "call"))
        else:
            parts.extend(Part(e.rpc_id, f) for f in unknown)
    return parts


def mask(graph: CallGraph, part: Part) -> CallGraph:
    """`graph` with `part` unknown: its fields None, and with the destination the children's
    source too (it is the same value)."""
    if part.rpc_id not in graph.by_id:
        raise InfillError(f"{describe(graph)}: no call {part.rpc_id} to mask")
    blank = dict.fromkeys(part.fields)
    edges = []
    for e in graph.edges:
        if e.rpc_id == part.rpc_id:
            e = replace(e, **blank)  # type: ignore[arg-type]
        elif "destination" in blank and e.parent_id == part.rpc_id:
            e = replace(e, source=None)  # type: ignore[arg-type]
        edges.append(e)
    return CallGraph(graph.service, tuple(edges))


def eligible(graph: CallGraph, kind: str) -> list[str]:
    """Calls whose `kind` can be masked for a benchmark or a training sample: any call for
    destination, type and finish; not the root for start (always 0); for a whole call, calls
    between two layers (with a parent and children)."""
    if kind == "start":
        return [e.rpc_id for e in graph.edges if e.rpc_id != ROOT_ID]
    if kind == "call":
        return [e.rpc_id for e in graph.edges if e.rpc_id != ROOT_ID and e.rpc_id in graph.children]
    return [e.rpc_id for e in graph.edges]


def truth(graph: CallGraph, part: Part) -> dict[str, str | int]:
    e = graph.by_id[part.rpc_id]
    return {f: getattr(e, f) for f in part.fields}


# ------------------------------------------------------------------------------------------------
# text: the infill grammar
# ------------------------------------------------------------------------------------------------


def _value(v: object) -> str:
    return MISSING if v is None else str(v)


def render_row(e: Edge) -> str:
    if all(getattr(e, f) is None for f in FIELDS):
        return f"(id:{e.rpc_id} {MISSING})\n"
    return (
        f"(id:{e.rpc_id} dm:{_value(e.destination)} type:{_value(e.type)} "
        f"start:{_value(e.start)} finish:{_value(e.finish)})\n"
    )


def context(graph: CallGraph, rpc_id: str) -> list[Edge]:
    """The rows a prompt shows: the call's parent, its layer (the parent's children, the nearest
    `MAX_LAYER_ROWS`), and its own children (the first `MAX_LAYER_ROWS`)."""
    parent = rpc_parent(rpc_id)
    rows: list[Edge] = []
    if parent is not None:
        rows.append(graph.by_id[parent])
        layer = list(graph.children.get(parent, ()))
        at = next(i for i, e in enumerate(layer) if e.rpc_id == rpc_id)
        lo = max(0, min(at - MAX_LAYER_ROWS // 2, len(layer) - MAX_LAYER_ROWS))
        rows += layer[lo : lo + MAX_LAYER_ROWS]
    else:
        rows.append(graph.by_id[rpc_id])
    rows += list(graph.children.get(rpc_id, ()))[:MAX_LAYER_ROWS]
    return rows


def render_prompt(graph: CallGraph, part: Part) -> str:
    rows = "".join(render_row(e) for e in context(graph, part.rpc_id))
    return (
        f"<infill service:{graph.service} at:{part.rpc_id} missing:{part.kind}>\n{rows}</infill>\n"
    )


def answer_key(field: str) -> str:
    """The key an answer writes a field under (`dm` for the destination)."""
    return _KEYS[field]


def render_answer(part: Part, values: Mapping[str, object]) -> str:
    return " ".join(f"{_KEYS[f]}:{values[f]}" for f in part.fields) + "\n"


def parse_answer(part: Part, text: str) -> dict[str, str | int]:
    """The values an answer gives (InfillError when the text is not an answer to `part`)."""
    try:
        tree = parser("infill", "infill_answer").parse(text)
    except LarkError as exc:
        raise InfillError(f"not an infill answer: {text[:60]!r} ({type(exc).__name__})") from None
    answer = tree.children[0].children[0]  # infill_answer -> p_answer -> answer_*
    kind = str(answer.data).removeprefix("answer_")
    if kind != part.kind:
        raise InfillError(f"an answer for {kind}, not {part.kind}: {text[:60]!r}")
    values = [str(t) for t in answer.children]
    out: dict[str, str | int] = {}
    for f, v in zip(part.fields, values, strict=True):
        out[f] = int(v) if f in ("start", "finish") else v
    return out


# ------------------------------------------------------------------------------------------------
# the allowed values
# ------------------------------------------------------------------------------------------------


def _source(graph: CallGraph, e: Edge) -> str | None:
    if e.rpc_id == ROOT_ID:
        return USER
    if e.source is not None:
        return e.source
    parent = graph.by_id.get(e.parent_id or "")
    return parent.destination if parent is not None else None


def _ancestors(graph: CallGraph, rpc_id: str) -> Iterable[Edge]:
    parent = rpc_parent(rpc_id)
    while parent is not None:
        e = graph.by_id.get(parent)
        if e is not None:
            yield e
        parent = rpc_parent(parent)


def _descendants(graph: CallGraph, rpc_id: str) -> Iterable[Edge]:
    stack = list(graph.children.get(rpc_id, ()))
    while stack:
        e = stack.pop()
        yield e
        stack.extend(graph.children.get(e.rpc_id, ()))


def _known(values: Iterable[int | None]) -> list[int]:
    return [v for v in values if v is not None]


def root_finish_cap(graph: CallGraph) -> int:
    """The largest finish time offered for the root (which has no upper bound)."""
    times = _known(t for e in graph.edges for t in (e.start, e.finish))
    return 2 * max(times, default=0) + 1000


def allowed(
    graph: CallGraph, rpc_id: str, field: str, reference: Reference, freq: Frequencies | None = None
) -> Allowed:
    """The values of `field` of call `rpc_id` that keep `graph` valid, given its known values
    (see the module docstring). An empty tuple or an empty range: no value can."""
    e = graph.by_id[rpc_id]
    has_children = rpc_id in graph.children
    leaves = reference.leaf_types
    if field in ("start", "finish"):
        up = list(_ancestors(graph, rpc_id))
        down = list(_descendants(graph, rpc_id))
        if field == "start":
            if rpc_id == ROOT_ID:
                return IntRange(0, 0 if e.finish is None or e.finish >= 0 else -1)
            lo = max(_known(a.start for a in up), default=0)
            highs = _known([e.finish, *(a.finish for a in up)])
            highs += _known(t for d in down for t in (d.start, d.finish))
            return IntRange(lo, min(highs) if highs else lo + root_finish_cap(graph))
        lows = _known([e.start, *(a.start for a in up)])
        lows += _known(t for d in down for t in (d.start, d.finish))
        lo = max(lows, default=0)
        highs = _known(a.finish for a in up)
        return IntRange(lo, min(highs) if highs else max(lo, root_finish_cap(graph)))
    source = _source(graph, e)
    if field == "type":
        if e.destination is None or source is None:
            kinds: Sequence[str] = CALL_TYPES
        else:
            kinds = _types_seen(reference, graph.service, source, e.destination) or CALL_TYPES
        return tuple(k for k in kinds if not (has_children and k in leaves))
    if field != "destination":
        raise InfillError(f"unknown field {field!r}")
    known_sources = {c.source for c in graph.children.get(rpc_id, ()) if c.source is not None}
    if known_sources:  # a child's known source is this destination
        return tuple(known_sources) if len(known_sources) == 1 else ()
    if source is None:
        return ()
    options = _destinations(reference, graph.service, source, e.type, has_children)
    kids = [c for c in graph.children.get(rpc_id, ()) if c.destination and c.type]
    if kids:  # prefer destinations that were seen making these child calls
        fits = tuple(
            d for d in options if all((d, c.destination, c.type) in reference for c in kids)
        )
        options = fits or options
    if len(options) > MAX_DESTINATIONS:
        counts = freq.destinations_from(source) if freq is not None else Counter()
        options = tuple(sorted(options, key=lambda d: (-counts[d], d))[:MAX_DESTINATIONS])
    return options


def _types_seen(
    reference: Reference, service: str, source: str, destination: str
) -> tuple[str, ...]:
    for svc in (service, None):
        kinds = reference.calls_from(source, svc).get(destination)
        if kinds:
            return kinds
    return ()


def _destinations(
    reference: Reference, service: str, source: str, kind: str | None, has_children: bool
) -> tuple[str, ...]:
    def fits(kinds: Iterable[str]) -> bool:
        ok = [k for k in kinds if kind is None or k == kind]
        return any(not (has_children and k in reference.leaf_types) for k in ok)

    for svc in (service, None):
        found = tuple(d for d, kinds in reference.calls_from(source, svc).items() if fits(kinds))
        if found:
            return found
    everyone: dict[str, set[str]] = defaultdict(set)
    for _, d, k in reference.calls:
        everyone[d].add(k)
    return tuple(sorted(d for d, kinds in everyone.items() if fits(kinds)))


# ------------------------------------------------------------------------------------------------
# the frequency baseline
# ------------------------------------------------------------------------------------------------


@dataclass
class Frequencies:
    """Counts of values in their context, from (training) graphs: the frequency baseline's
    knowledge, and the order of destinations when there are too many to offer."""

    dest: dict[tuple[str, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    dest_any: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    types: dict[tuple[str, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    types_any: Counter[str] = field(default_factory=Counter)
    offset: dict[tuple[str, str, str], Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    duration: dict[tuple[str, str, str], Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    offset_any: Counter[int] = field(default_factory=Counter)
    duration_any: Counter[int] = field(default_factory=Counter)

    @classmethod
    def from_graphs(cls, graphs: Iterable[CallGraph]) -> Frequencies:
        f = cls()
        for g in graphs:
            for e in g.edges:
                call = (e.source, e.destination, e.type)
                f.dest[(g.service, e.source)][e.destination] += 1
                f.dest_any[e.source][e.destination] += 1
                f.types[(e.source, e.destination)][e.type] += 1
                f.types_any[e.type] += 1
                parent = g.by_id.get(e.parent_id or "")
                if parent is not None:
                    f.offset[call][e.start - parent.start] += 1
                    f.offset_any[e.start - parent.start] += 1
                f.duration[call][e.finish - e.start] += 1
                f.duration_any[e.finish - e.start] += 1
        return f

    def destinations_from(self, source: str) -> Counter[str]:
        return self.dest_any.get(source, Counter())


def log_prior(
    graph: CallGraph, part: Part, field: str, options: Sequence[str], f: Frequencies
) -> list[float]:
    """log p(option) from the counts of `f` in the option's context, smoothed by backing off: for a
    destination p(d | service, source) with a Dirichlet prior (weight 1) on p(d | source), itself
    add-one smoothed over `options`; for a type p(t | source, destination) backing off to the
    overall type counts the same way. What the `combined` chooser adds to the model's scores."""
    e = graph.by_id[part.rpc_id]
    source = _source(graph, e) or ""
    if field == "destination":
        ctx = f.dest.get((graph.service, source), Counter())
        wide = f.dest_any.get(source, Counter())
    else:
        ctx = f.types.get((source, e.destination or ""), Counter())
        wide = f.types_any
    n_ctx = sum(ctx[o] for o in options)
    n_wide = sum(wide[o] for o in options)
    out = []
    for o in options:
        p_wide = (wide[o] + 1) / (n_wide + len(options))
        out.append(math.log((ctx[o] + p_wide) / (n_ctx + 1)))
    return out


def _most_common(options: Sequence[str], *counters: Counter[str]) -> str:
    for counts in counters:
        seen = [o for o in options if counts[o] > 0]
        if seen:
            return min(seen, key=lambda o: (-counts[o], o))
    return options[0]


def _mode(*counters: Counter[int]) -> int:
    for counts in counters:
        if counts:
            return min(counts, key=lambda v: (-counts[v], v))
    return 0


class FrequencyChooser:
    """The frequency baseline: the allowed value most common in that context in `freq`
    (destination given the service and source, type given source and destination, start as the
    parent's start plus the most common offset, finish as start plus the most common duration of
    that call), clamped into the allowed range."""

    def __init__(self, freq: Frequencies) -> None:
        self.freq = freq

    def choose(
        self, graph: CallGraph, part: Part, field: str, allowed: Allowed, answer: dict[str, object]
    ) -> str | int:
        f = self.freq
        e = graph.by_id[part.rpc_id]
        source = _source(graph, e) or ""
        if isinstance(allowed, tuple):
            if field == "destination":
                return _most_common(
                    allowed,
                    f.dest.get((graph.service, source), Counter()),
                    f.dest_any.get(source, Counter()),
                )
            return _most_common(
                allowed, f.types.get((source, e.destination or ""), Counter()), f.types_any
            )
        call = (source, e.destination or "", e.type or "")
        if field == "start":
            parent = graph.by_id.get(e.parent_id or "")
            base = parent.start if parent is not None and parent.start is not None else 0
            return allowed.clamp(base + _mode(f.offset.get(call, Counter()), f.offset_any))
        start = e.start if e.start is not None else allowed.lo
        return allowed.clamp(start + _mode(f.duration.get(call, Counter()), f.duration_any))


# ------------------------------------------------------------------------------------------------
# infilling
# ------------------------------------------------------------------------------------------------


def check_parts(graph: CallGraph, max_parts: int = MAX_PARTS) -> list[Part]:
    """The parts to fill, or InfillError when there are none or too many."""
    if not isinstance(graph, CallGraph):
        raise InfillError(f"not a CallGraph: {type(graph).__name__}")
    parts = missing_parts(graph)
    if not parts:
        unknown_sources = [rid for rid, f in graph.missing if f == "source"]
        if not unknown_sources:
            raise InfillError(f"{describe(graph)}: no missing field to infill")
    if len(parts) > max_parts:
        raise InfillError(
            f"{describe(graph)}: {len(parts)} missing parts, more than the {max_parts} supported"
        )
    return parts


def infill(
    graph: CallGraph,
    model: object = None,
    *,
    reference: Reference | None = None,
    chooser: Chooser | None = None,
    max_parts: int = MAX_PARTS,
) -> CallGraph:
    """`graph` with every unknown value filled so that it passes the oracle; known values are
    never changed. The values are chosen by `chooser`, by default the model (`model`: a
    LoadedModel, a base model folder, or None for the default model) ranking the allowed values;
    `reference` gives the semantic rules (default: the model's adapter's). Raises InfillError
    (naming the graph and the reason) when there is nothing to fill, more than `max_parts`
    parts, or no value can make the graph valid."""
    check_parts(graph, max_parts)  # before a model is loaded
    if chooser is None or reference is None:
        from .decoding.infill import ModelChooser
        from .decoding.models import resolve_model

        loaded = resolve_model(model)  # type: ignore[arg-type]
        if reference is None:
            reference = loaded.reference() or Reference()
        if chooser is None:
            chooser = ModelChooser(loaded)
    parts = check_feasible(graph, reference, max_parts)
    return fill(graph, parts, reference, chooser)


class FirstChooser:
    """The first allowed value (the lowest time): a dry run that tells, before any model is
    loaded, whether the known values leave any way to fill the graph."""

    def choose(
        self, graph: CallGraph, part: Part, field: str, allowed: Allowed, answer: dict[str, object]
    ) -> str | int:
        return allowed.lo if isinstance(allowed, IntRange) else allowed[0]


def check_feasible(
    graph: CallGraph, reference: Reference, max_parts: int = MAX_PARTS
) -> list[Part]:
    """The parts to fill, after a dry run (`FirstChooser`): InfillError, naming the graph and
    the reason, when nothing is missing, too much is, or no value can make the graph valid."""
    parts = check_parts(graph, max_parts)
    fill(graph, parts, reference, FirstChooser())
    return parts


def fill(
    graph: CallGraph, parts: Sequence[Part], reference: Reference, chooser: Chooser
) -> CallGraph:
    """Fill `parts` one field at a time (see `infill`); the result passes the oracle."""
    from .oracle import check

    current = with_sources(graph)
    for part in parts:
        answer: dict[str, object] = {}
        for name in part.fields:
            options = allowed(current, part.rpc_id, name, reference, getattr(chooser, "freq", None))
            if not options or (isinstance(options, IntRange) and options.lo > options.hi):
                raise InfillError(
                    f"{describe(graph)}: no {name} of call {part.rpc_id} can make it valid "
                    f"({_why(current, part.rpc_id, name, options)})"
                )
            value = chooser.choose(current, part, name, options, answer)
            if value not in options:  # a chooser bug must never reach a graph
                raise InfillError(f"{describe(graph)}: chooser gave {value!r}, not allowed")
            answer[name] = value
            current = with_sources(set_value(current, part.rpc_id, name, value))
    problems = check(current)
    leaf = [
        e.rpc_id
        for e in current.edges
        if e.type in reference.leaf_types and e.rpc_id in current.children
    ]
    if problems or leaf:
        what = str(problems[0]) if problems else f"leaf-type call {leaf[0]} has children"
        raise InfillError(f"{describe(graph)}: no infilling makes it valid: {what}")
    return current


def _why(graph: CallGraph, rpc_id: str, field: str, options: Allowed) -> str:
    if isinstance(options, IntRange):
        return f"known times leave {options.lo}..{options.hi}"
    if field == "destination":
        return "its children name different sources, or its source is unknown"
    return "every call type is ruled out"


def set_value(graph: CallGraph, rpc_id: str, field: str, value: object) -> CallGraph:
    edges = tuple(
        replace(e, **{field: value}) if e.rpc_id == rpc_id else e  # type: ignore[arg-type]
        for e in graph.edges
    )
    return CallGraph(graph.service, edges)


def with_sources(graph: CallGraph) -> CallGraph:
    """Unknown sources filled from the parent's destination (the root's: USER)."""
    if not any(e.source is None for e in graph.edges):
        return graph
    edges = []
    for e in graph.edges:
        if e.source is None:
            source = _source(graph, e)
            if source is not None:
                e = replace(e, source=source)
        edges.append(e)
    return CallGraph(graph.service, tuple(edges))


def changed_known(before: CallGraph, after: CallGraph) -> list[str]:
    """`rpc_id.field` of every known value of `before` that differs in `after` (should be none)."""
    out: list[str] = []
    if before.service != after.service or len(before.edges) != len(after.edges):
        return ["graph"]
    for a, b in zip(before.edges, after.edges, strict=True):
        if a.rpc_id != b.rpc_id:
            out.append(a.rpc_id)
            continue
        for name in ("source", *FIELDS):
            known = getattr(a, name)
            if known is not None and known != getattr(b, name):
                out.append(f"{a.rpc_id}.{name}")
    return out


# ------------------------------------------------------------------------------------------------
# training samples
# ------------------------------------------------------------------------------------------------


def sample_targets(graph: CallGraph, rng: random.Random) -> list[Part]:
    """One random maskable call per task (those the graph has)."""
    out = []
    for kind in TASKS:
        ids = eligible(graph, kind)
        if ids:
            out.append(Part(rng.choice(ids), kind))
    return out


def sample_text(graph: CallGraph, part: Part) -> tuple[str, str]:
    """(prompt, answer) of one infilling task made from a complete graph."""
    return render_prompt(mask(graph, part), part), render_answer(part, truth(graph, part))


def digits_fit(prefix: str, allowed: IntRange) -> bool:
    """Whether the digits `prefix` can still grow into a number in `allowed` (no leading zero)."""
    if not prefix or (len(prefix) > 1 and prefix[0] == "0"):
        return False
    if allowed.lo > allowed.hi or allowed.hi < 0:
        return False
    width = len(str(allowed.hi))
    p = int(prefix)
    if prefix == "0":
        return allowed.lo <= 0
    for length in range(len(prefix), width + 1):
        scale = 10 ** (length - len(prefix))
        lo, hi = p * scale, (p + 1) * scale - 1
        if lo <= allowed.hi and hi >= allowed.lo:
            return True
    return False
