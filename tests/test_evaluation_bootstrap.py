"""Bootstrap intervals: laws of the percentile bootstrap used by the fidelity benchmark."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracegrammar.evaluation.bootstrap import Interval, bootstrap, bootstrap_many, mean

samples = st.lists(st.integers(-1000, 1000), min_size=10, max_size=60)


@given(samples, st.integers(0, 2**16))
def test_interval_of_the_mean_contains_the_sample_mean(values, seed):
    iv = bootstrap(values, mean, resamples=100, seed=seed)
    assert iv.low <= iv.value <= iv.high
    assert iv.value == pytest.approx(sum(values) / len(values))


@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(1, 50))
def test_identical_items_give_a_zero_width_interval(x, n):
    iv = bootstrap([x] * n, mean, resamples=50)
    assert iv.low == iv.value == iv.high == pytest.approx(x)


@given(samples, st.integers(0, 2**16))
def test_same_seed_same_interval(values, seed):
    assert bootstrap(values, mean, seed=seed, resamples=50) == bootstrap(
        values, mean, seed=seed, resamples=50
    )


def test_many_statistics_share_one_resample():
    values = list(range(40))
    many = bootstrap_many(values, lambda xs: {"mean": mean(xs), "max": float(max(xs))}, seed=3)
    assert many["mean"] == bootstrap(values, mean, seed=3)
    assert many["max"].high == 39.0


def test_format_and_errors():
    assert Interval(4.834, 4.611, 5.1).format() == "4.83 [4.61, 5.10]"
    with pytest.raises(ValueError, match="empty"):
        bootstrap([], mean)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap([1.0], mean, resamples=0)
