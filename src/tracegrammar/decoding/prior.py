"""Graph attributes the user left unset are drawn from a prior: the (num_edges, depth, latency)
of training graphs, stored as `prior.json` beside an adapter. Torch-free."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..constraints import Constraints
from ..errors import ModelError
from ..rules import feasible_shape, nearest_feasible_depth
from ..types import CallGraph

PRIOR_FILE = "prior.json"


def _count(value: object) -> int:
    """A whole number >= 0 from JSON (not a bool, a fraction or a string)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected whole numbers >= 0, got {value!r}")
    return value


#: Used when no prior is available: small graphs, like most real ones.
FALLBACK: tuple[tuple[int, int, int], ...] = (
    (1, 1, 10), (2, 2, 20), (3, 2, 30), (4, 3, 40), (5, 3, 50), (6, 3, 60), (8, 4, 80),
)  # fmt: skip


@dataclass(frozen=True)
class Prior:
    shapes: tuple[tuple[int, int, int], ...] = FALLBACK

    @classmethod
    def from_graphs(cls, graphs: Iterable[CallGraph]) -> Prior:
        return cls(tuple(sorted((g.num_edges, g.depth, g.latency) for g in graphs)))

    @classmethod
    def load(cls, path: str | Path) -> Prior:
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise TypeError(f"a list of rows expected, got {type(rows).__name__}")
            shapes = tuple(tuple(_count(v) for v in x) for x in rows)
        except (OSError, ValueError, TypeError, RecursionError) as exc:  # a damaged adapter
            raise ModelError(f"{path}: not a shape prior ({str(exc)[:120]})") from None
        if not shapes or any(len(s) != 3 or s[0] < 1 or s[1] < 1 for s in shapes):
            raise ModelError(
                f"{path}: not a shape prior (non-empty rows of num_edges >= 1, depth >= 1, "
                f"latency >= 0)"
            )
        return cls(shapes)  # type: ignore[arg-type]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps([list(s) for s in self.shapes]))

    def complete(self, c: Constraints, rng: random.Random) -> tuple[int, int, int]:
        """(num_edges, depth, latency) with the user's values kept and the rest drawn from the
        training shapes that agree with them (or made feasible when none does)."""
        fits = [
            s
            for s in self.shapes
            if (c.num_edges is None or s[0] == c.num_edges) and (c.depth is None or s[1] == c.depth)
        ]
        n, d, lat = rng.choice(fits) if fits else rng.choice(self.shapes)
        n = c.num_edges if c.num_edges is not None else n
        d = c.depth if c.depth is not None else d
        if c.num_edges is None and not feasible_shape(n, d):
            n = d  # the fewest calls a graph of the requested depth has
        if c.depth is None:
            d = nearest_feasible_depth(n, d)
        latency = c.latency if c.latency is not None else max(lat, 1)
        return n, d, latency
