"""The window rules (tracegrammar.rules): any line they allow leaves the window completable, so
a writer that follows them ends with exactly the requested lines, arrivals inside the window and
non-decreasing, every required id present and every shape feasible."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tracegrammar.rules import (
    MAX_CONTEXT_LATENCY,
    arrival_range,
    context_depth_range,
    context_edges_range,
    context_latency_range,
    context_services,
    feasible_shape,
    missing_services,
    window_length_ms,
    window_problem,
)

KNOWN = [f"S_{i}" for i in range(1, 9)]


def test_window_length_counts_offsets_inside() -> None:
    assert window_length_ms(10.0, 11.0) == 1000  # offsets 0..999: start + 0.999 < end
    assert window_length_ms(10.0, 10.0005) == 1  # offset 0 only
    assert window_length_ms(0.0, 0.0015) == 2


def test_window_problems_name_the_field() -> None:
    assert window_problem(5.0, 5.0, 3) == (
        "end",
        "end must be after start, got start=5.0 and end=5.0 (epoch s)",
    )
    assert window_problem(5.0, 4.0, 3)[0] == "end"  # type: ignore[index]
    assert window_problem(0.0, 1.0, 0)[0] == "num_traces"  # type: ignore[index]
    assert window_problem(0.0, 1.0, 1, ["S_1", "S_2"])[0] == "include"  # type: ignore[index]
    field, why = window_problem(0.0, 1.0, 3, ["S_99"], KNOWN)  # type: ignore[misc]
    assert field == "include" and "S_99" in why
    assert (
        window_problem(0.0, 1.0, 2, ["S_1", "S_1", "S_2"], KNOWN) is None
    )  # duplicates count once


def test_services_reserve_room_for_missing_ids() -> None:
    assert context_services(["S_1", "S_2"], [], 3, KNOWN) == frozenset(KNOWN)
    assert context_services(["S_1", "S_2"], [], 2, KNOWN) == {"S_1", "S_2"}
    assert context_services(["S_1", "S_2"], ["S_2"], 1, KNOWN) == {"S_1"}
    assert context_services([], [], 1, None) is None


@given(
    st.integers(1, 30),
    st.lists(st.sampled_from(KNOWN), max_size=6, unique=True),
    st.integers(1, 5000),
    st.randoms(use_true_random=False),
)
def test_a_writer_following_the_rules_always_meets_the_request(
    n: int, include: list[str], length: int, rnd
) -> None:
    include = include[:n]
    lines: list[tuple[int, str, int, int, int]] = []
    previous = 0
    for i in range(n):
        at = arrival_range(previous, length)
        assert at, "a dead end in the arrival times"
        offset = rnd.randint(at.min, at.max)
        services = context_services(include, [s for _, s, *_ in lines], n - i, KNOWN)
        assert services
        service = rnd.choice(sorted(services))
        max_depth = rnd.choice([1, 2, 4, 10**6])
        edges = context_edges_range(30, max_depth)
        num = rnd.randint(edges.min, edges.max)
        depths = context_depth_range(num, max_depth)
        assert depths
        depth = rnd.randint(depths.min, depths.max)
        latency = rnd.randint(0, context_latency_range().max)
        lines.append((offset, service, num, depth, latency))
        previous = offset
    assert len(lines) == n
    offsets = [at for at, *_ in lines]
    assert offsets == sorted(offsets) and all(0 <= at < length for at in offsets)
    assert not missing_services(include, [s for _, s, *_ in lines])
    assert all(feasible_shape(num, depth) for _, _, num, depth, _ in lines)
    assert all(0 <= lat <= MAX_CONTEXT_LATENCY for *_, lat in lines)
