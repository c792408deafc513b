"""Shards of a job (`tracegrammar.distributed.plan`, run in-process by `ShardWorker`) give
exactly the graphs of the chunked single-process run, whatever the shard size."""

from __future__ import annotations

import json

import pytest

from tracegrammar import Constraints
from tracegrammar.decoding.driver import run_generation
from tracegrammar.distributed import CHUNK, JobOptions, ShardWorker, plan_shards
from tracegrammar.distributed.manifest import Manifest, read_records
from tracegrammar.distributed.plan import chunk_requests, chunk_seed, job_key
from tracegrammar.errors import InputError, OutputPathError
from tracegrammar.io import generation_record

SEED = 21
#: 34 graphs: two chunks, so shards cross the chunk boundary at 32; mostly one-call graphs and
#: a few with unset attributes (drawn from the prior), to keep a busy 2-core machine quick
REQUESTS = [Constraints("S_7", num_edges=1, depth=1)] * 30 + [Constraints("S_9")] * 4


def single_process(model, requests, seed):
    """What `tracegrammar generate` writes: chunk k of CHUNK requests with chunk_seed(seed, k)."""
    out = []
    for k in range(0, len(requests), CHUNK):
        run = run_generation(
            requests[k : k + CHUNK], 1, seed=chunk_seed(seed, k // CHUNK), model=model
        )
        out.extend(generation_record(g) for g in run.generations)
    return out


@pytest.fixture(scope="module")
def expected(tiny_model):
    return single_process(tiny_model, REQUESTS, SEED)


@pytest.fixture(scope="module")
def worker(tiny_model_dir, tiny_model):
    return ShardWorker(JobOptions(model=str(tiny_model_dir), adapter=None), model=tiny_model)


@pytest.mark.parametrize("total", [1, 31, 32, 33, 100])
@pytest.mark.parametrize("size", [1, 5, 32, 40])
def test_shards_cover_the_job_once_in_order(total, size):
    shards = plan_shards(total, size)
    positions = [
        i for s in shards for p in s.pieces(SEED) for i in range(p.start + p.lo, p.start + p.hi)
    ]
    assert positions == list(range(total))
    assert all(0 <= p.lo < p.hi <= CHUNK for s in shards for p in s.pieces(SEED))


@pytest.mark.parametrize("size", [5])
def test_shards_give_the_single_process_graphs(worker, expected, size):
    records = []
    for shard in plan_shards(len(REQUESTS), size):
        result = worker.run(chunk_requests(REQUESTS, shard, SEED), SEED, shard)
        assert len(result.records) == shard.size
        records.extend(result.records)
    assert records == expected


def test_a_folder_of_another_job_is_refused(tmp_path):
    shards = plan_shards(4, 2)
    key = job_key(REQUESTS[:4], SEED, JobOptions(), 2)
    Manifest.open(tmp_path, key, shards).save()
    other = job_key(REQUESTS[:4], SEED + 1, JobOptions(), 2)
    with pytest.raises(OutputPathError, match="its seed differ"):
        Manifest.open(tmp_path, other, shards)
    with pytest.raises(OutputPathError, match="shard 0 is not finished"):
        list(read_records(tmp_path))


def test_bad_shard_sizes_are_refused():
    with pytest.raises(InputError, match="shard_size"):
        plan_shards(4, 0)


def test_records_are_json_lines(expected):
    assert all(json.loads(json.dumps(r)) == r for r in expected)
