"""One worker of a distributed job: loads the model once, then writes shards on request.

Plain Python (no Ray here): `ray_runner` wraps it as a Ray actor, and the same class runs a shard
in-process. torch is imported when the worker is made, never by importing this module.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constraints import Constraints
from ..io import generation_record
from .plan import JobOptions, Shard


@dataclass(frozen=True)
class ShardResult:
    """A finished shard: its JSON Lines records (in order) and what it cost."""

    shard: Shard
    records: list[dict[str, Any]]
    valid: int
    seconds: float
    worker: str
    stats: dict[str, int] = field(default_factory=dict)


class ShardWorker:
    """Holds one loaded model (and the semantic reference) for the worker's lifetime."""

    def __init__(
        self, options: JobOptions, device: str | None = None, *, model: Any = None
    ) -> None:
        """Load the model `options` names (on `device`; default: a GPU if visible), or use
        `model`, a `LoadedModel` this process already holds (in-process runs)."""
        from ..decoding.models import default_adapter_dir, load_model

        adapter: Any = options.adapter
        if adapter == "default":
            adapter = default_adapter_dir()
        self.options = options
        self.lm = model if model is not None else load_model(options.model, adapter, device=device)
        self.reference = None
        if options.semantic:
            from ..reference import Reference
            from ..traces import load_traces

            self.reference = Reference.from_graphs(load_traces(options.semantic))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.calls = 0

    def run(
        self, chunks: Mapping[int, Sequence[Constraints]], seed: int, shard: Shard
    ) -> ShardResult:
        """Shard `shard` of the job whose seed is `seed`; `chunks` holds the requests (one per
        graph) of every chunk the shard touches (`chunk_requests`)."""
        from ..decoding.driver import run_generation

        self.calls += 1
        start = time.perf_counter()
        records: list[dict[str, Any]] = []
        valid = 0
        stats = {"forward_passes": 0, "sampled_tokens": 0, "forced_tokens": 0}
        o = self.options
        for piece in shard.pieces(seed):
            run = run_generation(
                list(chunks[piece.chunk]),
                1,
                temperature=o.temperature,
                top_k=o.top_k,
                seed=piece.seed,
                model=self.lm,
                constrained=o.constrained,
                fmt=o.fmt,
                reference=self.reference,
                novel_calls=o.novel_calls,
                only=range(piece.lo, piece.hi),
            )
            records.extend(generation_record(g) for g in run.generations)
            valid += sum(g.valid for g in run.generations)
            for key in stats:
                stats[key] += getattr(run.stats, key)
        seconds = time.perf_counter() - start
        return ShardResult(shard, records, valid, seconds, self.name, stats)

    def calls_made(self) -> int:
        """How many shards this worker has run (tests count them)."""
        return self.calls
