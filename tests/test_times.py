"""`tracegrammar.times`: the one parser and formatter of absolute times."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tracegrammar.errors import InputError, UsageError
from tracegrammar.exports.send import parse_start
from tracegrammar.times import epoch_ms, format_time, parse_datetime, parse_time

T = 1_740_830_400.0  # 2025-03-01T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T12:00:00Z", T),
        ("2025-03-01T12:00:00", T),  # naive: UTC
        ("2025-03-01 12:00:00", T),
        ("2025-03-01T13:00:00+01:00", T),
        ("2025-03-01T07:00:00-05:00", T),
        ("2025-03-01T12:00:00.250Z", T + 0.25),
        ("2025-03-01T12:00:00.123456+00:00", T + 0.123456),
        ("  2025-03-01T12:00:00Z  ", T),
        ("2025-03-01", T - 12 * 3600),
    ],
)
def test_iso_times_parse(text, expected):
    assert parse_time(text, "--start") == pytest.approx(expected, abs=1e-6)


def test_now_is_now():
    before = time.time()
    got = parse_time("now", "--start")
    assert before - 1 <= got <= time.time() + 1
    assert parse_time(" NOW ", "--start") >= before - 1


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2025-13-01T00:00:00", "2025-03-01T25:00", "12:00", "1740830400"]
)
def test_bad_times_name_the_flag_and_value(text):
    with pytest.raises(UsageError) as info:
        parse_time(text, "--start")
    message = str(info.value)
    assert "--start" in message and repr(text) in message
    assert "\n" not in message
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize("text", ["1970-01-01T00:00:00Z", "1969-12-31T23:00:00Z"])
def test_times_before_the_epoch_are_refused(text):
    with pytest.raises(UsageError, match="--end must be after 1970"):
        parse_time(text, "--end")


def test_non_text_is_refused():
    with pytest.raises(UsageError, match="start"):
        parse_time(1740830400, "start")  # type: ignore[arg-type]


def test_datetimes_are_accepted():
    assert parse_datetime(datetime(2025, 3, 1, 12)).timestamp() == T
    east = timezone(timedelta(hours=2))
    assert parse_datetime(datetime(2025, 3, 1, 14, tzinfo=east)) == datetime(
        2025, 3, 1, 12, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (T, "2025-03-01T12:00:00.000Z"),
        (T + 0.25, "2025-03-01T12:00:00.250Z"),
        (T + 0.0004, "2025-03-01T12:00:00.000Z"),
        (T + 0.9996, "2025-03-01T12:00:01.000Z"),  # rounded, carried into the seconds
        (1_704_067_200, "2024-01-01T00:00:00.000Z"),
    ],
)
def test_format(ts, text):
    assert format_time(ts) == text


@pytest.mark.parametrize("ms", [0, 1, 250, 999, 123_456_789])
def test_format_parse_round_trip(ms):
    ts = T + ms / 1000
    assert epoch_ms(parse_time(format_time(ts), "t")) == epoch_ms(ts)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1", True, None])
def test_format_refuses_non_numbers(bad):
    with pytest.raises(ValueError, match="timestamp"):
        format_time(bad)


def test_parse_start_shares_the_parser():
    ns = 1_740_830_400_000_000_000
    assert parse_start("2025-03-01T12:00:00Z") == ns
    assert parse_start("2025-03-01T12:00:00.000001Z") == ns + 1_000
    assert parse_start("2025-03-01T12:00:00.999999Z") == ns + 999_999_000
    with pytest.raises(UsageError, match="start must be 'now'"):
        parse_start("yesterday")
    with pytest.raises(UsageError, match="start must be after 1970"):
        parse_start("1960-01-01")


def test_graph_timestamp_is_not_part_of_equality():
    from tracegrammar.types import CallGraph, Edge

    edges = (Edge("0", "USER", "MS_1", "http", 0, 5),)
    plain = CallGraph("S_1", edges)
    stamped = CallGraph("S_1", edges, timestamp=T)
    assert plain.timestamp is None and stamped.timestamp == T
    assert plain == stamped and hash(plain) == hash(stamped)
    assert len({plain, stamped}) == 1
    assert CallGraph("S_2", edges, timestamp=T) != stamped


def test_graph_timestamp_survives_networkx():
    from tracegrammar.types import CallGraph, Edge

    g = CallGraph("S_1", (Edge("0", "USER", "MS_1", "http", 0, 5),), timestamp=T)
    assert CallGraph.from_networkx(g.to_networkx()).timestamp == T
    assert CallGraph.from_networkx(CallGraph("S_1", g.edges).to_networkx()).timestamp is None


def test_trace_times():
    from tracegrammar.times import DEFAULT_ANCHOR, EPOCH_MS_MIN, trace_time

    assert trace_time(0) == DEFAULT_ANCHOR
    assert trace_time(17_530_085) == pytest.approx(DEFAULT_ANCHOR + 17_530.085)
    assert trace_time(1_740_830_400_250) == pytest.approx(T + 0.25)
    assert trace_time(EPOCH_MS_MIN) == EPOCH_MS_MIN / 1000
    assert format_time(DEFAULT_ANCHOR) == "2024-01-01T00:00:00.000Z"
