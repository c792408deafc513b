"""Generation beyond one process: a job split into shards that run on Ray actors and come out
exactly as one process makes them.

- `plan`: chunks, their seeds and shards (torch-free, Ray-free);
- `worker`: one loaded model that runs shards (plain Python);
- `manifest`: the job's folder, one file per shard, what is finished, the merged view;
- `ray_runner`: `run_distributed`, the Ray actors and the coordinator;
- `workload`: `run_workload_distributed`, a workload's graphs on Ray actors.

Ray is the optional extra `tracegrammar[ray]`; only `run_distributed` needs it.
"""

from __future__ import annotations

from .manifest import MANIFEST, read_records, write_merged
from .plan import CHUNK, JobOptions, Shard, chunk_seed, plan_shards
from .ray_runner import JobReport, import_ray, run_distributed
from .worker import ShardResult, ShardWorker
from .workload import run_workload_distributed

__all__ = [
    "CHUNK",
    "MANIFEST",
    "JobOptions",
    "JobReport",
    "Shard",
    "ShardResult",
    "ShardWorker",
    "chunk_seed",
    "import_ray",
    "plan_shards",
    "read_records",
    "run_distributed",
    "run_workload_distributed",
    "write_merged",
]
