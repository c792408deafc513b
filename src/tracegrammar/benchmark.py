"""`tracegrammar bench validity`: validity and instruction accuracy over the papers' grid
(num_edges x depth, skipping depth > num_edges and depth 1 with more than one call), at several
temperatures, constrained vs unconstrained, recursive layers vs tabular.

Each (cell, temperature, mode, format) is one record in `records.jsonl` under the output folder;
a rerun skips the records already there, so a long run resumes where it stopped. The summary is
written as `summary.json`, `summary.md` and one heat map per (mode, format, temperature).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .constraints import Constraints
from .errors import UsageError
from .io import atomic_writer
from .metrics import Outcome, instruction_accuracy, semantic_validity, validity
from .reference import Reference
from .types import CallGraph

MODES = ("constrained", "unconstrained")
FORMATS = ("layer", "layer_instruct", "tabular")


@dataclass(frozen=True)
class Cell:
    num_edges: int
    depth: int


def grid(max_edges: int = 30, max_depth: int = 6) -> list[Cell]:
    """The papers' cells: depth <= num_edges, and depth 1 only with one call (136 for 30 x 6)."""
    return [
        Cell(n, d)
        for n in range(1, max_edges + 1)
        for d in range(1, max_depth + 1)
        if d <= n and (d > 1 or n == 1) and (n == 1) == (d == 1)
    ]


def prompts(cell: Cell, samples: int, real: list[CallGraph], seed: int) -> list[Constraints]:
    """Service ids and latencies taken from real graphs (seeded), sizes from the cell."""
    rng = random.Random(f"{seed}/{cell.num_edges}/{cell.depth}")
    picks = [rng.choice(real) for _ in range(samples)]
    return [Constraints(g.service, cell.num_edges, cell.depth, max(g.latency, 1)) for g in picks]


def task_key(
    cell: Cell, temperature: float, mode: str, fmt: str
) -> tuple[int, int, float, str, str]:
    return (cell.num_edges, cell.depth, float(temperature), mode, fmt)


def record_key(r: dict[str, Any]) -> tuple[int, int, float, str, str]:
    return task_key(Cell(r["num_edges"], r["depth"]), r["temperature"], r["mode"], r["format"])


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
    from .decoding.driver import run_generation

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


def plan(args: argparse.Namespace) -> list[tuple[Cell, float, str, str]]:
    cells = grid(args.max_edges, args.max_depth)
    only = getattr(args, "only", None)
    if only:
        missing = sorted(set(only) - set(cells))
        if missing:
            c = missing[0]
            raise UsageError(f"--only: cell {c.num_edges}x{c.depth} is not in the grid")
        cells = [c for c in cells if c in set(only)]
    if args.cells and args.cells < len(cells):
        cells = sorted(
            random.Random(args.seed).sample(cells, args.cells), key=lambda c: (c.num_edges, c.depth)
        )
    return [
        (c, t, m, f)
        for t in args.temperatures
        for m in args.modes
        for f in args.formats
        for c in cells
    ]


Task = tuple[Cell, float, str, str, int, int]  # cell, temperature, mode, format, samples, seed
_STATE: dict[str, Any] = {}  # per process: the model and the prompt sources


Sources = tuple[list[CallGraph], Reference]


def _prompt_sources(data: str) -> Sources:
    """Prompts from graphs the adapter never saw; semantic validity: calls seen in training."""
    from .training.datasets import recipe_split

    split = recipe_split(data)
    return list(split.validation), Reference.from_graphs(split.train)


def _load_state(
    data: str, model: str | None, adapter: str | None, threads: int, sources: Sources | None = None
) -> None:
    """Load what one process needs to run cells (the pool's initializer; in-process, the
    already loaded `sources` are passed)."""
    import torch

    from .decoding.models import load_model

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
    tasks: list[Task], args: argparse.Namespace, load: tuple, sources: Sources
) -> Iterator[dict[str, Any]]:
    """Run the tasks in this process or over a pool of `args.workers` processes (each with its
    own copy of the model: the engine's per-row work is Python on one core, so on a machine with
    many cores and a GPU the cells of a grid run side by side). Yields records as they finish;
    past `args.time_limit` seconds no new cell starts and unfinished ones are dropped (a rerun
    does them)."""
    deadline = time.monotonic() + args.time_limit if args.time_limit else None
    if args.workers <= 1:
        _load_state(*load, sources)
        for task in tasks:
            if deadline is not None and time.monotonic() > deadline:
                return
            yield _run_task(task)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(args.workers, _load_state, load) as pool:
        it = pool.imap_unordered(_run_task, tasks, chunksize=1)
        for _ in tasks:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                yield it.next(timeout=max(left, 0.0)) if left is not None else it.next()
            except mp.TimeoutError:
                pool.terminate()
                return


def run_validity(args: argparse.Namespace) -> int:
    import os

    from tqdm.auto import tqdm

    from .decoding.driver import default_adapter_dir
    from .decoding.models import DEFAULT_NAME

    if args.summary_only:
        return rewrite_summary(Path(args.out))
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    planned = plan(args)  # bad options fail here, before anything is read or written
    sources = _prompt_sources(args.data)  # bad data fails here, before any model loads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adapter = None if args.adapter == "none" else (args.adapter or default_adapter_dir())
    adapter = str(adapter) if adapter is not None else None
    model_name = (args.model or DEFAULT_NAME) + (f"+{Path(adapter).name}" if adapter else "")
    records_path = out / "records.jsonl"
    done = {record_key(r) for r in read_records(records_path)}
    tasks: list[Task] = [
        (c, t, m, f, args.samples, args.seed)
        for c, t, m, f in planned
        if task_key(c, t, m, f) not in done
    ]
    threads = max(1, (os.cpu_count() or 1) // args.workers) if args.workers > 1 else 0
    load = (args.data, args.model, adapter, threads)
    new = failed = 0
    with open(records_path, "a", encoding="utf-8") as fh:
        bar = tqdm(total=len(tasks), desc="bench validity", unit="cell")
        for rec in _results(tasks, args, load, sources):
            bar.update()
            if "error" in rec:
                failed += 1
                bar.write(f"failed: {rec['error']}")
                continue
            fh.write(json.dumps(rec) + "\n")
            fh.flush()  # a killed run keeps every finished cell
            new += 1
        bar.close()
    write_summary(out, read_records(records_path), run_meta(model_name, args))
    left = len(tasks) - new
    print(
        f"wrote {out}/summary.md, summary.json, heat maps ({new} new cells"
        + (f"; {left} left for a rerun" if left else "")
        + (f", {failed} of them failed" if failed else "")
        + ")"
    )
    return 0 if not failed else 1


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (mode, format, temperature): sample-weighted means over the cells."""
    rows = []
    for (mode, fmt, temp), rs in _by_group(records):
        n = sum(r["samples"] for r in rs)
        valid_n = sum(r["validity"] * r["samples"] for r in rs)
        sem = [r for r in rs if r["semantic_validity"] is not None]
        sem_w = sum(r["validity"] * r["samples"] for r in sem)
        rows.append(
            {
                "mode": mode,
                "format": fmt,
                "temperature": temp,
                "cells": len(rs),
                "samples": n,
                "validity": valid_n / n,
                "instruction_accuracy": sum(r["instruction_accuracy"] * r["samples"] for r in rs)
                / n,
                "semantic_validity": (
                    sum(r["semantic_validity"] * r["validity"] * r["samples"] for r in sem) / sem_w
                    if sem_w
                    else None
                ),
                "min_cell_validity": min(r["validity"] for r in rs),
                "forward_passes_per_valid": sum(r["forward_passes"] for r in rs) / valid_n
                if valid_n
                else None,
                "wall_s_per_valid": sum(r["wall_s"] for r in rs) / valid_n if valid_n else None,
            }
        )
    return rows


def speed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (format, temperature): valid graphs per second constrained over raw graphs per second
    unconstrained, pooled over the cells run in both modes (the issue's throughput target, on
    the grid's prompts; each mode's cells ran on the same prompts)."""
    cells = {key: {(r["num_edges"], r["depth"]): r for r in rs} for key, rs in _by_group(records)}
    rows = []
    for (mode, fmt, temp), con in cells.items():
        if mode != "constrained":
            continue
        unc = cells.get(("unconstrained", fmt, temp), {})
        common = sorted(set(con) & set(unc))
        if not common:
            continue
        valid = sum(con[k]["validity"] * con[k]["samples"] for k in common)
        con_s = sum(con[k]["wall_s"] for k in common)
        raw = sum(unc[k]["samples"] for k in common)
        unc_s = sum(unc[k]["wall_s"] for k in common)
        valid_per_s, raw_per_s = valid / con_s, raw / unc_s
        rows.append(
            {
                "format": fmt,
                "temperature": temp,
                "cells": len(common),
                "max_num_edges": max(k[0] for k in common),
                "constrained_valid_per_s": valid_per_s,
                "unconstrained_raw_per_s": raw_per_s,
                "ratio": valid_per_s / raw_per_s,
            }
        )
    return rows


def machine() -> str:
    import os
    import sys

    text = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    torch = sys.modules.get("torch")  # never imported just for this
    if torch is not None and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def run_meta(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """What the summary says about the run: model, machine, samples, workers, date."""
    return {
        "model": model_name,
        "machine": machine(),
        "samples_per_cell": args.samples,
        "workers": args.workers,
        "date": time.strftime("%Y-%m-%d"),
    }


def write_summary(out: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """summary.json, summary.md and the heat maps; `meta` describes the run (`run_meta`)."""
    rows = summarize(records)
    ratios = speed(records)
    with atomic_writer(out / "summary.json") as fh:
        json.dump({"meta": meta, "rows": rows, "speed": ratios}, fh, indent=1)
    with atomic_writer(out / "summary.md") as fh:
        fh.write(markdown_table(rows, meta) + speed_table(ratios))
    heatmaps(records, out)


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


def markdown_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"Model: `{meta['model']}`; machine: {meta['machine']}; {meta['samples_per_cell']} samples per cell; "
        f"{meta.get('workers', 1)} worker process(es) sharing the machine (wall time per valid graph is "
        f"measured per cell, under that sharing); {meta['date']}.",
        "",
    ]
    columns = ["mode", "format", "T", "cells", "samples", "validity", "instruction acc.",
               "semantic", "min cell validity", "forward passes / valid", "s / valid"]  # fmt: skip
    cells = [
        [
            r["mode"],
            r["format"],
            r["temperature"],
            r["cells"],
            r["samples"],
            f"{r['validity']:.1%}",
            f"{r['instruction_accuracy']:.1%}",
            _pct(r["semantic_validity"]),
            f"{r['min_cell_validity']:.1%}",
            _num(r["forward_passes_per_valid"]),
            _num(r["wall_s_per_valid"]),
        ]
        for r in rows
    ]
    return "\n".join(lines + table_lines(columns, cells)) + "\n"


def speed_table(ratios: list[dict[str, Any]]) -> str:
    if not ratios:
        return ""
    lines = [
        "",
        "Throughput on the cells run in both modes (the engine's target: valid graphs per second "
        "constrained >= 2x raw graphs per second unconstrained):",
        "",
    ]
    columns = ["format", "T", "cells (num_edges <=)", "valid / s, constrained",
               "raw / s, unconstrained", "ratio"]  # fmt: skip
    cells = [
        [
            r["format"],
            r["temperature"],
            f"{r['cells']} ({r['max_num_edges']})",
            f"{r['constrained_valid_per_s']:.2f}",
            f"{r['unconstrained_raw_per_s']:.2f}",
            f"{r['ratio']:.2f}",
        ]
        for r in ratios
    ]
    return "\n".join(lines + table_lines(columns, cells)) + "\n"


def table_lines(columns: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table's lines."""
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(x) for x in row) + " |" for row in rows),
    ]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def heatmaps(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """Instruction accuracy per (num_edges, depth), like the papers' grids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    for key, rs in _by_group(records):
        mode, fmt, temp = key
        n_max = max(r["num_edges"] for r in rs)
        d_max = max(r["depth"] for r in rs)
        grid_ = np.full((d_max, n_max), np.nan)
        for r in rs:
            grid_[r["depth"] - 1, r["num_edges"] - 1] = r["instruction_accuracy"]
        fig, ax = plt.subplots(figsize=(max(6, n_max * 0.35), 2.6))
        im = ax.imshow(grid_, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(n_max), [str(i + 1) for i in range(n_max)], fontsize=7)
        ax.set_yticks(range(d_max), [str(i + 1) for i in range(d_max)])
        ax.set_xlabel("num_edges")
        ax.set_ylabel("depth")
        ax.set_title(f"instruction accuracy: {mode}, {fmt}, T={temp}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = out / f"heatmap_{mode}_{fmt}_T{temp}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _by_group(
    records: list[dict[str, Any]],
) -> Iterator[tuple[tuple[str, str, float], list[dict[str, Any]]]]:
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["mode"], r["format"], float(r["temperature"])), []).append(r)
    yield from sorted(groups.items())


def register_bench(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(metavar="BENCH")
    v = sub.add_parser("validity", help="validity over the num_edges x depth grid")
    v.add_argument(
        "--data", default="../shared/data", help="real traces for prompts and the reference set"
    )
    v.add_argument(
        "--out", default="bench/results/validity", help="output folder (resumes if present)"
    )
    v.add_argument("--samples", type=int, default=50, help="samples per cell (default 50)")
    v.add_argument(
        "--cells", type=int, default=0, help="a seeded random subset of this many cells (0: all)"
    )
    v.add_argument(
        "--only",
        type=_cells,
        help="just these cells, as NUM_EDGESxDEPTH separated by commas (e.g. 14x6,20x5)",
    )
    v.add_argument("--max-edges", type=int, default=30)
    v.add_argument("--max-depth", type=int, default=6)
    v.add_argument("--temperatures", type=_floats, default=[0.2, 0.5, 0.8, 1.0])
    v.add_argument("--modes", type=_choices(MODES), default=list(MODES))
    v.add_argument("--formats", type=_choices(FORMATS), default=["layer", "tabular"])
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--model", help="base model directory (default: embedded SmolLM2)")
    v.add_argument("--adapter", help="LoRA adapter (default: shipped; 'none' for the bare base)")
    v.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes running cells side by side, each with its own model (default 1)",
    )
    v.add_argument(
        "--time-limit",
        type=float,
        default=0,
        help="seconds after which no new cell starts (unfinished cells are left for a rerun)",
    )
    v.add_argument(
        "--summary-only",
        action="store_true",
        help="run nothing: write the summary again from the records in --out, keeping the "
        "machine they were measured on",
    )
    v.set_defaults(func=run_validity)
    from .evaluation.fidelity import register_fidelity  # its code lives in evaluation/

    register_fidelity(sub)


def _cells(text: str) -> list[Cell]:
    try:
        return [Cell(*(int(x) for x in item.split("x"))) for item in text.split(",") if item]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected cells as NUM_EDGESxDEPTH separated by commas, got {text!r}"
        ) from None


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _choices(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [x for x in text.split(",") if x]
        bad = [x for x in items if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {bad[0]!r}; choose from {', '.join(allowed)}"
            )
        return items

    return parse
