"""`generate(constraints)`: recursive layer generation, every pending layer of every requested
graph batched into shared forward passes.

The parts, one job each:

- `sampling`: the frozen `GenerationConfig` and how one token is drawn;
- `writers`: what a layer may write next (constrained by the engine, or free);
- `scheduler`: waves of layers in shared forward passes;
- `assembly`: each requested graph put together from its layers, and its verdict;
- `models`: the model, its adapter's prior and reference, its engine.

This module wires them: requests -> shapes and semantic rules -> waves (root layers, then the
layers their subgraph blocks ask for, ...) -> graphs -> the oracle.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..attributes import AttributePlan, attribute_plans
from ..constraints import Constraints, expand_requests
from ..encode import (
    ParsedLayer,
    ParseError,
    render_conditions,
    render_graph_prompt,
    render_layer_prompt,
    render_request,
)
from ..errors import InputError
from ..layers import root_conditions
from ..reference import CallScope, Reference
from ..types import USER, CallGraph, LayerConditions
from .assembly import Generation, GraphAssembly, parse_layer
from .engine import Engine, EngineError
from .models import LoadedModel, default_adapter_dir, default_model, resolve_model
from .progress import GraphProgress
from .sampling import GenerationConfig, layer_rng
from .scheduler import GenerationStats, LayerJob, WaveScheduler
from .writers import (
    BLOCK_TOKENS,
    CALL_TOKENS,
    PROMPT_TOKENS,
    ROW_TOKENS,
    ConstrainedWriters,
    FreeWriters,
    Writers,
)

#: `progress=`: True for a bar (plain lines when stderr is not a terminal), or a function called
#: with the number of graphs finished so far, once per graph.
Progress = bool | Callable[[int], None]

__all__ = [
    "Generation",
    "GenerationConfig",
    "GenerationRun",
    "GenerationStats",
    "call_scopes",
    "complete_layers",
    "default_adapter_dir",
    "default_model",
    "engine_for",
    "generate",
    "run_generation",
]


@dataclass(frozen=True)
class GenerationRun:
    """Every requested graph (`Generation`s, in request order) and what the run measured."""

    generations: list[Generation]
    stats: GenerationStats


def engine_for(lm: LoadedModel) -> Engine:
    """The model's constraint engine (built once, kept by the loaded model)."""
    return lm.engine()


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------


def generate(
    constraints: Constraints | Sequence[Constraints],
    n: int = 1,
    *,
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int | None = None,
    model: LoadedModel | str | None = None,
    constrained: bool = True,
    fmt: str = "layer",
    reference: Reference | None = None,
    novel_calls: bool = False,
    progress: Progress = False,
) -> list[CallGraph]:
    """Generate `n` call graphs per constraint; the valid ones, in request order.

    Constrained (the default), every graph is valid and has exactly the requested num_edges and
    depth, and a latency within the bound, so all `n` per constraint come back. With
    `constrained=False` the same driver runs without the grammar and the rules, and only the
    graphs that came out valid are returned (`run_generation` has every output with the
    oracle's verdict).

    Semantic rules (constrained): every call is one the reference has seen from that caller in
    the request's service (or, where the service has none from that caller, in any service), and
    call types the reference never saw with children (mc, db, mq) get none. The reference is the
    one shipped with the model's adapter unless `reference` is given; `novel_calls=True` allows
    calls never seen (leaf types stay leaves). `fmt` is "layer", "layer_instruct" or "tabular"
    (the whole graph in one output; constrained, only its syntax and row count are enforced).
    Requested attributes (`high_latency`, `include_calls`, `uncommon_call`) are planned against
    the reference before any layer is written (`tracegrammar.attributes`; an impossible request
    raises ConstraintError naming the field) and, constrained, forced: every graph meets them.
    Same seed, same output.
    """
    config = GenerationConfig(temperature, top_k, seed, constrained, fmt, novel_calls)
    run = run_with(config, constraints, n, model=model, reference=reference, progress=progress)
    if constrained:
        bad = [g for g in run.generations if not g.valid]
        if bad:  # a broken promise, not a user error: say exactly what happened
            raise EngineError(f"constrained output failed the oracle: {bad[0].violations[:3]}")
    return [g.graph for g in run.generations if g.valid and g.graph is not None]


def run_generation(
    constraints: Constraints | Sequence[Constraints],
    n: int = 1,
    *,
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int | None = None,
    model: LoadedModel | str | None = None,
    constrained: bool = True,
    fmt: str = "layer",
    reference: Reference | None = None,
    novel_calls: bool = False,
    fast_forward: bool = True,
    progress: Progress = False,
    only: range | None = None,
) -> GenerationRun:
    """`generate` with every output kept (`Generation`: text, graph, the oracle's verdict) and
    what the run measured (forward passes, forced and sampled tokens, time).

    `only`: generate just the requests at these positions of the request list (a contiguous
    range); each comes out exactly as in the whole run, so a job can be split into shards and
    run on several machines (`tracegrammar.distributed`).

    `progress`: True for a bar per graph (plain lines when stderr is not a terminal), or a
    function called with the number of graphs finished so far as each graph finishes (1, 2, ...,
    each once), while the rest are still being written. The outputs are the same either way."""
    config = GenerationConfig(temperature, top_k, seed, constrained, fmt, novel_calls, fast_forward)
    return run_with(
        config, constraints, n, model=model, reference=reference, progress=progress, only=only
    )


def run_with(
    config: GenerationConfig,
    constraints: Constraints | Sequence[Constraints],
    n: int = 1,
    *,
    model: LoadedModel | str | Path | None = None,
    reference: Reference | None = None,
    progress: Progress = False,
    only: range | None = None,
) -> GenerationRun:
    """The run behind `generate` and `run_generation`, configured by one `GenerationConfig`.

    A graph's output depends only on (seed, its position in the request list, its request): its
    layers sample from generators seeded by (seed, position, rpc id), and its unset attributes
    come from one `random.Random(seed)` drawn in request order. So with `only`, the shapes are
    still drawn for every request (cheap, no model call) and the positions keep their numbers."""
    requests = expand_requests(constraints, n)  # the limits, before the model is loaded
    window = _window(only, len(requests))
    lm = resolve_model(model)
    config = config.seeded()
    assert config.seed is not None
    reference = reference if reference is not None else lm.reference()
    plans = attribute_plans(requests, reference, config.fmt)
    rng = random.Random(config.seed)
    prior = lm.prior()
    shapes = [prior.complete(c, rng) for c in requests]
    plans, shapes = fit_shapes(requests, plans, shapes, reference, config.seed)
    context = int(getattr(lm.model.config, "max_position_embeddings", 8192))
    for (num, _, _), c in zip(shapes, requests, strict=True):
        _check_context(c, num, config.fmt, context)
    semantic = config.constrained and config.fmt != "tabular"
    scopes = call_scopes(
        requests, [s[1] for s in shapes], reference if semantic else None, config.novel_calls
    )
    requests, shapes, scopes = requests[window], shapes[window], scopes[window]
    plans = plans[window]
    writers: Writers
    if config.constrained:
        writers = ConstrainedWriters(lm.engine(), config.fmt, scopes, plans)
    else:
        writers = FreeWriters(lm.tokenizer, lm.tokenizer.eos_token_id, config.fmt)
    run = _Run(lm, config, writers, None if config.novel_calls else reference, window.start)
    run.attribute_reference = reference
    run.plans = plans
    return run.run(requests, shapes, scopes, progress)


def fit_shapes(
    requests: Sequence[Constraints],
    plans: Sequence[AttributePlan | None],
    shapes: Sequence[tuple[int, int, int]],
    reference: Reference | None,
    seed: int,
) -> tuple[list[AttributePlan | None], list[tuple[int, int, int]]]:
    """Drawn shapes moved as little as needed to hold each plan (requests without attributes
    keep theirs): enough calls and levels for the planned calls, and for `high_latency` without
    a user bound, a latency bound drawn from [p90, 2 x p90] (seeded by the request's position,
    so other requests draw as before)."""
    out_plans: list[AttributePlan | None] = []
    out_shapes: list[tuple[int, int, int]] = []
    for i, (c, plan, shape) in enumerate(zip(requests, plans, shapes, strict=True)):
        if plan is None or reference is None:
            out_plans.append(plan)
            out_shapes.append(shape)
            continue
        num, depth, latency = shape
        plan, num, depth = plan.choose(c, num, depth, reference.scope(c.service))
        if plan.min_latency and c.latency is None and latency < plan.min_latency:
            draw = random.Random(f"high-latency/{seed}/{i}")
            latency = draw.randint(plan.min_latency, 2 * plan.min_latency)
        out_plans.append(plan)
        out_shapes.append((num, depth, latency))
    return out_plans, out_shapes


def complete_layers(
    conditions: Sequence[LayerConditions],
    model: LoadedModel | str | None = None,
    *,
    constrained: bool = True,
    fmt: str = "layer",
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int = 0,
) -> tuple[list[str], GenerationStats]:
    """Write one layer per set of conditions (all in one batch): the layer outputs as text.
    The prompt is the full canonical conditions, as for every non-root layer."""
    config = GenerationConfig(temperature, top_k, seed, constrained, fmt)
    lm = resolve_model(model)
    writers: Writers
    if constrained:
        writers = ConstrainedWriters(lm.engine(), fmt, [])
    else:
        writers = FreeWriters(lm.tokenizer, lm.tokenizer.eos_token_id, fmt)
    stats = GenerationStats()
    scheduler = WaveScheduler(lm, writers, temperature, top_k, config.fast_forward, stats)
    jobs = [
        LayerJob(i, f"L{i}", c, render_layer_prompt(c), layer_rng(seed, i, "layer"))
        for i, c in enumerate(conditions)
    ]
    start = time.perf_counter()
    texts = scheduler.decode(jobs)
    stats.wall_s = time.perf_counter() - start
    return texts, stats


def call_scopes(
    requests: Sequence[Constraints],
    depths: Sequence[int],
    reference: Reference | None,
    novel_calls: bool,
) -> list[CallScope | None]:
    """The semantic rules of each request: the calls seen in its service (backing off, per
    caller, to the calls seen in any service), or in any service when the service's own calls
    cannot reach the requested depth; with `novel_calls`, any call (leaf types stay leaves).
    None: no reference, no semantic rules."""
    if reference is None:
        return [None] * len(requests)
    if novel_calls:
        return [CallScope(None, leaves=reference.leaf_types)] * len(requests)
    scopes: list[CallScope | None] = []
    for c, depth in zip(requests, depths, strict=True):
        scope = reference.scope(c.service)
        if scope.reach(USER) < depth:
            scope = reference.scope(None)
        if scope.reach(USER) < depth:
            raise InputError(
                f"depth={depth} is deeper than any chain of calls in the reference set "
                f"(at most {scope.reach(USER)} below USER): the semantic rules cannot meet it "
                f"(novel_calls=True lifts them)"
            )
        scopes.append(scope)
    return scopes


def root_prompt(
    c: Constraints,
    cond: LayerConditions,
    fmt: str = "layer",
    plan: AttributePlan | None = None,
) -> str:
    """The first layer's prompt shows what the user asked for (training drops the rest); the
    instruction variant adds the requested attributes in words (`encode.render_request`)."""
    shown: dict[str, str | int] = {"service": c.service}
    if c.num_edges is not None:
        shown["num_edges"] = cond.num_edges
    if c.depth is not None:
        shown["remaining_depth"] = cond.remaining_depth
    if c.latency is not None:
        shown["latency"] = cond.latency
    prompt = render_conditions(shown)
    if fmt == "layer_instruct" and c.has_attributes:
        least = plan.min_latency if plan is not None and plan.min_latency else None
        prompt += render_request(least, c.include_calls, c.uncommon_call)
    return prompt


def tabular_prompt(c: Constraints) -> str:
    shape = ("service", "num_edges", "depth", "latency")
    return render_graph_prompt({k: v for k, v in c.as_dict().items() if k in shape})


def _window(only: range | None, total: int) -> slice:
    """The positions `only` names, as a slice of the request list (all of it when None)."""
    if only is None:
        return slice(0, total)
    if not isinstance(only, range) or only.step != 1 or not 0 <= only.start < only.stop <= total:
        raise InputError(
            f"only must be a non-empty range of positions within the {total} requests, got {only!r}"
        )
    return slice(only.start, only.stop)


def _check_context(c: Constraints, num_edges: int, fmt: str, context: int) -> None:
    if fmt == "tabular":
        need = PROMPT_TOKENS + ROW_TOKENS * num_edges
    else:  # worst case: every call in one layer, each with a block
        need = PROMPT_TOKENS + (CALL_TOKENS + BLOCK_TOKENS) * num_edges
    if need > context:
        raise InputError(
            f"num_edges={num_edges} needs about {need} tokens in one {fmt} output, more than "
            f"the model's context of {context}"
        )


# ------------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------------


class _Run:
    """Waves until no layer is pending, each finished layer added to its graph."""

    def __init__(
        self,
        lm: LoadedModel,
        config: GenerationConfig,
        writers: Writers,
        check_reference: Reference | None,
        first: int = 0,
    ) -> None:
        self.config = config
        #: the position in the whole request list of this run's first graph (see `only`)
        self.first = first
        self.stats = GenerationStats()
        self.scheduler = WaveScheduler(
            lm, writers, config.temperature, config.top_k, config.fast_forward, self.stats
        )
        #: the oracle's semantic check of finished graphs (None: calls are not checked)
        self.check_reference = check_reference
        #: the statistics requested attributes are judged by (None: not judged)
        self.attribute_reference: Reference | None = None
        #: each graph's plan of requested attributes (for the instruction root prompt)
        self.plans: Sequence[AttributePlan | None] = ()
        self.graphs: list[GraphAssembly] = []
        #: this wave's parsed layers (or their parse errors), by id of the job
        self._parsed: dict[int, ParsedLayer | ParseError] = {}
        self._report: Callable[[int], None] | None = None
        self._finished: list[bool] = []
        self._done = 0

    def run(
        self,
        requests: list[Constraints],
        shapes: list[tuple[int, int, int]],
        scopes: list[CallScope | None],
        progress: Progress,
    ) -> GenerationRun:
        start = time.perf_counter()
        self.graphs = [GraphAssembly(c, s[0]) for c, s in zip(requests, shapes, strict=True)]
        report, close = _reporter(progress, len(requests))
        self._report = report
        self._finished = [False] * len(requests)
        pairs = enumerate(zip(requests, shapes, strict=True))
        wave = [self._root_job(i, c, s) for i, (c, s) in pairs]
        try:
            while wave:
                watch = self._watch(wave) if report is not None else None
                texts = self.scheduler.decode(wave, watch)
                next_wave: list[LayerJob] = []
                for job, text in zip(wave, texts, strict=True):
                    graph = self.graphs[job.graph]
                    graph.texts.append(job.prompt + text)
                    if graph.failure is None:
                        next_wave.extend(self._absorb(job, text))
                self._parsed.clear()
                if report is not None:  # graphs whose layers asked for none after all
                    waiting = {job.graph for job in next_wave}
                    for g in sorted({job.graph for job in wave} - waiting):
                        self._graph_done(g)
                wave = next_wave
        finally:
            close()
        gens = [
            g.result(self.check_reference if scope is not None else None, self.attribute_reference)
            for g, scope in zip(self.graphs, scopes, strict=True)
        ]
        self.stats.graphs = len(requests)
        self.stats.wall_s = time.perf_counter() - start
        return GenerationRun(gens, self.stats)

    def _root_job(self, i: int, c: Constraints, shape: tuple[int, int, int]) -> LayerJob:
        num, depth, latency = shape
        cond = root_conditions(c.service, num, depth, latency)
        if self.config.fmt == "tabular":
            prompt = tabular_prompt(c)
        else:
            plan = self.plans[i] if i < len(self.plans) else None
            prompt = root_prompt(c, cond, self.config.fmt, plan)
        assert self.config.seed is not None
        return LayerJob(i, None, cond, prompt, layer_rng(self.config.seed, self.first + i, None))

    def _watch(self, wave: list[LayerJob]) -> Callable[[LayerJob, str], None]:
        """The scheduler's `on_finish` for a wave: a graph is finished as soon as its last
        layer of the wave is, if none of its layers asks for more. A layer that asks for more
        only in its text (the graph may still stop: a failure, a refused block) is settled at
        the end of the wave; a layer whose text asks for none never gets any, so no graph is
        reported early."""
        pending = Counter(job.graph for job in wave)
        more: set[int] = set()

        def finished(job: LayerJob, text: str) -> None:
            pending[job.graph] -= 1
            if self._asks_for_layers(job, text):
                more.add(job.graph)
            if not pending[job.graph] and job.graph not in more:
                self._graph_done(job.graph)

        return finished

    def _asks_for_layers(self, job: LayerJob, text: str) -> bool:
        if self.graphs[job.graph].failure is not None or self.config.fmt == "tabular":
            return False  # a failed graph takes no more layers; a tabular graph is one output
        try:
            return bool(self._parse(job, text).subgraphs)
        except ParseError:
            return False

    def _graph_done(self, g: int) -> None:
        if self._report is not None and not self._finished[g]:
            self._finished[g] = True
            self._done += 1
            self._report(self._done)

    def _parse(self, job: LayerJob, text: str) -> ParsedLayer:
        """`parse_layer` of a finished layer, once per layer (the progress watch and the
        assembly both need it)."""
        found = self._parsed.get(id(job))
        if found is None:
            try:
                found = parse_layer(text, self.config.fmt, strict=self.config.constrained)
            except ParseError as exc:
                found = exc
            self._parsed[id(job)] = found
        if isinstance(found, ParseError):
            raise found
        return found

    def _absorb(self, job: LayerJob, text: str) -> list[LayerJob]:
        """Add a finished layer to its graph; return the layers its blocks ask for."""
        graph, fmt = self.graphs[job.graph], self.config.fmt
        if fmt == "tabular":
            graph.add_tabular(text)
            return []
        try:
            parsed = self._parse(job, text)
        except ParseError as exc:
            graph.failure = str(exc)
            return []
        self.stats.layers += 1
        children = graph.add_layer(
            job.prefix, job.cond, parsed, fmt, check_rules=not self.config.constrained
        )
        assert self.config.seed is not None
        return [
            LayerJob(
                job.graph, rid, cond, render_layer_prompt(cond),
                layer_rng(self.config.seed, self.first + job.graph, rid),
            )
            for rid, cond in children
        ]  # fmt: skip


def _reporter(
    progress: Progress, total: int
) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """(the function to call with the number of finished graphs, or None; the closing step)."""
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return None, lambda: None
    bar = GraphProgress(total)
    return bar, bar.close
