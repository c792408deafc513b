"""Several Ray actors sharing one GPU (`actors_per_gpu`): the actors each ask for their share,
as many run as the GPUs hold, and the graphs are still those of one process. The cluster here
declares one GPU it does not have; the actors' torch sees none and runs on the CPU."""

from __future__ import annotations

import os

import pytest

from tracegrammar import Constraints
from tracegrammar.distributed import JobOptions, read_records, run_distributed
from tracegrammar.distributed.ray_runner import actor_resources
from tracegrammar.errors import InputError

from .test_distributed_plan import single_process

SEED = 3
REQUESTS = [Constraints("S_7", num_edges=1, depth=1)] * 3 + [Constraints("S_9", 3, 2)]


@pytest.mark.parametrize(
    ("workers", "gpus", "per_gpu", "expected"),
    [(4, 0.0, 8, (4, 0.0)), (16, 1.0, 8, (8, 0.125)), (3, 2.0, 1, (2, 1.0)),
     (2, 1.0, 4, (2, 0.25)), (5, 0.5, 2, (5, 0.0))],
)  # fmt: skip
def test_actor_resources(workers, gpus, per_gpu, expected):
    assert actor_resources(workers, gpus, per_gpu) == expected


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_actors_per_gpu_is_refused_before_ray(tmp_path, bad):
    with pytest.raises(InputError, match="actors_per_gpu must be an integer >= 1"):
        run_distributed(REQUESTS, seed=SEED, out_dir=tmp_path, actors_per_gpu=bad)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def one_gpu_cluster():
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False,
             object_store_memory=128 * 1024**2, log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()


def test_two_actors_share_one_gpu_and_give_the_single_process_graphs(
    one_gpu_cluster, tiny_model_dir, tiny_model, tmp_path
):
    report = run_distributed(
        REQUESTS, seed=SEED, out_dir=tmp_path, workers=4, shard_size=1, actors_per_gpu=2,
        options=JobOptions(model=str(tiny_model_dir), adapter=None), progress=False,
    )  # fmt: skip
    assert report.workers == 2 and report.gpus_per_worker == 0.5
    assert sorted(report.ran) == [0, 1, 2, 3]
    assert list(read_records(tmp_path)) == single_process(tiny_model, REQUESTS, SEED)
