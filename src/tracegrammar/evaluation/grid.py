"""The validity benchmark's grid: the papers' (num_edges, depth) cells, the prompts of a cell, and
the keys that name a record (cell, temperature, mode, encoding)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..constraints import Constraints
from ..rules import feasible_shape
from ..types import CallGraph

#: Constrained decoding, or the same model writing freely (the comparison).
MODES: tuple[str, ...] = ("constrained", "unconstrained")

TaskKey = tuple[int, int, float, str, str]


@dataclass(frozen=True)
class Cell:
    num_edges: int
    depth: int


def grid(max_edges: int = 30, max_depth: int = 6) -> list[Cell]:
    """The papers' cells: the feasible shapes (`rules.feasible_shape`: depth <= num_edges, depth
    1 only with one call), 136 for 30 x 6."""
    return [
        Cell(n, d)
        for n in range(1, max_edges + 1)
        for d in range(1, max_depth + 1)
        if feasible_shape(n, d)
    ]


def prompts(cell: Cell, samples: int, real: list[CallGraph], seed: int) -> list[Constraints]:
    """Service ids and latencies taken from real graphs (seeded), sizes from the cell."""
    rng = random.Random(f"{seed}/{cell.num_edges}/{cell.depth}")
    picks = [rng.choice(real) for _ in range(samples)]
    return [Constraints(g.service, cell.num_edges, cell.depth, max(g.latency, 1)) for g in picks]


def task_key(cell: Cell, temperature: float, mode: str, fmt: str) -> TaskKey:
    return (cell.num_edges, cell.depth, float(temperature), mode, fmt)


def record_key(r: dict[str, Any]) -> TaskKey:
    return task_key(Cell(r["num_edges"], r["depth"]), r["temperature"], r["mode"], r["format"])


def by_group(
    records: list[dict[str, Any]],
) -> Iterator[tuple[tuple[str, str, float], list[dict[str, Any]]]]:
    """Records grouped by (mode, encoding, temperature), in sorted order."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["mode"], r["format"], float(r["temperature"])), []).append(r)
    yield from sorted(groups.items())
