"""Writing a window's graph contexts (the coarse level of coarse-to-fine generation) under the
context grammar (grammars/context.lark) and the window rules (tracegrammar.rules).

The model writes one line per trace after the prompt `<window length_ms:L traces:N include:...>`.
Constrained, llguidance holds it to the grammar with exactly N lines (`context_line ~ N`), and a
`ContextScanner` (the layer decoder's `FieldScanner`, for context lines) tells the engine's
numeric masks what each value may be: arrivals non-decreasing and inside the window, a
required id wherever the lines left only just hold the ones missing, services from the known set,
feasible shapes no deeper than the known calls go. So every window meets the request by
construction, at any temperature. Unconstrained, the model writes freely until `</window>`.

Constrained, the service and arrival fields are sampled from data priors
(tracegrammar.context_prior) by default (`prior="data"`): the adapter was never trained on this
task, and the base model alone writes one service on every line and every arrival at 0 (bench
workload, before the priors: 2 distinct services in 24 lines, service-mix JS 0.693 against the
baseline's 0.564; arrival EMD 0.431 against 0.061). So the services come from the data's
service mix (the reference's graphs per service, or the counts given, e.g. the baseline's
`service_mix`), the arrivals from a Poisson process filling the window, each digit drawn within
what the rules allow; the model writes num_edges, depth and latency. `prior="product"` samples
those two fields from the model's distribution (at the temperature) times the prior's,
`prior="off"` from the model alone; `bench workload` measures all three side by side
(bench/results/workload/summary.md). The mask is the same in every mode: compliance does not
depend on the prior.

The windows of a run are decoded together by the layer decoder's `WaveScheduler` (one wave, one
row per window).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..constraints import MAX_NUM_EDGES
from ..context_prior import (
    DEFAULT_PRIOR,
    END,
    PRIOR_MODES,
    ArrivalPrior,
    NameTrie,
    ServicePrior,
    digit_probs,
)
from ..encode import ParseError
from ..errors import ConstraintError, EngineError
from ..grammar import grammar_text
from ..layers import root_conditions
from ..reference import Reference
from ..rules import (
    UNBOUNDED,
    IntSet,
    arrival_range,
    context_depth_range,
    context_edges_range,
    context_latency_range,
    context_services,
)
from ..types import USER, LayerConditions
from ..workloads import (
    WindowContext,
    WindowRequest,
    parse_window_output,
    read_window_output,
    render_window_prompt,
    window_violations,
)
from .engine import Engine, LayerSession
from .models import LoadedModel, resolve_model
from .sampling import layer_rng
from .scanner import TERMINATORS, KeyValueReader
from .scheduler import GenerationStats, LayerJob, WaveScheduler
from .writers import (
    BLOCK_TOKENS,
    CALL_TOKENS,
    PROMPT_TOKENS,
    ConstrainedWriter,
    ConstrainedWriters,
    FreeWriter,
    FreeWriters,
    LayerWriter,
)

#: Tokens one context line takes at most in the default tokenizer (every digit one token; a line
#: with a 7-digit arrival, an 8-digit service and a 6-digit latency is 44), and the prompt's.
LINE_TOKENS, WINDOW_PROMPT_TOKENS = 48, 64
#: The scheduler's jobs carry layer conditions; a window has none (its writer ignores them).
WINDOW_JOB = root_conditions("S_0", 1, 1, 0)
CONTEXT_FIELDS = ("at", "service", "num_edges", "depth", "latency")


def max_traces(context: int) -> int:
    """How many context lines fit in a model context of `context` tokens."""
    return (context - WINDOW_PROMPT_TOKENS) // LINE_TOKENS


def max_graph_edges(context: int) -> int:
    """The largest num_edges the graph decoder accepts for a model context (`_check_context` of
    the driver: every call in one layer, each with a block), at most MAX_NUM_EDGES."""
    return min(MAX_NUM_EDGES, (context - PROMPT_TOKENS) // (CALL_TOKENS + BLOCK_TOKENS))


@dataclass(frozen=True)
class WindowRules:
    """What the contexts of one window may be: the request, the services a line may name (None:
    any), the largest num_edges and the deepest graph the known calls allow."""

    request: WindowRequest
    known: frozenset[str] | None = None
    max_edges: int = MAX_NUM_EDGES
    max_depth: int = UNBOUNDED


@dataclass
class ContextScanner(KeyValueReader):
    """Follows a window's output character by character (`scanner.KeyValueReader`) and sets
    `target`, what the value being written may be."""

    rules: WindowRules
    lines: list[dict[str, int | str]] = field(default_factory=list)
    key: str = ""
    field: str | None = None
    buf: str = ""
    target: IntSet | str | frozenset[str] | None = None

    def _open(self, name: str) -> None:
        if name == "at":
            self.lines.append({})
        self.field, self.buf = name, ""
        self.target = self._target(name)

    def _target(self, name: str) -> IntSet | frozenset[str] | None:
        r, line = self.rules, self.lines[-1] if self.lines else {}
        if name == "at":
            previous = self.lines[-2].get("at", 0) if len(self.lines) > 1 else 0
            return arrival_range(int(previous), r.request.length_ms)
        if name == "service":
            written = [str(x["service"]) for x in self.lines[:-1]]
            left = r.request.num_traces - len(self.lines) + 1
            return context_services(r.request.include, written, left, r.known)
        if name == "num_edges":
            return context_edges_range(r.max_edges, r.max_depth)
        if name == "depth":
            num = line.get("num_edges")
            return context_depth_range(num, r.max_depth) if isinstance(num, int) else None
        if name == "latency":
            return context_latency_range()
        return None

    def _commit(self) -> None:
        name, raw = self.field, self.buf
        assert name is not None
        if self.lines:
            self.lines[-1][name] = int(raw) if raw.isdigit() and name != "service" else raw
        self.field, self.buf, self.target = None, "", None


# ------------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------------


def context_grammar(num_traces: int) -> str:
    return grammar_text(
        "context", {"p_lines": f"context_line ~ {num_traces}"}, start="window_output"
    )


class FieldPriors:
    """The data priors of the service and arrival fields as token log-probabilities: for a
    scanner at one of them, {allowed token: log P(token)}; a token that ends the value (its
    first character ends a value) gets the prior's probability of the value ending there."""

    def __init__(self, table: Any, services: ServicePrior) -> None:
        self.table = table
        self.services = services
        self._tries: dict[frozenset[str], NameTrie] = {}
        self._arrivals: dict[tuple[Any, ...], dict[str, float]] = {}

    def piece_prob(self, scanner: ContextScanner, piece: str) -> float | None:
        """P(the current value continues with `piece`; END: it ends here); None where no prior
        applies (another field, or no mass on what the field may still be)."""
        target, buf = scanner.target, scanner.buf
        if scanner.field == "service" and isinstance(target, frozenset):
            trie = self._tries.get(target)
            if trie is None:
                trie = self._tries[target] = self.services.trie(target)
            return trie.piece_prob(buf, piece)
        if scanner.field == "at" and isinstance(target, IntSet) and target:
            left = scanner.rules.request.num_traces - len(scanner.lines) + 1
            key = (target, buf, left, scanner.rules.request.length_ms)
            probs = self._arrivals.get(key)
            if probs is None:
                if len(self._arrivals) > 65536:
                    self._arrivals.clear()
                prior = ArrivalPrior(target.min, scanner.rules.request.length_ms, left)
                probs = self._arrivals[key] = digit_probs(target, buf, prior)
            return probs.get(piece, 0.0) if probs else None
        return None

    def log_probs(self, scanner: ContextScanner, allowed: torch.Tensor) -> dict[int, float] | None:
        """{token: log P} for the allowed token ids (bool[vocab]); None: no prior here."""
        if scanner.field not in ("service", "at"):
            return None
        out = {}
        for tid in torch.nonzero(allowed).flatten().tolist():
            text = self.table.strings[tid]
            p = self.piece_prob(scanner, END if text[0] in TERMINATORS else text)
            if p is None:
                return None
            out[tid] = math.log(p) if p > 0 else -math.inf
        if not any(v > -math.inf for v in out.values()):
            return None  # the prior rules out every allowed token: leave it to the model
        return out


class ContextWriters(ConstrainedWriters):
    """Constrained writers of the windows of a run (`rules[graph]` for the job of window
    `graph`); batched like the layer writers. `prior` (PRIOR_MODES) says how the service and
    arrival fields are sampled, `services` the service mix it follows."""

    def __init__(
        self,
        engine: Engine,
        rules: Sequence[WindowRules],
        prior: str = DEFAULT_PRIOR,
        services: ServicePrior | None = None,
    ) -> None:
        super().__init__(engine, "layer", [])
        self.rules = rules
        self.prior = prior
        self.fields = FieldPriors(engine.table, services or ServicePrior({}))

    def adjust(
        self,
        writers: Sequence[LayerWriter],
        logits: torch.Tensor,
        masks: torch.Tensor,
        temperature: float,
    ) -> torch.Tensor:
        """At a service or arrival field, the row samples from the prior (`data`: the model's
        logits are dropped) or the model times the prior (`product`): the prior's log
        probabilities times the temperature are added, so the temperature applies to the model
        alone."""
        if self.prior == "off":
            return logits
        out = logits
        scale = temperature if temperature > 0 else 1.0
        for row, w in enumerate(writers):
            assert isinstance(w, ConstrainedWriter)
            scanner = w.session.scanner
            if not isinstance(scanner, ContextScanner):
                continue
            logs = self.fields.log_probs(scanner, masks[row])
            if logs is None:
                continue
            if out is logits:
                out = logits.clone()
            base = out[row] if self.prior == "product" else torch.zeros_like(out[row])
            ids = torch.tensor(list(logs), dtype=torch.long)
            values = torch.tensor(list(logs.values()), dtype=out.dtype) * scale
            new = torch.full_like(out[row], -math.inf)
            new[ids] = base[ids] + values
            out[row] = new
        return out

    def new(
        self, graph: int, cond: LayerConditions, root: bool, prefix: str | None = None
    ) -> LayerWriter:
        t0 = time.perf_counter()
        r = self.rules[graph]
        session = LayerSession(
            self.engine, cond, self.engine.matcher(context_grammar(r.request.num_traces))
        )
        session.scanner = ContextScanner(r)  # type: ignore[assignment]
        return ConstrainedWriter(session, time.perf_counter() - t0)


class FreeContextWriter(FreeWriter):
    """The model writing a window freely: until `</window>`, end-of-sequence or the budget."""

    @property
    def done(self) -> bool:
        if (self.tokens and self.tokens[-1] == self.eos) or len(self.tokens) >= self.budget:
            return True
        return self.tokenizer.decode(self.tokens[-4:]).endswith("</window>")


class FreeContextWriters(FreeWriters):
    def __init__(self, tokenizer: Any, eos: int, rules: Sequence[WindowRules]) -> None:
        super().__init__(tokenizer, eos, "layer")
        self.rules = rules

    def new(
        self, graph: int, cond: LayerConditions, root: bool, prefix: str | None = None
    ) -> LayerWriter:
        # a window that meets its request fits: LINE_TOKENS bounds a line, 16 the closing tag
        budget = LINE_TOKENS * self.rules[graph].request.num_traces + 16
        return FreeContextWriter(self.tokenizer, self.eos, budget)


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowResult:
    """One window as written: the text after the prompt, the contexts read from it, and the
    rules it breaks (`workloads.WINDOW_RULES`; empty: it meets the request)."""

    request: WindowRequest
    text: str
    contexts: tuple[WindowContext, ...]
    violations: tuple[str, ...]

    @property
    def compliant(self) -> bool:
        """The papers' context compliance: exact count, times in the window, ids present."""
        return not {"format", "count", "window", "order", "include"} & set(self.violations)


def known_services(reference: Reference | None) -> frozenset[str] | None:
    """The services a context may name: those of the reference's graphs (None: any)."""
    if reference is None:
        return None
    return frozenset(s for s, *_ in reference.service_calls) or None


def window_rules(
    requests: Sequence[WindowRequest],
    lm: LoadedModel,
    reference: Reference | None = None,
    max_edges: int | None = None,
) -> list[WindowRules]:
    """The rules of each request for this model: services from the reference (the adapter's
    unless given), num_edges within what the graph decoder accepts, depth within the known calls.
    Raises ConstraintError for an id the reference does not know or a window that does not fit
    the model's context."""
    reference = reference if reference is not None else lm.reference()
    known = known_services(reference)
    context = int(getattr(lm.model.config, "max_position_embeddings", 8192))
    edges = (
        max_graph_edges(context) if max_edges is None else min(max_edges, max_graph_edges(context))
    )
    depth = reference.scope(None).reach(USER) if reference is not None else UNBOUNDED
    out = []
    for r in requests:
        r.check_known(known)
        if r.num_traces > max_traces(context):
            raise ConstraintError(
                f"num_traces must be at most {max_traces(context)} per window for this model "
                f"(its context holds {context} tokens), got {r.num_traces}",
                "num_traces",
            )
        out.append(WindowRules(r, known, edges, depth))
    return out


def write_windows(
    requests: Sequence[WindowRequest],
    model: LoadedModel | str | None = None,
    *,
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int = 0,
    constrained: bool = True,
    reference: Reference | None = None,
    max_edges: int | None = None,
    prior: str = DEFAULT_PRIOR,
    service_counts: Mapping[str, int] | None = None,
) -> tuple[list[WindowResult], GenerationStats]:
    """Write the contexts of each window (all in one batch). Window i samples from its own
    generator, seeded by (seed, i): same seed, same windows. Constrained, every window meets its
    request (an EngineError says otherwise, a bug); unconstrained, `violations` says how each
    did. Constrained, `prior` (PRIOR_MODES) says how services and arrivals are sampled (module
    docstring); the service mix is `service_counts` (graphs per service) when given, else the
    reference's (the adapter's unless given)."""
    if prior not in PRIOR_MODES:
        raise ConstraintError(f"prior must be one of {PRIOR_MODES}, got {prior!r}", "prior")
    lm = resolve_model(model)
    reference = reference if reference is not None else lm.reference()
    rules = window_rules(requests, lm, reference, max_edges)
    writers: ContextWriters | FreeContextWriters
    if constrained:
        if service_counts is not None:
            services = ServicePrior(dict(service_counts))
        elif reference is not None:
            services = ServicePrior.from_reference(reference)
        else:
            services = ServicePrior({})
        writers = ContextWriters(lm.engine(), rules, prior, services)
    else:
        writers = FreeContextWriters(lm.tokenizer, lm.tokenizer.eos_token_id, rules)
    stats = GenerationStats()
    scheduler = WaveScheduler(lm, writers, temperature, top_k, True, stats)
    jobs = [
        LayerJob(
            i,
            None,
            WINDOW_JOB,
            render_window_prompt(r.request.length_ms, r.request.num_traces, r.request.include),
            layer_rng(seed, i, "window"),
        )
        for i, r in enumerate(rules)
    ]
    start = time.perf_counter()
    texts = scheduler.decode(jobs)
    stats.wall_s = time.perf_counter() - start
    stats.graphs = len(jobs)
    results = [_result(r, text, constrained) for r, text in zip(rules, texts, strict=True)]
    if constrained:
        bad = [w for w in results if w.violations]
        if bad:  # a broken promise, not a user error
            raise EngineError(
                f"constrained window broke {bad[0].violations}: {bad[0].text[:200]!r}"
            )
    return results, stats


def _result(rules: WindowRules, text: str, strict: bool) -> WindowResult:
    if strict:
        try:
            contexts, clean = list(parse_window_output(text)), True
        except ParseError:
            contexts, clean = [], False
    else:
        contexts, clean = read_window_output(text)
    bad = window_violations(rules.request, contexts, rules.known, well_formed=clean)
    return WindowResult(rules.request, text, tuple(contexts), tuple(bad))
