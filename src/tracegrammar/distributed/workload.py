"""A workload (a window of traffic, coarse to fine) with its graphs generated on Ray actors.

The window's contexts are written once, here (one model call); the graphs, one request per
context, are a distributed job (`run_distributed`: shards, manifest, resume, retries), then read
back in request order and stamped with their contexts' arrivals. The single-process
`workloads.run_workload` seeds its graph phase chunk by chunk as the job does, so the same seed
gives the same graphs and timestamps either way.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..context_prior import DEFAULT_PRIOR, PRIOR_MODES
from ..errors import ConstraintError, EngineError, InputError
from ..io import graph_from_dict
from ..workloads import (
    WindowRequest,
    Workload,
    as_epoch,
    graph_requests,
    stamp_graph,
    write_contexts,
)
from .manifest import job_seed, read_records
from .plan import CHUNK, JobOptions


def run_workload_distributed(
    start: float | str | Any,
    end: float | str | Any,
    num_traces: int,
    include: Sequence[str] = (),
    *,
    out_dir: str | Path,
    workers: int = 2,
    address: str | None = None,
    seed: int | None = None,
    model: Any = None,
    adapter: str | None = "default",
    temperature: float = 0.8,
    top_k: int = 50,
    semantic: str | None = None,
    max_edges: int | None = None,
    shard_size: int = CHUNK,
    retries: int = 2,
    progress: bool | Callable[[str], None] = True,
    prior: str = DEFAULT_PRIOR,
    actors_per_gpu: int = 1,
) -> Workload:
    """`workloads.run_workload(method="model")` with the graphs generated on `workers` Ray
    actors; the job's shards and manifest go to `out_dir` (`run_distributed`). Same seed, same
    workload as the single-process run.

    `model`: a base model directory (None: the embedded one) with `adapter` ("default": the
    shipped adapter; None: the bare base), or a `LoadedModel` (its base and adapter paths are
    what the actors load). `semantic`: traces whose calls the rules allow (None: the adapter's
    reference), for the contexts' services and the graphs alike. `prior`: how the contexts'
    services and arrivals are drawn (`workloads.generate_workload`). `actors_per_gpu`: as
    `run_distributed`'s. Without a seed, the seed of the job already in `out_dir` (so a rerun
    resumes it), else a random one. Raises as `run_distributed` does (MissingExtraError without
    Ray, ShardsUnfinishedError)."""
    from ..decoding.models import (
        DEFAULT_NAME,
        LoadedModel,
        cache_dir,
        default_adapter_dir,
        load_model,
    )
    from .ray_runner import run_distributed

    request = WindowRequest(
        as_epoch(start, "start"), as_epoch(end, "end"), num_traces, tuple(include)
    )
    if prior not in PRIOR_MODES:
        raise ConstraintError(f"prior must be one of {PRIOR_MODES}, got {prior!r}", "prior")
    if seed is None:
        seed = job_seed(out_dir)
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
    if isinstance(model, LoadedModel):
        lm = model
        embedded = Path(model.base) == cache_dir() / DEFAULT_NAME  # each worker finds its own
        base: str | None = None if embedded else model.base
        adapter = model.adapter
    else:
        base = None if model is None else str(model)
        local_adapter = default_adapter_dir() if adapter == "default" else adapter
        lm = load_model(base, local_adapter)
    reference = None
    if semantic is not None:
        from ..reference import Reference
        from ..traces import load_traces

        reference = Reference.from_graphs(load_traces(semantic))
    contexts, text, stats = write_contexts(
        request,
        lm,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        reference=reference,
        max_edges=max_edges,
        prior=prior,
    )
    options = JobOptions(
        temperature=temperature, top_k=top_k, model=base, adapter=adapter, semantic=semantic
    )
    report = run_distributed(
        graph_requests(contexts),
        seed=seed,
        out_dir=out_dir,
        workers=workers,
        address=address,
        options=options,
        shard_size=shard_size,
        retries=retries,
        actors_per_gpu=actors_per_gpu,
        progress=progress,
    )
    records = list(read_records(out_dir))
    if len(records) != len(contexts):
        raise InputError(f"{out_dir}: {len(records)} graphs for {len(contexts)} contexts")
    bad = [r for r in records if not r.get("valid")]
    if bad:  # constrained graphs are valid: a broken promise, not a user error
        raise EngineError(f"constrained output failed the oracle: {bad[0].get('violations')}")
    graphs = [
        stamp_graph(graph_from_dict(r), request, c) for r, c in zip(records, contexts, strict=True)
    ]
    measured = {
        "context_wall_s": stats.wall_s,
        "context_forward_passes": stats.forward_passes,
        "graph_wall_s": report.seconds,
        "shards_run": len(report.ran),
        "shards_skipped": len(report.skipped),
        "workers": report.workers,
    }
    return Workload(request, contexts, graphs, "model", seed, text, measured)
