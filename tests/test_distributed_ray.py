"""`run_distributed` on a local Ray cluster started here (two actors, the tiny model): the same
graphs as the single-process run with the same seed; a shard whose file is lost (a crash) is the
only one a rerun makes again."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tracegrammar import Constraints
from tracegrammar.distributed import JobOptions, import_ray, read_records, run_distributed
from tracegrammar.errors import MissingExtraError

from .test_distributed_plan import single_process

SEED = 5
REQUESTS = [Constraints("S_7", num_edges=1, depth=1)] * 4 + [Constraints("S_9", 3, 2)] * 2


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'tracegrammar\[ray\]'"):
        import_ray()


@pytest.fixture(scope="module")
def cluster():
    # Ray gives a Linux node its network address; this keeps the test cluster on loopback (read
    # when ray is first imported, and inherited by the processes it starts)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 1024**2,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def job(cluster, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    lines: list[str] = []
    options = JobOptions(model=str(tiny_model_dir), adapter=None)

    def run():
        lines.clear()
        return run_distributed(
            REQUESTS, seed=SEED, out_dir=out, workers=2, options=options, shard_size=2,
            progress=lines.append,
        )  # fmt: skip

    return out, run, lines, run()


def test_two_actors_give_the_single_process_graphs(job, tiny_model):
    out, _, lines, report = job
    assert sorted(report.ran) == [0, 1, 2] and report.workers == 2
    assert list(read_records(out)) == single_process(tiny_model, REQUESTS, SEED)
    assert len(lines) == 3 and all("done" in line for line in lines)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["status"] for s in manifest["shards"]] == ["done"] * 3
    assert manifest["job"]["seed"] == SEED and manifest["job"]["graphs"] == len(REQUESTS)


def test_a_rerun_makes_only_the_lost_shard(job):
    out, run, _, _ = job
    before = list(read_records(out))
    (out / "shard-00001.jsonl").unlink()  # as if the job had died before writing it
    report = run()
    assert report.ran == [1] and report.skipped == [0, 2]
    assert list(read_records(out)) == before
    assert run().ran == []  # nothing left to do


def test_a_shard_whose_worker_dies_is_retried(
    cluster, tiny_model_dir, tiny_model, tmp_path, monkeypatch
):
    from tracegrammar.distributed import ShardWorker, ray_runner

    marker = str(tmp_path / "crashed")

    class CrashOnce(ShardWorker):  # defined here, so Ray ships it by value
        def run(self, chunks, seed, shard):
            if shard.index == 1 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # the worker process dies mid-shard, as on a lost node
            return super().run(chunks, seed, shard)

    monkeypatch.setattr(ray_runner, "ShardWorker", CrashOnce)
    out = tmp_path / "job"
    options = JobOptions(model=str(tiny_model_dir), adapter=None)
    report = run_distributed(
        REQUESTS, seed=SEED, out_dir=out, workers=1, options=options, shard_size=2, progress=False
    )
    assert os.path.exists(marker) and sorted(report.ran) == [0, 1, 2] and not report.failed
    assert list(read_records(out)) == single_process(tiny_model, REQUESTS, SEED)
