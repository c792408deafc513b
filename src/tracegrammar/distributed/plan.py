"""The plan of a generation job: the chunks and their seeds (what `tracegrammar generate` does in
one process), and shards of it that run anywhere and come out the same. Torch-free, Ray-free.

A job is a list of requests (one per graph) and a seed. Its graphs are made chunk by chunk:
chunk k holds requests [32k, 32k + 32) and runs with seed `chunk_seed(seed, k)`, each graph
sampled from generators seeded by (chunk seed, its position in the chunk, rpc id). A shard is any
contiguous range of the job's graphs; it runs the pieces of the chunks it covers with
`run_generation(chunk, only=piece)`, which gives exactly those positions of the chunk's run. So
a shard's graphs do not depend on the shard size, the worker or the machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..constraints import Constraints
from ..errors import InputError

#: Graphs decoded together, and written, at a time by `tracegrammar generate`; the unit of seeds.
CHUNK = 32


def chunk_seed(seed: int, chunk: int) -> int:
    """The first chunk uses the seed itself (a run of <= CHUNK graphs is what `generate` gives);
    later chunks a seed derived from it, so equal requests in two chunks differ."""
    if chunk == 0:
        return seed
    digest = hashlib.sha256(f"{seed}/chunk{chunk}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1


@dataclass(frozen=True)
class Piece:
    """The part of one chunk a shard runs: positions [lo, hi) of chunk `chunk`."""

    chunk: int
    seed: int
    lo: int
    hi: int

    @property
    def start(self) -> int:
        """Where the chunk starts in the job's request list."""
        return self.chunk * CHUNK


@dataclass(frozen=True)
class Shard:
    """Graphs [start, stop) of the job; written to its own file."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def file(self) -> str:
        return f"shard-{self.index:05d}.jsonl"

    def pieces(self, seed: int) -> list[Piece]:
        out = []
        at = self.start
        while at < self.stop:
            chunk = at // CHUNK
            end = min(self.stop, (chunk + 1) * CHUNK)
            out.append(
                Piece(chunk, chunk_seed(seed, chunk), at - chunk * CHUNK, end - chunk * CHUNK)
            )
            at = end
        return out


def chunk_requests(
    requests: Sequence[Constraints], shard: Shard, seed: int
) -> dict[int, list[Constraints]]:
    """The requests of every chunk `shard` touches: all a worker needs to run it."""
    return {p.chunk: list(requests[p.start : p.start + CHUNK]) for p in shard.pieces(seed)}


def plan_shards(total: int, shard_size: int = CHUNK) -> list[Shard]:
    """Consecutive shards of `shard_size` graphs (the last may be smaller)."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InputError(f"shard_size must be an integer >= 1, got {shard_size!r}")
    if total < 1:
        raise InputError(f"a job needs at least one graph, got {total}")
    starts = range(0, total, shard_size)
    return [Shard(i, a, min(a + shard_size, total)) for i, a in enumerate(starts)]


@dataclass(frozen=True)
class JobOptions:
    """Everything besides the requests and the seed that decides a job's graphs.

    `model`: a base model directory (None: the embedded default); `adapter`: a LoRA adapter
    directory, "default" (the shipped adapter, found on each worker) or None (the bare base);
    `semantic`: traces whose calls the semantic rules allow (None: the adapter's reference).
    Paths must name the same files on every node of a cluster.
    """

    temperature: float = 0.8
    top_k: int = 50
    constrained: bool = True
    fmt: str = "layer"
    novel_calls: bool = False
    model: str | None = None
    adapter: str | None = "default"
    semantic: str | None = None


def job_key(
    requests: Sequence[Constraints], seed: int, options: JobOptions, shard_size: int
) -> dict:
    """What identifies a job in its manifest: a rerun with the same key resumes it."""
    listing = json.dumps([c.as_dict() for c in requests], separators=(",", ":"), sort_keys=True)
    return {
        "seed": seed,
        "graphs": len(requests),
        "chunk": CHUNK,
        "shard_size": shard_size,
        "requests_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "options": asdict(options),
    }
