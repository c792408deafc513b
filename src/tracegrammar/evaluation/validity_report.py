"""The validity benchmark's summary: per (mode, encoding, temperature) means over the cells, the
throughput ratio of constrained over unconstrained decoding, and `summary.json`, `summary.md` and
the heat maps written from the records."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..io import atomic_writer
from .grid import by_group
from .heatmaps import heatmaps
from .tables import machine, table_lines


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (mode, format, temperature): sample-weighted means over the cells."""
    rows = []
    for (mode, fmt, temp), rs in by_group(records):
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
    cells = {key: {(r["num_edges"], r["depth"]): r for r in rs} for key, rs in by_group(records)}
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


def run_meta(model_name: str, samples: int, workers: int) -> dict[str, Any]:
    """What the summary says about the run: model, machine, samples, workers, date."""
    return {
        "model": model_name,
        "machine": machine(),
        "samples_per_cell": samples,
        "workers": workers,
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


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
