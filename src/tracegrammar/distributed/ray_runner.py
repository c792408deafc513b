"""`run_distributed`: a generation job split into shards, run on Ray actors, one loaded model
per actor (and one GPU per actor where the cluster has GPUs).

Ray does the cluster work: starting a local cluster or joining one (`address`), placing actors,
restarting a dead actor and retrying its call (`max_restarts`, `max_task_retries`). This module
only plans shards (`plan`), hands them to idle actors, writes each finished shard's file and the
manifest (`manifest`), and hands a shard whose actor failed past Ray's retries to another actor,
up to `retries` times. The coordinator writes every file, so workers on other nodes need no
shared file system, only the same model and adapter paths.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constraints import Constraints, expand_requests
from ..errors import InputError, MissingExtraError, ModelError, ShardsUnfinishedError
from .manifest import Manifest
from .plan import CHUNK, JobOptions, Shard, chunk_requests, job_key, plan_shards
from .worker import ShardResult, ShardWorker

#: A local cluster's shared-object store: shards travel as small lists of JSON records.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2


@dataclass
class JobReport:
    """What a `run_distributed` call did: shards run now, skipped (finished before), failed."""

    folder: Path
    shards: int
    graphs: int
    ran: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    valid: int = 0
    seconds: float = 0.0
    workers: int = 0
    gpus_per_worker: float = 0.0


def run_distributed(
    requests: Constraints | Sequence[Constraints],
    n: int = 1,
    *,
    seed: int,
    out_dir: str | Path,
    workers: int = 2,
    address: str | None = None,
    options: JobOptions | None = None,
    shard_size: int = CHUNK,
    retries: int = 2,
    worker_cpus: float = 1.0,
    actors_per_gpu: int = 1,
    progress: bool | Callable[[str], None] = True,
) -> JobReport:
    """Generate `n` graphs per request on `workers` Ray actors; write one JSON Lines file per
    shard of `shard_size` graphs and `manifest.json` into `out_dir`.

    The graphs are exactly those `tracegrammar generate` writes in one process for the same
    requests and seed (`plan`), whatever the shard size or the number of workers; the records
    are the same JSON Lines (`manifest.write_merged` puts them in one file). Calling again with
    the same arguments skips finished shards (after a crash, Ctrl-C or a lost node); a folder
    holding another job is refused. `address`: a running cluster ("auto", "ray://host:10001",
    "host:6379"); None starts a local one for this call (or uses the one this process already
    joined). `actors_per_gpu`: on a cluster with GPUs, how many actors share each (each asks
    Ray for 1/actors_per_gpu of one): the engine's per-row work is Python on one core, so on a
    machine with many cores several actors keep one GPU busier than one can. `progress`: a line
    per finished shard on stderr (or given to a callable).

    Raises MissingExtraError without Ray, ShardsUnfinishedError when shards failed past their
    retries (the others are kept; a rerun finishes them), InputError on bad arguments.
    """
    items = expand_requests(requests, n)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(
            f"seed must be an integer (a job resumes only with its seed), got {seed!r}"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InputError(f"retries must be an integer >= 0, got {retries!r}")
    if (
        isinstance(actors_per_gpu, bool)
        or not isinstance(actors_per_gpu, int)
        or actors_per_gpu < 1
    ):
        raise InputError(f"actors_per_gpu must be an integer >= 1, got {actors_per_gpu!r}")
    options = options or JobOptions()
    if address is None:
        _check_local_paths(options)
    shards = plan_shards(len(items), shard_size)
    manifest = Manifest.open(out_dir, job_key(items, seed, options, shard_size), shards)
    say = _say(progress)
    report = JobReport(Path(out_dir), len(shards), len(items))
    report.skipped = [s.index for s in shards if manifest.entries[s.index]["status"] == "done"]
    manifest.save()
    todo = manifest.pending()
    if todo:
        _Coordinator(items, seed, options, manifest, report, say, retries).run(
            todo, workers, address, worker_cpus, actors_per_gpu
        )
    manifest.save()
    report.valid = sum(int(manifest.entries[s.index].get("valid", 0)) for s in shards)
    if report.failed:
        raise ShardsUnfinishedError(
            f"{len(report.failed)} of {len(shards)} shards failed past {retries} retries "
            f"(shards {', '.join(map(str, report.failed[:10]))}); the rest is in {out_dir}; "
            f"the same call again runs only the unfinished shards"
        )
    return report


def _check_local_paths(options: JobOptions) -> None:
    """On a local cluster the workers see these paths: a bad one fails now, not in every actor."""
    if options.model is not None and not (Path(options.model) / "config.json").is_file():
        raise ModelError(f"{options.model}: not a Hugging Face model directory (no config.json)")
    adapter = options.adapter
    if adapter not in (None, "default") and not (Path(adapter) / "adapter_config.json").is_file():
        raise ModelError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")


def _say(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(line, file=sys.stderr, flush=True)
    return lambda line: None


def import_ray() -> Any:
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("distributed generation on Ray", "ray") from None
    return ray


class _Coordinator:
    """Hands shards to idle actors, writes what comes back, retries what failed."""

    def __init__(
        self,
        requests: list[Constraints],
        seed: int,
        options: JobOptions,
        manifest: Manifest,
        report: JobReport,
        say: Callable[[str], None],
        retries: int,
    ) -> None:
        self.requests = requests
        self.seed = seed
        self.options = options
        self.manifest = manifest
        self.report = report
        self.say = say
        self.retries = retries
        self.start = time.perf_counter()
        self.done_graphs = sum(s.size for s in manifest.shards if s.index in report.skipped)

    def run(
        self,
        todo: list[Shard],
        workers: int,
        address: str | None,
        worker_cpus: float,
        actors_per_gpu: int = 1,
    ) -> None:
        ray = import_ray()
        started = _connect(ray, address, workers, worker_cpus)
        actors: list[Any] = []
        try:
            gpus = float(ray.cluster_resources().get("GPU", 0))
            workers, per_actor = actor_resources(workers, gpus, actors_per_gpu)
            actor_class = ray.remote(ShardWorker).options(
                num_cpus=worker_cpus,
                num_gpus=per_actor,
                max_restarts=self.retries,
                max_task_retries=self.retries,
            )
            self.report.workers = min(workers, len(todo))
            self.report.gpus_per_worker = per_actor
            actors = [actor_class.remote(self.options) for _ in range(self.report.workers)]
            self._dispatch(ray, deque(todo), actors, lambda: actor_class.remote(self.options))
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()
        self.report.seconds = time.perf_counter() - self.start

    def _dispatch(
        self, ray: Any, pending: deque[Shard], actors: list[Any], new_actor: Callable[[], Any]
    ) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        idle = list(actors)
        running: dict[Any, tuple[Shard, Any]] = {}
        while pending or running:
            while idle and pending:
                shard, actor = pending.popleft(), idle.pop()
                self.manifest.attempt(shard)
                chunks = chunk_requests(self.requests, shard, self.seed)
                running[actor.run.remote(chunks, self.seed, shard)] = (shard, actor)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            shard, actor = running.pop(ref)
            try:
                result: ShardResult = ray.get(ref)
            except RayTaskError as exc:  # the shard raised: a user error is not retried
                cause = exc.cause if isinstance(exc.cause, BaseException) else None
                if isinstance(cause, InputError):
                    raise cause from None
                self._failed(shard, pending, f"{type(exc).__name__}: {cause or exc}")
                idle.append(actor)
                continue
            except RayActorError as exc:  # the actor died past Ray's restarts: a fresh one
                self._failed(shard, pending, f"worker lost: {str(exc).splitlines()[0][:200]}")
                actors.remove(actor)
                replacement = new_actor()
                actors.append(replacement)
                idle.append(replacement)
                continue
            self._finished(result)
            idle.append(actor)

    def _finished(self, result: ShardResult) -> None:
        self.manifest.write_shard(result)
        self.manifest.save(force=False)
        self.report.ran.append(result.shard.index)
        self.done_graphs += result.shard.size
        s = result.shard
        self.say(
            f"distributed: shard {s.index + 1}/{self.report.shards} done (graphs {s.start}-"
            f"{s.stop - 1}, {result.valid} valid, {result.seconds:.1f} s on {result.worker}); "
            f"{self.done_graphs}/{self.report.graphs} graphs, "
            f"{time.perf_counter() - self.start:.1f} s"
        )

    def _failed(self, shard: Shard, pending: deque[Shard], error: str) -> None:
        attempts = int(self.manifest.entries[shard.index]["attempts"])
        if attempts <= self.retries:
            self.say(f"distributed: shard {shard.index + 1} failed ({error}); retrying")
            pending.append(shard)
            return
        self.manifest.fail(shard, error)
        self.report.failed.append(shard.index)
        self.say(f"distributed: shard {shard.index + 1} failed {attempts} times: {error}")


def actor_resources(workers: int, gpus: float, actors_per_gpu: int = 1) -> tuple[int, float]:
    """(how many actors, the GPU share each asks for) on a cluster with `gpus` GPUs: without
    GPUs, `workers` actors and none; with them, `actors_per_gpu` actors share each whole GPU,
    so at most that many per GPU (more would wait forever for a share)."""
    if gpus < 1:
        return workers, 0.0
    return min(workers, int(gpus) * actors_per_gpu), 1.0 / actors_per_gpu


def _connect(ray: Any, address: str | None, workers: int, worker_cpus: float) -> bool:
    """Join `address`, or start a local cluster sized for the workers; True if this call started
    (and so must stop) it. A process already connected keeps its connection."""
    if ray.is_initialized():
        return False
    import logging

    if address is None:
        ray.init(
            num_cpus=max(1, math.ceil(workers * worker_cpus)),
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    return True
