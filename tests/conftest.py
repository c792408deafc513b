from __future__ import annotations

from pathlib import Path

import pytest

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
