"""Workloads over time, the coarse level of coarse-to-fine generation (first paper): a time
window's graph contexts, one per trace (arrival, service, num_edges, depth, latency).

- `WindowRequest`: what a user asks for (start and end in epoch seconds, the number of traces,
  service ids that must appear), checked by `rules.window_problem` before any model is touched;
- `WindowContext`: one trace's context; its arrival is integer ms from the window's start;
- the text task (grammars/context.lark): `render_window_prompt`, `render_window_output`,
  `parse_window` (strict, through the grammar) and `read_window_output` (lenient: what a freely
  writing model produced, for compliance counts);
- `window_violations`: which of the request's rules a window of contexts breaks;
- `window_samples`: training samples from real windows of timestamped traces, and
  `window_data_report`: how much real window data there is.

Torch-free.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lark.exceptions import LarkError

from .constraints import SERVICE_RE, normalise_service
from .context_prior import DEFAULT_PRIOR, PRIOR_MODES
from .encode import ParseError
from .errors import ConstraintError
from .grammar import parser
from .rules import (
    MAX_CONTEXT_LATENCY,
    feasible_shape,
    missing_services,
    window_length_ms,
    window_problem,
)
from .types import CallGraph

#: How many required ids a training prompt names at most (a random subset of the window's).
MAX_TRAIN_INCLUDE = 3


@dataclass(frozen=True, slots=True)
class WindowRequest:
    """A window of traffic: `num_traces` traces arriving in [start, end) (epoch seconds), each of
    the `include` services among them. Raises ConstraintError (a ValueError; `.field` names
    `end`, `num_traces` or `include`) for a request no window can meet; `known` (the services a
    context may name) is checked by `check_known`."""

    start: float
    end: float
    num_traces: int
    include: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConstraintError(
                    f"{name} must be a time in epoch seconds, got {value!r}", name
                )
        include = tuple(dict.fromkeys(normalise_service(str(s)) for s in self.include))
        bad = [s for s in include if not SERVICE_RE.fullmatch(s)]
        if bad:
            raise ConstraintError(
                f"include: service id must look like S_<digits>, got {bad[0]!r}", "include"
            )
        object.__setattr__(self, "include", include)
        self.check_known(None)

    def check_known(self, known: Collection[str] | None) -> None:
        problem = window_problem(self.start, self.end, self.num_traces, self.include, known)
        if problem is not None:
            raise ConstraintError(problem[1], problem[0])

    @property
    def length_ms(self) -> int:
        return window_length_ms(self.start, self.end)


@dataclass(frozen=True, slots=True)
class WindowContext:
    """One trace of a window: it arrives `at` ms after the window's start."""

    at: int
    service: str
    num_edges: int
    depth: int
    latency: int

    def timestamp(self, start: float) -> float:
        """The arrival in epoch seconds."""
        return start + self.at / 1000


# ------------------------------------------------------------------------------------------------
# text
# ------------------------------------------------------------------------------------------------


def render_window_prompt(length_ms: int, num_traces: int, include: Sequence[str] = ()) -> str:
    tail = f" include:{','.join(include)}" if include else ""
    return f"<window length_ms:{length_ms} traces:{num_traces}{tail}>\n"


def render_context(c: WindowContext) -> str:
    return (
        f"(at:{c.at} service:{c.service} num_edges:{c.num_edges} depth:{c.depth} "
        f"latency:{c.latency})\n"
    )


def render_window_output(contexts: Iterable[WindowContext]) -> str:
    return "".join(render_context(c) for c in contexts) + "</window>\n"


def render_window(
    length_ms: int, contexts: Sequence[WindowContext], include: Sequence[str] = ()
) -> str:
    """Prompt and output: one training sample of the context task."""
    return render_window_prompt(length_ms, len(contexts), include) + render_window_output(contexts)


@dataclass(frozen=True)
class ParsedWindow:
    length_ms: int
    num_traces: int
    include: tuple[str, ...]
    contexts: tuple[WindowContext, ...]


def parse_window(text: str) -> ParsedWindow:
    """A whole sample (prompt and output), through the grammar; ParseError if it does not parse."""
    try:
        tree = parser("context").parse(text)
    except LarkError as exc:
        raise ParseError(f"not a window of contexts: {str(exc).splitlines()[0][:200]}") from None
    prompt, output = tree.children
    numbers = [int(t) for t in prompt.scan_values(lambda t: t.type == "INT")]
    include = tuple(str(t) for t in prompt.scan_values(lambda t: t.type == "SERVICE"))
    contexts = tuple(_context(line.children) for line in output.find_data("context_line"))
    return ParsedWindow(numbers[0], numbers[1], include, contexts)


def parse_window_output(text: str) -> tuple[WindowContext, ...]:
    """A model's output (the lines and `</window>`), through the grammar."""
    try:
        tree = parser("context", "window_output").parse(text)
    except LarkError as exc:
        raise ParseError(f"not a window output: {str(exc).splitlines()[0][:200]}") from None
    return tuple(_context(line.children) for line in tree.find_data("context_line"))


def _context(values: Sequence[Any]) -> WindowContext:
    at, service, num, depth, latency = (str(v) for v in values)
    return WindowContext(int(at), service, int(num), int(depth), int(latency))


_LINE = re.compile(r"\(at:(\d+) service:(S_\d+) num_edges:(\d+) depth:(\d+) latency:(\d+)\)")


def read_window_output(text: str) -> tuple[list[WindowContext], bool]:
    """Leniently, what a freely writing model wrote: every well-formed context line up to
    `</window>` (or the end), and whether the whole text was exactly such lines then
    `</window>`."""
    body, closed, _ = text.partition("</window>")
    lines = body.split("\n")
    out, clean = [], bool(closed)
    for line in lines:
        if not line:
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            clean = False
            continue
        at, svc, num, depth, latency = match.groups()
        out.append(WindowContext(int(at), svc, int(num), int(depth), int(latency)))
    return out, clean


# ------------------------------------------------------------------------------------------------
# compliance
# ------------------------------------------------------------------------------------------------

#: The rules a window of contexts must meet, in the order `window_violations` reports them.
WINDOW_RULES = ("format", "count", "window", "order", "include", "service", "shape", "latency")


def window_violations(
    request: WindowRequest,
    contexts: Sequence[WindowContext],
    known: Collection[str] | None = None,
    *,
    well_formed: bool = True,
) -> list[str]:
    """The rules (`WINDOW_RULES`) that `contexts` break for `request`: empty when it meets them
    all. The papers' context compliance is count, window and include together."""
    bad = []
    if not well_formed:
        bad.append("format")
    if len(contexts) != request.num_traces:
        bad.append("count")
    if any(not 0 <= c.at < request.length_ms for c in contexts):
        bad.append("window")
    if any(b.at < a.at for a, b in itertools.pairwise(contexts)):
        bad.append("order")
    if missing_services(request.include, (c.service for c in contexts)):
        bad.append("include")
    if known is not None and any(c.service not in known for c in contexts):
        bad.append("service")
    if any(not feasible_shape(c.num_edges, c.depth) for c in contexts):
        bad.append("shape")
    if any(not 0 <= c.latency <= MAX_CONTEXT_LATENCY for c in contexts):
        bad.append("latency")
    return bad


# ------------------------------------------------------------------------------------------------
# real windows
# ------------------------------------------------------------------------------------------------


def stamped(graphs: Iterable[CallGraph]) -> list[CallGraph]:
    """The graphs that carry an arrival time, sorted by it."""
    out = [g for g in graphs if getattr(g, "timestamp", None) is not None]
    return sorted(out, key=lambda g: g.timestamp)  # type: ignore[attr-defined]


def contexts_of(graphs: Sequence[CallGraph], start: float) -> list[WindowContext]:
    """The real contexts of timestamped graphs (sorted by arrival) in a window from `start`."""
    return [
        WindowContext(
            max(0, round((g.timestamp - start) * 1000)),  # type: ignore[attr-defined]
            g.service,
            g.num_edges,
            g.depth,
            g.latency,
        )
        for g in graphs
    ]


@dataclass(frozen=True)
class RealWindow:
    start: float
    end: float
    contexts: tuple[WindowContext, ...]


def real_windows(
    graphs: Iterable[CallGraph], length_s: float, *, min_traces: int = 1
) -> list[RealWindow]:
    """Consecutive windows of `length_s` seconds over the timestamped graphs, from the first
    arrival; those holding at least `min_traces` traces."""
    ordered = stamped(graphs)
    if not ordered:
        return []
    first = ordered[0].timestamp  # type: ignore[attr-defined]
    buckets: dict[int, list[CallGraph]] = {}
    for g in ordered:
        k = int((g.timestamp - first) // length_s)  # type: ignore[attr-defined]
        buckets.setdefault(k, []).append(g)
    out = []
    for k, members in sorted(buckets.items()):
        if len(members) < min_traces:
            continue
        start = first + k * length_s
        out.append(RealWindow(start, start + length_s, tuple(contexts_of(members, start))))
    return out


def window_samples(
    graphs: Iterable[CallGraph],
    length_s: float,
    *,
    seed: int = 0,
    max_include: int = MAX_TRAIN_INCLUDE,
    max_traces: int | None = None,
) -> list[str]:
    """Training samples of the context task: one per real window of `length_s` seconds (its
    first `max_traces` traces when given), the prompt naming a random subset (up to
    `max_include`) of the window's services as required ids, as users ask."""
    rng = random.Random(seed)
    out = []
    for w in real_windows(graphs, length_s):
        contexts = w.contexts[:max_traces] if max_traces else w.contexts
        services = sorted({c.service for c in contexts})
        k = rng.randint(0, min(max_include, len(services)))
        include = sorted(rng.sample(services, k))
        out.append(render_window(window_length_ms(w.start, w.end), contexts, include))
    return out


@dataclass
class WindowDataReport:
    """How much real window data a set of graphs holds."""

    graphs: int = 0
    stamped: int = 0
    span_s: float = 0.0
    services: int = 0
    #: window length (s) -> (windows with any trace, median traces per window, max traces)
    windows: dict[float, tuple[int, float, int]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"{self.stamped} of {self.graphs} graphs carry an arrival time, over "
            f"{self.span_s:.1f} s, {self.services} services"
        ]
        for length, (n, median, most) in self.windows.items():
            out.append(
                f"windows of {length:g} s: {n} non-empty, median {median:g} traces, max {most}"
            )
        return out


def window_data_report(
    graphs: Iterable[CallGraph], lengths: Sequence[float] = (1.0, 10.0, 60.0)
) -> WindowDataReport:
    items = list(graphs)
    ordered = stamped(items)
    report = WindowDataReport(len(items), len(ordered))
    if not ordered:
        return report
    report.span_s = ordered[-1].timestamp - ordered[0].timestamp  # type: ignore[attr-defined]
    report.services = len({g.service for g in ordered})
    for length in lengths:
        sizes = sorted(len(w.contexts) for w in real_windows(ordered, length))
        report.windows[length] = (len(sizes), float(sizes[len(sizes) // 2]), sizes[-1])
    return report


# ------------------------------------------------------------------------------------------------
# the driver: contexts first, then every graph
# ------------------------------------------------------------------------------------------------

#: How a workload's contexts and graphs are written: the model under the constraints, or the
#: probabilistic baseline's counts.
WORKLOAD_METHODS = ("model", "baseline")


def as_epoch(value: float | str | Any, name: str) -> float:
    """Epoch seconds from a number, an ISO 8601 text or `now`, or a datetime (`times`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    from .times import parse_time

    return parse_time(value, name)


@dataclass
class Workload:
    """A generated window: its request, its contexts (arrival order), one graph per context
    (stamped with its arrival), and for the model method the window as written."""

    request: WindowRequest
    contexts: list[WindowContext]
    graphs: list[CallGraph]
    method: str
    seed: int
    window_text: str = ""
    stats: dict[str, float] = field(default_factory=dict)


def run_workload(
    start: float | str | Any,
    end: float | str | Any,
    num_traces: int,
    include: Sequence[str] = (),
    *,
    method: str = "model",
    seed: int | None = None,
    model: Any = None,
    temperature: float = 0.8,
    top_k: int = 50,
    reference: Any = None,
    data: Any = None,
    max_edges: int | None = None,
    progress: bool = False,
    prior: str = DEFAULT_PRIOR,
) -> Workload:
    """`generate_workload` with the contexts and what the run measured."""
    if method not in WORKLOAD_METHODS:
        raise ConstraintError(f"method must be one of {WORKLOAD_METHODS}, got {method!r}", "method")
    request = WindowRequest(
        as_epoch(start, "start"), as_epoch(end, "end"), num_traces, tuple(include)
    )
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    if prior not in PRIOR_MODES:
        raise ConstraintError(f"prior must be one of {PRIOR_MODES}, got {prior!r}", "prior")
    if method == "baseline":
        return _baseline_workload(request, data, seed)
    return _model_workload(
        request, seed, model, temperature, top_k, reference, max_edges, progress, prior
    )


def generate_workload(
    start: float | str | Any,
    end: float | str | Any,
    num_traces: int,
    include: Sequence[str] = (),
    *,
    method: str = "model",
    seed: int | None = None,
    model: Any = None,
    temperature: float = 0.8,
    top_k: int = 50,
    reference: Any = None,
    data: Any = None,
    max_edges: int | None = None,
    progress: bool = False,
    prior: str = DEFAULT_PRIOR,
) -> list[CallGraph]:
    """A window of traffic, coarse to fine: `num_traces` call graphs arriving in [start, end)
    (epoch seconds, ISO 8601 text or `now`), each service of `include` among them, in arrival
    order, each stamped with its arrival (`CallGraph.timestamp`).

    `method="model"`: the model writes the window's contexts (arrival, service, num_edges,
    depth, latency) under the context grammar and the window rules, the services drawn from the
    reference's service mix and the arrivals from a Poisson process filling the window
    (`decoding.context`, `context_prior`: the adapter was never trained on this task; `prior`:
    "data" by default, "product" for the model's logits times the prior, "off" for the model
    alone), then every graph is generated under the layer constraints, one `Constraints` per
    context (the context's latency is the graph's upper bound), in chunks of
    `distributed.CHUNK` seeded as `tracegrammar generate` seeds them (chunk k:
    `chunk_seed(seed, k)`), so `run_workload_distributed` on Ray actors gives the same graphs.
    Services come from the model's reference (the adapter's `reference.json`, or `reference`).
    `method="baseline"`: the probabilistic baseline fitted on `data` (a `ProbabilisticBaseline`
    or graphs) draws both.

    Raises ConstraintError (a ValueError naming the field: `start`, `end`, `num_traces`,
    `include`) before any model call for a window no workload can meet. Same seed, same
    workload."""
    return run_workload(
        start,
        end,
        num_traces,
        include,
        method=method,
        seed=seed,
        model=model,
        temperature=temperature,
        top_k=top_k,
        reference=reference,
        data=data,
        max_edges=max_edges,
        progress=progress,
        prior=prior,
    ).graphs


def graph_requests(contexts: Sequence[WindowContext]) -> list[Any]:
    """One `Constraints` per context: its service, num_edges and depth, its latency the graph's
    upper bound."""
    from .constraints import Constraints

    return [
        Constraints(c.service, num_edges=c.num_edges, depth=c.depth, latency=c.latency)
        for c in contexts
    ]


def arrival_offsets(graphs: Sequence[CallGraph], start: float) -> list[float]:
    """Each stamped graph's arrival in seconds after `start` (a window's start): what
    `exports.send.send_graphs(offsets=...)` keeps when it sends a workload."""
    out = []
    for g in graphs:
        if g.timestamp is None:
            raise ConstraintError(f"graph of {g.service} has no timestamp", "timestamp")
        out.append(g.timestamp - start)
    return out


def stamp_graph(graph: CallGraph, request: WindowRequest, context: WindowContext) -> CallGraph:
    """The graph stamped with the context's arrival in the request's window."""
    return dataclasses.replace(graph, timestamp=context.timestamp(request.start))


def _baseline_workload(request: WindowRequest, data: Any, seed: int) -> Workload:
    from .baseline import ProbabilisticBaseline

    if data is None:
        raise ConstraintError("method='baseline' needs data (graphs or a fitted baseline)", "data")
    base = data if isinstance(data, ProbabilisticBaseline) else ProbabilisticBaseline.fit(data)
    contexts = base.window_contexts(request, seed)
    graphs = []
    for i, (c, wanted) in enumerate(zip(contexts, graph_requests(contexts), strict=True)):
        graph = base.sample(wanted, 1, seed=seed * 1_000_003 + i)[0]
        graphs.append(stamp_graph(graph, request, c))
    return Workload(request, contexts, graphs, "baseline", seed)


def write_contexts(
    request: WindowRequest,
    lm: Any,
    *,
    temperature: float,
    top_k: int,
    seed: int,
    reference: Any,
    max_edges: int | None,
    prior: str = DEFAULT_PRIOR,
) -> tuple[list[WindowContext], str, Any]:
    """The model's contexts of one window (constrained), its text and what the decoding
    measured: the coarse step of every model workload, in one process or on Ray."""
    from .decoding.context import write_windows

    windows, stats = write_windows(
        [request],
        lm,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        reference=reference,
        max_edges=max_edges,
        prior=prior,
    )
    return list(windows[0].contexts), windows[0].text, stats


def _model_workload(
    request: WindowRequest,
    seed: int,
    model: Any,
    temperature: float,
    top_k: int,
    reference: Any,
    max_edges: int | None,
    progress: bool,
    prior: str,
) -> Workload:
    from .decoding.driver import generate
    from .decoding.models import resolve_model
    from .distributed.plan import CHUNK, chunk_seed

    lm = resolve_model(model)
    contexts, text, stats = write_contexts(
        request,
        lm,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        reference=reference,
        max_edges=max_edges,
        prior=prior,
    )
    wanted = graph_requests(contexts)
    graphs = []
    for k in range(0, len(wanted), CHUNK):
        graphs += generate(
            wanted[k : k + CHUNK],
            temperature=temperature,
            top_k=top_k,
            seed=chunk_seed(seed, k // CHUNK),
            model=lm,
            reference=reference,
            progress=progress,
        )
    stamped_graphs = [stamp_graph(g, request, c) for g, c in zip(graphs, contexts, strict=True)]
    measured = {"context_wall_s": stats.wall_s, "context_forward_passes": stats.forward_passes}
    return Workload(request, contexts, stamped_graphs, "model", seed, text, measured)
