"""JSON Lines: one call graph per line. The interchange format of `generate`, `eval` and exports.

A line is `{"service": "S_1", "edges": [{"rpc_id": "0", "source": "USER", "destination": "MS_1",
"type": "http", "start": 0, "finish": 12}, ...]}`, optionally with extra keys (e.g. `"valid"`,
`"violations"`, `"constraints"`) that readers ignore.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .types import CallGraph, Edge

EDGE_KEYS = ("rpc_id", "source", "destination", "type", "start", "finish")


def graph_to_dict(graph: CallGraph, **extra: Any) -> dict[str, Any]:
    return {
        "service": graph.service,
        "edges": [{k: getattr(e, k) for k in EDGE_KEYS} for e in graph.edges],
        **extra,
    }


def graph_from_dict(data: dict[str, Any]) -> CallGraph:
    try:
        edges = tuple(
            Edge(
                str(e["rpc_id"]),
                str(e["source"]),
                str(e["destination"]),
                str(e["type"]),
                int(e["start"]),
                int(e["finish"]),
            )
            for e in data["edges"]
        )
        return CallGraph(str(data["service"]), edges)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a call graph record: {exc!r}") from None


def read_jsonl(path: str | Path) -> Iterator[CallGraph]:
    """Graphs from a JSON Lines file; a bad line raises ValueError naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield graph_from_dict(json.loads(line))
            except (json.JSONDecodeError, ValueError) as exc:
                raise ValueError(f"{p}:{n}: {exc}") from None


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it into place only on success, so an
    interrupted run never leaves a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(graphs: Iterable[CallGraph | dict[str, Any]], path: str | Path) -> int:
    count = 0
    with atomic_writer(path) as fh:
        for g in graphs:
            record = graph_to_dict(g) if isinstance(g, CallGraph) else g
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            count += 1
    return count


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
