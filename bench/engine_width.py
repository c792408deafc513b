"""Engine cost per row per sampled step at widths 1, 16, 64, 256, without a model forward pass:
the per-row path, the batched path, and the batched path with a grammar per layer (the layer's
service and caller compiled in, as before the grammars were shared) side by side, in one run.

    PYTHONPATH=src .venv/bin/python bench/engine_width.py [--widths 1,16,64,256] [--rows 4096]
                                                          [--semantic]

`width` layers are written at once by random walks (every step each row draws uniformly among the
tokens its mask allows, with the layer's own generator); a finished layer is replaced by the next
one, so the width holds. A step's engine cost is what the scheduler pays per sampled token:

- per row: `session.mask()` (known since the last step), then `consume(token)` and `forced()`
  (whose loop computes the next mask);
- batched: `engine.masks(sessions)` (every row unpacked at once), then
  `engine.advance(sessions, tokens)` (tokens consumed, forced rounds with batched masks).

Drawing the tokens and starting new layers are not counted. Every walk starts with no grammar
compiled (`engine.forget_grammars()`), as a run meets its layers' grammars for the first time:
llguidance builds its lexer's states lazily, per compiled grammar, so a walk after another over
the same layers would otherwise find them built. All paths walk the same layers with the same
draws, so they must write the same tokens (checked). Needs only the default model's
tokenizer; the engine gets a stand-in model with its vocabulary. Writes
bench/results/engine_width.{json,md} (with `--semantic`: engine_width_semantic.{json,md}; with
`--real`: engine_width_real.{json,md}, layers of the real training graphs with the semantic
rules a run gives them, so layers share grammars as often as in generation); the last line
printed is the batched path at the widest width.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA, machine, write
from tracegrammar.benchmark import table_lines
from tracegrammar.decoding.engine import Engine, LayerSession
from tracegrammar.layers import decompose
from tracegrammar.reference import CallScope, Reference
from tracegrammar.types import CALL_TYPES, USER, CallGraph, Edge, LayerConditions

WARMUP_STEPS = 3  # first steps fill the grammar and numeric caches: not counted


def stand_in_engine() -> Engine:
    """The engine of the default model's tokenizer, built around a 2-layer stand-in model with
    the same vocabulary (the engine reads only `config.vocab_size` from it)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tracegrammar.decoding.models import default_model_dir

    tok = AutoTokenizer.from_pretrained(default_model_dir(progress=False), local_files_only=True)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=8, intermediate_size=8, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1,
    )  # fmt: skip
    return Engine(LlamaForCausalLM(config), tok)


def random_graph(rng: random.Random, max_edges: int = 14) -> CallGraph:
    """A valid call graph: a random tree of calls with nested integer time intervals."""
    n = rng.randint(1, max_edges)
    kids: dict[int, list[int]] = {i: [] for i in range(n)}
    for i in range(1, n):
        kids[rng.randrange(i)].append(i)
    names = [f"MS_{rng.randrange(100)}" for _ in range(n)]
    edges: list[Edge] = []

    def place(node: int, rid: str, source: str, lo: int, hi: int) -> None:
        start = lo if node == 0 else rng.randint(lo, hi)
        finish = rng.randint(start, hi)
        edges.append(Edge(rid, source, names[node], rng.choice(CALL_TYPES), start, finish))
        for k, child in enumerate(kids[node], start=1):
            place(child, f"{rid}.{k}", names[node], start, finish)

    place(0, "0", USER, 0, rng.randint(0, 5000))
    return CallGraph(f"S_{rng.randrange(10**8)}", tuple(edges))


def random_layers(count: int, seed: int, semantic: bool) -> list[tuple[LayerConditions, Any]]:
    """`count` layers of random graphs, each with the semantic rules of a reference made of all
    of them (`semantic`) or none."""
    rng = random.Random(seed)
    graphs = [random_graph(rng) for _ in range(max(1, count // 3))]
    scope = CallScope(Reference.from_graphs(graphs)) if semantic else None
    layers = [layer.conditions for g in graphs for layer in decompose(g)]
    return [(layers[i % len(layers)], scope) for i in range(count)]


def real_layers(count: int, seed: int, data: str) -> list[tuple[LayerConditions, Any]]:
    """`count` layers of the training graphs of `data` (the recipe's split), shuffled, each with
    the semantic rules generation gives its graph (`driver.call_scopes`, the shipped adapter's
    reference: the training graphs' calls), so layers share grammars as often as a run's do."""
    from tracegrammar import Constraints
    from tracegrammar.decoding.driver import call_scopes
    from tracegrammar.decoding.models import default_adapter_dir
    from tracegrammar.reference import REFERENCE_FILE
    from tracegrammar.training.datasets import recipe_split

    adapter = default_adapter_dir()
    assert adapter is not None, "the shipped adapter (its reference) is needed for --real"
    reference = Reference.load(adapter / REFERENCE_FILE)
    graphs = recipe_split(data).train
    scopes = call_scopes([Constraints(g.service) for g in graphs], [g.depth for g in graphs],
                         reference, novel_calls=False)  # fmt: skip
    layers = [(layer.conditions, scope) for g, scope in zip(graphs, scopes, strict=True)
              for layer in decompose(g)]  # fmt: skip
    random.Random(seed).shuffle(layers)
    return [layers[i % len(layers)] for i in range(count)]


class Walk:
    """`width` random walks, each finished layer replaced by the next from `layers`."""

    def __init__(
        self, engine: Engine, layers: list[tuple[LayerConditions, Any]], literals: bool = False
    ) -> None:
        self.engine = engine
        self.literals = literals
        self.layers = layers
        self.next = 0
        self.sessions: list[LayerSession] = []
        self.draws: list[random.Random] = []
        self.ids: list[int] = []
        self.texts: dict[int, list[int]] = {}

    def fill(self, width: int, batched: bool) -> None:
        """Start layers until `width` are being written (a start is not a step: not timed); a
        layer its forced tokens finish at once is replaced too."""
        while len(self.sessions) < width and self.next < len(self.layers):
            new: list[LayerSession] = []
            while len(self.sessions) < width and self.next < len(self.layers):
                cond, scope = self.layers[self.next]
                session = self.engine.session(cond, "layer", scope, literals=self.literals)
                self.sessions.append(session)
                self.draws.append(random.Random(self.next))
                self.ids.append(self.next)
                self.next += 1
                new.append(session)
            if batched:
                self.engine.advance(new)
            else:
                for session in new:
                    session.forced()
            self.retire()

    def draw(self, masks: list[torch.Tensor]) -> list[int]:
        """One token per row, uniformly among those its mask allows."""
        out = []
        for mask, rng in zip(masks, self.draws, strict=True):
            allowed = torch.nonzero(mask)
            out.append(int(allowed[rng.randrange(allowed.shape[0])]))
        return out

    def retire(self) -> None:
        keep = [i for i, s in enumerate(self.sessions) if not s.done]
        for i, s in enumerate(self.sessions):
            if s.done:
                self.texts[self.ids[i]] = s.tokens
        self.sessions = [self.sessions[i] for i in keep]
        self.draws = [self.draws[i] for i in keep]
        self.ids = [self.ids[i] for i in keep]


class Clock:
    """Wall and CPU time (all of the process's threads) of what runs inside `with clock:`."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def per_row_step(walk: Walk, clock: Clock) -> None:
    with clock:
        masks = [s.mask() for s in walk.sessions]
    tokens = walk.draw(masks)
    with clock:
        for session, token in zip(walk.sessions, tokens, strict=True):
            session.consume(token)
            session.forced()


def batched_step(walk: Walk, clock: Clock) -> None:
    with clock:
        masks = walk.engine.masks(walk.sessions)
    tokens = walk.draw(list(masks))
    with clock:
        walk.engine.advance(walk.sessions, tokens)


def measure(
    engine: Engine,
    layers: list,
    width: int,
    rows: int,
    step: Callable[[Walk, Clock], None],
    literals: bool = False,
) -> dict[str, Any]:
    """Walk at `width` until `rows` row-steps are counted (after the warm-up steps)."""
    batched = step is batched_step
    engine.forget_grammars()
    walk = Walk(engine, layers, literals)
    clock, counted, steps = Clock(), 0, 0
    walk.fill(width, batched)
    while counted < rows and walk.sessions:
        n = len(walk.sessions)
        step(walk, clock if steps >= WARMUP_STEPS else Clock())
        steps += 1
        if steps > WARMUP_STEPS:
            counted += n
        walk.retire()
        walk.fill(width, batched)
    texts = walk.texts | {i: s.tokens for i, s in zip(walk.ids, walk.sessions, strict=True)}
    return {"wall_us": 1e6 * clock.wall / max(counted, 1),
            "cpu_us": 1e6 * clock.cpu / max(counted, 1), "row_steps": counted, "texts": texts}  # fmt: skip


def best_of(repeats: int, *args: Any) -> dict[str, Any]:
    """The fastest of `repeats` walks (a busy machine only ever makes a run slower)."""
    runs = [measure(*args) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_us"])
    return best | {"cpu_us": min(r["cpu_us"] for r in runs), "walls": [r["wall_us"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--widths", default="1,16,64,256")
    ap.add_argument("--rows", type=int, default=4096, help="row-steps counted per width and path")
    ap.add_argument("--semantic", action="store_true", help="semantic rules from a reference")
    ap.add_argument(
        "--real", metavar="DATA", nargs="?", const=DEFAULT_DATA, default=None,
        help="layers of the real training graphs with the shipped reference's semantic rules "
        "(as generation has them) instead of random ones",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="walks per width and path: the best")
    ap.add_argument(
        "--torch-threads", type=int, default=1,
        help="torch's intra-op threads: 1 by default, since on a busy 2-core machine every "
        "small op's thread hand-off can stall for milliseconds (llguidance has its own threads)",
    )  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    widths = sorted(int(w) for w in args.widths.split(","))
    t0 = time.perf_counter()
    engine = stand_in_engine()
    setup_s = time.perf_counter() - t0
    results = []
    for width in widths:
        # enough layers that the width holds while `rows` row-steps are counted
        count = 64 + 2 * width + args.rows // 8
        layers = (
            real_layers(count, args.seed, args.real)
            if args.real
            else random_layers(count, args.seed, args.semantic)
        )
        per_row = best_of(args.repeats, engine, layers, width, args.rows, per_row_step)
        batched = best_of(args.repeats, engine, layers, width, args.rows, batched_step)
        literal = best_of(args.repeats, engine, layers, width, args.rows, batched_step, True)
        same = per_row["texts"] == batched["texts"] == literal["texts"]
        results.append({
            "width": width,
            "per_row_us": per_row["wall_us"],
            "batched_us": batched["wall_us"],
            "literal_us": literal["wall_us"],
            "per_row_cpu_us": per_row["cpu_us"],
            "batched_cpu_us": batched["cpu_us"],
            "literal_cpu_us": literal["cpu_us"],
            "per_row_runs_us": per_row["walls"],
            "batched_runs_us": batched["walls"],
            "literal_runs_us": literal["walls"],
            "row_steps": batched["row_steps"],
            "layers_compared": len(batched["texts"]),
            "same_texts": same,
        })  # fmt: skip
        print({k: v for k, v in results[-1].items() if not k.endswith("runs_us")}, flush=True)
        if not same:
            raise SystemExit(f"width {width}: the paths wrote different tokens")
    data = {"machine": machine(), "semantic": args.semantic, "real": args.real, "rows": args.rows,
            "repeats": args.repeats, "torch_threads": args.torch_threads,
            "engine_setup_s": setup_s, "load_average": os.getloadavg(), "widths": results}  # fmt: skip
    name = "engine_width_real" if args.real else "engine_width"
    write(
        name + ("_semantic" if args.semantic and not args.real else ""), data, markdown(data, args)
    )
    print(f"width {results[-1]['width']}: {results[-1]['batched_us']:.0f} us per row")


def markdown(data: dict, args: argparse.Namespace) -> str:
    md = [
        "# Engine cost per row per sampled step, by width (no model forward pass)",
        "",
        f"Machine: {data['machine']}",
        "",
        f"`PYTHONPATH=src .venv/bin/python bench/engine_width.py --widths {args.widths} "
        f"--rows {args.rows} --torch-threads {args.torch_threads}"
        f"{' --semantic' if args.semantic else ''}{' --real' if args.real else ''}`. "
        + (
            "Layers of the real training graphs, each with the semantic rules generation "
            "gives it (the shipped adapter's reference)"
            if args.real
            else "Random layers (random graphs, layer format"
            + (", semantic rules of a reference made of them" if args.semantic else "")
            + ")"
        )
        + ", random walks; per step: the masks of every row, then the drawn tokens consumed "
        "and every forced token after them (`bench/engine_width.py` says exactly what is timed).",
        "",
    ]
    md += table_lines(
        ["width", "per-row path: wall (CPU) us / row / step",
         "batched: wall (CPU) us / row / step", "speed-up (wall)",
         "batched, a grammar per layer: wall (CPU)", "shared grammars' speed-up (wall)",
         "row-steps", "same tokens written"],
        [
            [r["width"], f"{r['per_row_us']:.0f} ({r['per_row_cpu_us']:.0f})",
             f"{r['batched_us']:.0f} ({r['batched_cpu_us']:.0f})",
             f"{r['per_row_us'] / r['batched_us']:.1f}x",
             f"{r['literal_us']:.0f} ({r['literal_cpu_us']:.0f})",
             f"{r['literal_us'] / r['batched_us']:.1f}x", r["row_steps"],
             f"{'yes' if r['same_texts'] else 'NO'} ({r['layers_compared']} layers)"]
            for r in data["widths"]
        ],
    )  # fmt: skip
    md += [
        "",
        f"Best of {data['repeats']} walks per cell (wall time; CPU time is of all the process's "
        "threads, llguidance's included, so it is the cost a busier batch would share). Every "
        "walk starts with no grammar compiled, as a run meets its requests for the first time. "
        "The first two paths share a grammar among the layers of the same counts (the engine "
        "forces their service and caller); in the third, almost every layer has a grammar of "
        "its own (its service and caller are literals in it), so llguidance builds lexer "
        "states for each layer as it goes. "
        + (
            "With the semantic rules a grammar also binds the calls its caller may make, so "
            "layers share one only when their callers may make the same calls. "
            if args.semantic or args.real
            else ""
        )
        + "The three write the same tokens. Load "
        f"average when written: {', '.join(f'{x:.1f}' for x in data['load_average'])} on "
        f"{data['machine']['cores']} cores.",
    ]
    md.append("")
    return "\n".join(md)


if __name__ == "__main__":
    main()
