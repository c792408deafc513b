from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# CI machines are small and shared: never fail a property test on wall-clock time.
settings.register_profile("tracegrammar", deadline=None)
settings.load_profile("tracegrammar")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = {
    "casper-v2022": SHARED_DATA
    / "alibaba-casper-sample"
    / "alibaba_v2022_shuffled_sample_small.csv",
    "casper-v2021": SHARED_DATA
    / "alibaba-casper-sample"
    / "alibaba_v2021_shuffled_sample_small.csv",
    "rpc-casper": SHARED_DATA
    / "alibaba-v2022-rpc-casper"
    / "alibaba_v2022_rpc_naive_accurate_2.csv",
    "tracellm": SHARED_DATA / "alibaba-v2022-tracellm" / "tracellm_tabular_dataset.txt",
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    from tracegrammar.decoding.models import load_model

    return load_model(tiny_model_dir, device="cpu")
