"""`tracegrammar bench validity`: validity and instruction accuracy over the papers' grid
(`grid`: num_edges x depth, the feasible shapes only), at several temperatures, constrained vs
unconstrained, recursive layers vs tabular.

Each (cell, temperature, mode, encoding) is one record in `records.jsonl` under the output folder;
a rerun skips the records already there, so a long run resumes where it stopped. The summary
(`validity_report`) is written as `summary.json`, `summary.md` and one heat map per (mode,
encoding, temperature). This module runs the cells; it takes a frozen `ValidityOptions` (the
command line builds it in `cli/bench.py`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..constraints import Constraints
from ..errors import UsageError
from ..metrics import Outcome, instruction_accuracy, semantic_validity, validity
from ..reference import Reference
from ..types import CallGraph
from .grid import MODES, Cell, grid, prompts, record_key, task_key
from .validity_report import run_meta, write_summary


@dataclass(frozen=True)
class ValidityOptions:
    """One validity run. `adapter` is already resolved: a folder, or None for the bare base."""

    data: str = "../shared/data"
    out: str = "bench/results/validity"
    samples: int = 50
    cells: int = 0  # a seeded random subset of this many cells (0: all)
    only: tuple[Cell, ...] = ()  # just these cells (empty: the whole grid)
    max_edges: int = 30
    max_depth: int = 6
    temperatures: tuple[float, ...] = (0.2, 0.5, 0.8, 1.0)
    modes: tuple[str, ...] = MODES
    encodings: tuple[str, ...] = ("layer", "tabular")
    seed: int = 0
    model: str | None = None
    adapter: str | None = None
    workers: int = 1
    time_limit: float = 0  # seconds after which no new cell starts (0: none)


def plan(opts: ValidityOptions) -> list[tuple[Cell, float, str, str]]:
    """(cell, temperature, mode, encoding) of every record the run should hold."""
    cells = grid(opts.max_edges, opts.max_depth)
    if opts.only:
        missing = sorted(set(opts.only) - set(cells), key=lambda c: (c.num_edges, c.depth))
        if missing:
            c = missing[0]
            raise UsageError(f"--only: cell {c.num_edges}x{c.depth} is not in the grid")
        cells = [c for c in cells if c in set(opts.only)]
    if opts.cells and opts.cells < len(cells):
        cells = sorted(
            random.Random(opts.seed).sample(cells, opts.cells),
            key=lambda c: (c.num_edges, c.depth),
        )
    return [
        (c, t, m, f)
        for t in opts.temperatures
        for m in opts.modes
        for f in opts.encodings
        for c in cells
    ]


# ------------------------------------------------------------------------------------------------
# the records file
# ------------------------------------------------------------------------------------------------


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of earlier runs. A last line cut short by a kill is cut from the file (its cell
    runs again, and the next record starts on a clean line); any other bad line is an InputError
    naming the file and line."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    tail = data[data.rfind(b"\n") + 1 :]
    if tail and _record(tail) is None:
        with open(path, "r+b") as fh:
            fh.truncate(len(data) - len(tail))
        data = data[: len(data) - len(tail)]
    elif tail:  # complete but unterminated: terminate it so an append starts a new line
        with open(path, "ab") as fh:
            fh.write(b"\n")
    out = []
    for n, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            record = _record(line)
            if record is None:
                raise UsageError(f"{path}:{n}: not a benchmark record (JSON object)")
            out.append(record)
    return out


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------------------------
# running cells
# ------------------------------------------------------------------------------------------------


def run_cell(
    cell: Cell,
    temperature: float,
    mode: str,
    fmt: str,
    constraints: list[Constraints],
    model: Any,
    reference: Reference | None,
    seed: int,
) -> dict[str, Any]:
    from ..decoding.driver import run_generation

    run = run_generation(
        constraints,
        1,
        temperature=temperature,
        seed=seed,
        model=model,
        constrained=mode == "constrained",
        fmt=fmt,
    )
    outcomes = [Outcome(g.graph, g.constraints) for g in run.generations]
    valid_n = sum(g.valid for g in run.generations)
    s = run.stats
    return {
        "num_edges": cell.num_edges,
        "depth": cell.depth,
        "temperature": temperature,
        "mode": mode,
        "format": fmt,
        "samples": len(constraints),
        "validity": validity(outcomes),
        "instruction_accuracy": instruction_accuracy(outcomes),
        "semantic_validity": semantic_validity(outcomes, reference)
        if reference and valid_n
        else None,
        "forward_passes": s.forward_passes,
        "sampled_tokens": s.sampled_tokens,
        "forced_tokens": s.forced_tokens,
        "wall_s": round(s.wall_s, 3),
        "engine_s": round(s.engine_s, 3),
        "forward_passes_per_valid": s.forward_passes / valid_n if valid_n else None,
        "wall_s_per_valid": s.wall_s / valid_n if valid_n else None,
    }


Task = tuple[Cell, float, str, str, int, int]  # cell, temperature, mode, encoding, samples, seed
_STATE: dict[str, Any] = {}  # per process: the model and the prompt sources


Sources = tuple[list[CallGraph], Reference]


def _prompt_sources(data: str) -> Sources:
    """Prompts from graphs the adapter never saw; semantic validity: calls seen in training."""
    from ..training.datasets import recipe_split

    split = recipe_split(data)
    return list(split.validation), Reference.from_graphs(split.train)


def _load_state(
    data: str, model: str | None, adapter: str | None, threads: int, sources: Sources | None = None
) -> None:
    """Load what one process needs to run cells (the pool's initializer; in-process, the
    already loaded `sources` are passed)."""
    import torch

    from ..decoding.models import load_model

    if threads:
        torch.set_num_threads(threads)
    real, reference = sources or _prompt_sources(data)
    _STATE.update(model=load_model(model, adapter), real=real, reference=reference)


def _run_task(task: Task) -> dict[str, Any]:
    """One cell's record; a cell that fails (out of GPU memory, say) comes back as an `error`
    record, which is reported and not written, so the rest of the grid goes on and a rerun
    retries it."""
    cell, temp, mode, fmt, samples, seed = task
    try:
        cs = prompts(cell, samples, _STATE["real"], seed)
        return run_cell(cell, temp, mode, fmt, cs, _STATE["model"], _STATE["reference"], seed)
    except Exception as exc:  # reported per cell, the run goes on
        where = f"cell {cell.num_edges}x{cell.depth}, T={temp}, {mode}, {fmt}"
        first = (str(exc).splitlines() or [""])[0][:200]
        return {"error": f"{where}: {type(exc).__name__}: {first}"}


def _results(
    tasks: list[Task], workers: int, time_limit: float, load: tuple, sources: Sources
) -> Iterator[dict[str, Any]]:
    """Run the tasks in this process or over a pool of `workers` processes (each with its own
    copy of the model: the engine's per-row work is Python on one core, so on a machine with many
    cores and a GPU the cells of a grid run side by side). Yields records as they finish; past
    `time_limit` seconds no new cell starts and unfinished ones are dropped (a rerun does them)."""
    deadline = time.monotonic() + time_limit if time_limit else None
    if workers <= 1:
        _load_state(*load, sources)
        for task in tasks:
            if deadline is not None and time.monotonic() > deadline:
                return
            yield _run_task(task)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, _load_state, load) as pool:
        it = pool.imap_unordered(_run_task, tasks, chunksize=1)
        for _ in tasks:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                yield it.next(timeout=max(left, 0.0)) if left is not None else it.next()
            except mp.TimeoutError:
                pool.terminate()
                return


def run_validity(opts: ValidityOptions, model_name: str) -> int:
    """Run the cells not yet recorded in `opts.out`, then write the summary; `model_name` is how
    the summary names the model. Exit status: 0, or 1 when a cell failed."""
    import os

    from tqdm.auto import tqdm

    if opts.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {opts.workers}")
    planned = plan(opts)  # bad options fail here, before anything is read or written
    sources = _prompt_sources(opts.data)  # bad data fails here, before any model loads
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    done = {record_key(r) for r in read_records(records_path)}
    tasks: list[Task] = [
        (c, t, m, f, opts.samples, opts.seed)
        for c, t, m, f in planned
        if task_key(c, t, m, f) not in done
    ]
    threads = max(1, (os.cpu_count() or 1) // opts.workers) if opts.workers > 1 else 0
    load = (opts.data, opts.model, opts.adapter, threads)
    new = failed = 0
    with open(records_path, "a", encoding="utf-8") as fh:
        bar = tqdm(total=len(tasks), desc="bench validity", unit="cell")
        for rec in _results(tasks, opts.workers, opts.time_limit, load, sources):
            bar.update()
            if "error" in rec:
                failed += 1
                bar.write(f"failed: {rec['error']}")
                continue
            fh.write(json.dumps(rec) + "\n")
            fh.flush()  # a killed run keeps every finished cell
            new += 1
        bar.close()
    meta = run_meta(model_name, opts.samples, opts.workers)
    write_summary(out, read_records(records_path), meta)
    left = len(tasks) - new
    print(
        f"wrote {out}/summary.md, summary.json, heat maps ({new} new cells"
        + (f"; {left} left for a rerun" if left else "")
        + (f", {failed} of them failed" if failed else "")
        + ")"
    )
    return 0 if not failed else 1


def rewrite_summary(out: Path) -> int:
    """`--summary-only`: the summary again from the records in `out`, keeping the description of
    the machine and run that `summary.json` recorded when they were measured."""
    records_path, summary_path = out / "records.jsonl", out / "summary.json"
    if not records_path.is_file():
        raise UsageError(f"--out {out}: no records.jsonl to summarize")
    if not summary_path.is_file():
        raise UsageError(f"--out {out}: no summary.json with the machine the records ran on")
    meta = json.loads(summary_path.read_text())["meta"]
    write_summary(out, read_records(records_path), meta)
    print(f"rewrote {out}/summary.md, summary.json, heat maps")
    return 0
