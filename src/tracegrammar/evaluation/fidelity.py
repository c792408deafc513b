"""`tracegrammar bench fidelity`: every source of synthetic graphs side by side, on the same
prompts, scored against the real validation split with bootstrap intervals.

Prompts are the (service, num_edges, depth, latency) of the validation graphs
(`recipe_split(data).validation`: graphs the shipped adapters never saw), repeated until a
source has its count (`--graphs` for fast sources, `--slow-graphs` for slow ones). The prompt
list is cut into chunks of `--chunk` prompts; chunk k is produced with seed k, so a repeated
prompt gets fresh draws and every source sees the same prompts with the same seed.

Each finished chunk appends its valid graphs to `OUT/graphs-<source>.jsonl` (tagged with the
chunk) and then one line to `OUT/records.jsonl`; a rerun skips the chunks already recorded, and
a line cut short by a killed run (the last of a file) is dropped and redone. Chunks run
interleaved (chunk 0 of every source, then chunk 1, ...), so a stopped run still has every
source at about the same sample size. The summary (`report.write_summary`) is written at the end,
or from the files alone with `--summary-only`. The run takes a frozen `FidelityOptions` (the
command line builds it in `cli/bench.py`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..constraints import Constraints
from ..errors import InputError, UsageError
from ..io import atomic_writer, graph_from_dict, graph_to_dict
from ..metrics import Outcome, instruction_accuracy, validity
from ..types import CallGraph

GRAPHS = 1000  # per fast source: the minimum on a CPU
SLOW_GRAPHS = 300  # per slow source
CHUNK = 48
RECORDS = "records.jsonl"
META = "meta.json"


@dataclass(frozen=True)
class FidelityOptions:
    """One fidelity run. `adapter` is already resolved: a folder, or None for the bare base."""

    data: str = "../shared/data"
    out: str = "bench/results/fidelity"
    graphs: int = GRAPHS  # per fast source
    slow_graphs: int = SLOW_GRAPHS  # per slow source
    sources: tuple[str, ...] = ()  # empty: every source, in table order
    max_edges: int = 0  # prompts only from validation graphs with at most this many calls
    temperature: float = 0.8
    chunk: int = CHUNK
    bootstrap: int = 200
    model: str | None = None
    adapter: str | None = None

    @property
    def source_names(self) -> tuple[str, ...]:
        return self.sources or tuple(SOURCES)


# ------------------------------------------------------------------------------------------------
# the sources
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """Consecutive prompts of the run's prompt list, produced in one call."""

    index: int
    seed: int
    start: int  # position of its first prompt in the prompt list
    prompts: tuple[Constraints, ...]


@dataclass
class Produced:
    """What a source made of one chunk: its valid graphs (and which prompt each answers)."""

    graphs: list[CallGraph]
    prompts: list[int]  # position in the chunk of each valid graph's prompt
    asked: int
    accurate: int  # valid and exactly as requested (instruction accuracy)
    forward_passes: int | None = None
    #: constrained sampled steps, and the model's probability on tokens the engine masked there
    masked_steps: int | None = None
    masked_mass: float | None = None
    #: generation time proper, when the source measures it (the model's: without loading the
    #: model and building its engine, which the first chunk would otherwise pay for)
    wall_s: float | None = None


class Context:
    """What producers share, each built on first use: a source that does not need the model
    never loads it."""

    def __init__(self, split: Any, temperature: float, model: str | None, adapter: str | None):
        self.split = split
        self.temperature = temperature
        self._model_path = model
        self._adapter = adapter
        self._perms: dict[int, np.ndarray] = {}

    @cached_property
    def model(self) -> Any:
        from ..decoding.models import load_model

        return load_model(self._model_path, self._adapter)

    @cached_property
    def global_reference(self) -> Any:
        """The training calls without their services: calls seen from a caller anywhere."""
        from ..reference import Reference

        ref = Reference.from_graphs(self.split.train)
        return Reference(ref.calls, frozenset(), ref.leaf_types)

    @cached_property
    def baseline(self) -> Any:
        from ..baseline import ProbabilisticBaseline

        return ProbabilisticBaseline.fit(self.split.train)

    def train_permutation(self, round_: int) -> np.ndarray:
        if round_ not in self._perms:
            self._perms[round_] = np.random.default_rng(round_).permutation(len(self.split.train))
        return self._perms[round_]


Producer = Callable[[Context, Chunk], Produced]


def llm(ctx: Context, chunk: Chunk, **options: Any) -> Produced:
    """The generator on a chunk's prompts in one batched call; `options` go to run_generation.
    A graph counts when it passes the oracle (metrics.validity): unconstrained output of the
    wrong size is still a graph to compare with real ones; instruction accuracy says how many
    were also as asked."""
    from ..decoding.driver import run_generation

    run = run_generation(
        list(chunk.prompts), 1, temperature=ctx.temperature, seed=chunk.seed, model=ctx.model,
        **options,
    )  # fmt: skip
    keep = [
        i
        for i, g in enumerate(run.generations)
        if g.graph is not None and validity([Outcome(g.graph)]) == 1.0
    ]
    outcomes = [Outcome(g.graph, g.constraints) for g in run.generations]
    return Produced(
        graphs=[run.generations[i].graph for i in keep],  # type: ignore[misc]
        prompts=keep,
        asked=len(chunk.prompts),
        accurate=round(instruction_accuracy(outcomes) * len(outcomes)),
        forward_passes=run.stats.forward_passes,
        masked_steps=run.stats.masked_steps,
        masked_mass=run.stats.masked_mass,
        wall_s=run.stats.wall_s,
    )


def baseline(ctx: Context, chunk: Chunk) -> Produced:
    """The probabilistic baseline, one draw per prompt, seeded by the prompt's position."""
    graphs = [ctx.baseline.sample(c, 1, chunk.start + i)[0] for i, c in enumerate(chunk.prompts)]
    return Produced(graphs, list(range(len(graphs))), len(graphs), len(graphs))


def floor(ctx: Context, chunk: Chunk) -> Produced:
    """Real training graphs, as many as prompts: position p takes graph p of a seeded shuffle of
    the training split (a fresh shuffle every time the split is used up), so graphs repeat only
    when more are asked than there are. They ignore the prompts: the floor is how close real
    graphs of the same count come to the validation split."""
    train = ctx.split.train
    graphs = []
    for p in range(chunk.start, chunk.start + len(chunk.prompts)):
        graphs.append(train[int(ctx.train_permutation(p // len(train))[p % len(train)])])
    return Produced(graphs, list(range(len(graphs))), len(graphs), len(graphs))


@dataclass(frozen=True)
class Source:
    produce: Producer
    slow: bool
    about: str


#: Every source the bench knows, in table order. Adding one is one line here.
SOURCES: dict[str, Source] = {
    "default": Source(lambda ctx, ch: llm(ctx, ch), False,
                      "the default generator (constrained; semantic rules from the adapter's "
                      "reference: calls seen in the service, leaf types stay leaves)"),
    "global": Source(lambda ctx, ch: llm(ctx, ch, reference=ctx.global_reference), True,
                     "the same with the calls of every service (the earlier semantic option)"),
    "novel": Source(lambda ctx, ch: llm(ctx, ch, novel_calls=True), True,
                    "the same with novel calls allowed (novel_calls=True)"),
    "unconstrained": Source(lambda ctx, ch: llm(ctx, ch, constrained=False), True,
                            "the same model without grammar and rules (valid graphs only)"),
    "baseline": Source(baseline, False, "the probabilistic baseline fitted on the training split"),
    "floor": Source(floor, False, "real training graphs of the same count (the floor)"),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------


def plan(
    validation: Sequence[CallGraph], count: int, chunk: int, max_edges: int = 0
) -> list[Chunk]:
    """The first `count` prompts of the validation graphs (those with at most `max_edges` calls
    when it is set) repeated, cut into chunks."""
    if max_edges:
        validation = [g for g in validation if g.num_edges <= max_edges]
    if not validation:
        raise InputError(f"no validation graphs to take prompts from (max_edges={max_edges})")
    prompts = [
        Constraints(g.service, g.num_edges, g.depth, g.latency)
        for g in (validation[p % len(validation)] for p in range(count))
    ]
    return [
        Chunk(k, k, s, tuple(prompts[s : s + chunk])) for k, s in enumerate(range(0, count, chunk))
    ]


def source_count(name: str, opts: FidelityOptions) -> int:
    return opts.slow_graphs if SOURCES[name].slow else opts.graphs


# ------------------------------------------------------------------------------------------------
# files: tolerant readers, records, graphs
# ------------------------------------------------------------------------------------------------


def read_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The JSON objects of a JSON Lines file and whether its last line was cut short (dropped:
    a killed run can leave one). A bad line anywhere else is an error naming it."""
    if not path.is_file():
        return [], False
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if n == len(lines):
                return out, True
            raise UsageError(f"{path}:{n}: not JSON ({exc})") from None
    return out, False


def finished(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(source, chunk) -> its record; a chunk recorded twice keeps the later record."""
    return {(r["source"], r["chunk"]): r for r in records}


def graphs_path(out: Path, source: str) -> Path:
    return out / f"graphs-{source}.jsonl"


def read_graphs(out: Path, source: str, chunks: set[int] | None = None) -> list[CallGraph]:
    """The source's graphs in chunk order, only from `chunks` (default: all recorded ones)."""
    if chunks is None:
        chunks = {k for (s, k) in finished(read_lines(out / RECORDS)[0]) if s == source}
    rows, _ = read_lines(graphs_path(out, source))
    rows = [r for r in rows if r.get("chunk") in chunks]
    rows.sort(key=lambda r: (r["chunk"], r["prompt"]))
    return [graph_from_dict(r) for r in rows]


def _prune(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a JSON Lines file without the lines `keep` rejects and without a cut last line
    (so appends start on a line of their own)."""
    rows, cut = read_lines(path)
    kept = [r for r in rows if keep(r)]
    if cut or len(kept) != len(rows):
        with atomic_writer(path) as fh:
            fh.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in kept)


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        fh.flush()


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """One line per chunk on stderr: where the run is, and when it should end (from the median
    time per chunk of each source in this run: the first chunk also loads the model)."""

    left: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    times: dict[str, list[float]] = field(default_factory=dict)
    graphs: dict[str, int] = field(default_factory=dict)

    def done(self, source: str, chunk: Chunk, total: int, made: Produced, wall: float) -> None:
        self.left[source] -= 1
        self.times.setdefault(source, []).append(wall)
        self.graphs[source] = self.graphs.get(source, 0) + len(made.graphs)
        eta = "?"
        if all(self.times.get(s) for s, n in self.left.items() if n):
            eta = _clock(
                sum(n * float(np.median(self.times[s])) for s, n in self.left.items() if n)
            )
        print(
            f"fidelity {source}: chunk {chunk.index + 1}/{total}, {len(made.graphs)}/{made.asked} "
            f"valid in {wall:.1f} s; {self.graphs[source]} graphs this run; "
            f"elapsed {_clock(time.monotonic() - self.started)}, ETA {eta}",
            file=sys.stderr,
            flush=True,
        )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def pending(
    out: Path, sources: Sequence[str], plans: dict[str, list[Chunk]]
) -> Iterator[tuple[str, Chunk]]:
    """The chunks not yet recorded (a record must match the chunk's start and size), chunk 0 of
    every source first; graph lines of a chunk about to be redone are removed first."""
    done = finished(read_lines(out / RECORDS)[0])
    todo: dict[str, set[int]] = {}
    for name in sources:
        todo[name] = {
            c.index
            for c in plans[name]
            if (r := done.get((name, c.index))) is None
            or (r["start"], r["asked"]) != (c.start, len(c.prompts))
        }
        ok = {k for (s, k) in done if s == name} - todo[name]
        _prune(graphs_path(out, name), lambda row, ok=ok: row.get("chunk") in ok)
    _prune(out / RECORDS, lambda row: True)
    for k in range(max(len(p) for p in plans.values())):
        for name in sources:
            if k in todo[name]:
                yield name, plans[name][k]


def run_chunk(ctx: Context, out: Path, name: str, chunk: Chunk) -> tuple[Produced, float]:
    """Produce one chunk and append it: graphs first, then its record (the record is what marks
    the chunk done, so a run killed in between redoes it)."""
    t0 = time.perf_counter()
    made = SOURCES[name].produce(ctx, chunk)
    chunk_s = time.perf_counter() - t0
    wall = made.wall_s if made.wall_s is not None else chunk_s
    _append(
        graphs_path(out, name),
        [
            graph_to_dict(g, chunk=chunk.index, prompt=p)
            for g, p in zip(made.graphs, made.prompts, strict=True)
        ],
    )
    record = {
        "source": name, "chunk": chunk.index, "seed": chunk.seed, "start": chunk.start,
        "asked": made.asked, "valid": len(made.graphs), "accurate": made.accurate,
        "wall_s": round(wall, 3), "chunk_s": round(chunk_s, 3),
        "forward_passes": made.forward_passes,
        "masked_steps": made.masked_steps,
        "masked_mass": None if made.masked_mass is None else round(made.masked_mass, 4),
        "temperature": ctx.temperature,
    }  # fmt: skip
    _append(out / RECORDS, [record])
    return made, chunk_s


def run_fidelity(opts: FidelityOptions, model_name: str) -> int:
    """Produce the chunks not yet recorded in `opts.out`, then write the summary; `model_name` is
    how the summary names the model. The options are checked by the caller (`cli/bench.py`)."""
    from ..training.datasets import recipe_split
    from .report import write_summary

    out = Path(opts.out)
    split = recipe_split(opts.data)  # bad data fails here, before any model loads
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(out, opts)
    names = opts.source_names
    plans = {
        s: plan(split.validation, source_count(s, opts), opts.chunk, opts.max_edges) for s in names
    }
    todo = list(pending(out, names, plans))
    _write_meta(out, opts, model_name, split)
    ctx = Context(split, opts.temperature, opts.model, opts.adapter)
    progress = Progress({s: sum(1 for n, _ in todo if n == s) for s in names})
    for name, chunk in todo:
        made, wall = run_chunk(ctx, out, name, chunk)
        progress.done(name, chunk, len(plans[name]), made, wall)
    write_summary(out, opts.data)
    print(f"wrote {out}/summary.md, summary.json ({len(todo)} new chunks)")
    return 0


def rewrite_summary(out: Path, data: str) -> int:
    """`--summary-only`: the summary again from the files in `out` (and the real `data`)."""
    from .report import write_summary

    write_summary(out, data)
    print(f"rewrote {out}/summary.md, summary.json")
    return 0


def _check_same_run(out: Path, opts: FidelityOptions) -> None:
    """Records of another temperature or chunk size in `out` would mix two experiments."""
    meta_path = out / META
    if not meta_path.is_file():
        return
    meta = json.loads(meta_path.read_text())
    for key, value in (
        ("temperature", opts.temperature), ("chunk", opts.chunk), ("max_edges", opts.max_edges),
    ):  # fmt: skip
        if key in meta and meta[key] != value:
            raise UsageError(
                f"--out {out} holds a run with {key}={meta[key]}, not {value}: use another --out"
            )


def _write_meta(out: Path, opts: FidelityOptions, model_name: str, split: Any) -> None:
    from .tables import machine

    meta = json.loads((out / META).read_text()) if (out / META).is_file() else {}
    machines = meta.get("machines", [])
    if machine() not in machines:
        machines.append(machine())
    counts = {s: source_count(s, opts) for s in opts.source_names}
    meta.update(
        model=model_name, temperature=opts.temperature, chunk=opts.chunk, machines=machines,
        max_edges=opts.max_edges,
        date=time.strftime("%Y-%m-%d"), data=str(opts.data), bootstrap=opts.bootstrap,
        counts={**meta.get("counts", {}), **counts},
        prompts=sum(not opts.max_edges or g.num_edges <= opts.max_edges for g in split.validation),
    )  # fmt: skip
    with atomic_writer(out / META) as fh:
        json.dump(meta, fh, indent=1)
