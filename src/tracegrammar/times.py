"""Absolute times: the one parser and formatter of wall-clock times (`--start`, `timestamp`).

A time is epoch seconds UTC (a float). Text is ISO 8601: `2025-03-01T12:00:00Z`,
`2025-03-01T13:00:00.250+01:00`, `2025-03-01 12:00` (no zone: UTC) or `now`. Written times are
ISO 8601 UTC with `Z` and millisecond precision, the precision of the Alibaba traces.
This module imports nothing heavy, so every layer (io, exports, CLI checks) may use it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from .errors import UsageError

__all__ = [
    "DEFAULT_ANCHOR",
    "EPOCH_MS_MIN",
    "epoch_ms",
    "format_time",
    "parse_datetime",
    "parse_time",
    "trace_time",
]

#: 2024-01-01T00:00:00Z in epoch seconds: where graphs with no time of their own are exported, and
#: where the Alibaba samples' relative timestamps (ms since the start of the collection, whose
#: calendar date Alibaba does not publish) are anchored.
DEFAULT_ANCHOR = 1_704_067_200
#: A trace file's ms `timestamp` at or above this (1973-03-03) is epoch ms (e.g. our own CSV
#: export); below it, ms since the start of the trace collection (Alibaba v2021/v2022).
EPOCH_MS_MIN = 100_000_000_000


def parse_datetime(text: str | datetime, flag: str = "start") -> datetime:
    """An aware UTC datetime from ISO 8601 text (no zone: UTC), `now`, or a datetime (naive: UTC).

    Bad text, or a time not after 1970-01-01 (trace UIs hide or reject such spans), raises
    UsageError: one line naming `flag` and the value."""
    if isinstance(text, datetime):
        when = text
    elif not isinstance(text, str):
        raise UsageError(f"{flag} must be 'now' or an ISO 8601 time, got {text!r}")
    elif text.strip().lower() == "now":
        return datetime.now(UTC)
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(
                f"{flag} must be 'now' or an ISO 8601 time (e.g. 2025-03-01T12:00:00Z), "
                f"got {text!r}"
            ) from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when <= _EPOCH:
        raise UsageError(f"{flag} must be after 1970-01-01T00:00:00Z, got {str(text)!r}")
    return when


def parse_time(text: str, flag: str = "start") -> float:
    """Epoch seconds UTC of ISO 8601 text (no zone: UTC; `Z`, offsets, fractional seconds) or
    `now`. Bad text raises UsageError naming `flag` and the value."""
    return parse_datetime(text, flag).timestamp()


def format_time(ts: float) -> str:
    """`1740830400.25` -> `2025-03-01T12:00:00.250Z` (UTC, milliseconds, rounded)."""
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise ValueError(f"timestamp must be a finite number of epoch seconds, got {ts!r}")
    ms = epoch_ms(ts)
    when = datetime.fromtimestamp(ms // 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def epoch_ms(ts: float) -> int:
    """Epoch seconds -> whole epoch milliseconds (rounded): the precision times are kept at in
    every file, so a float's rounding never moves a time by a millisecond."""
    return round(ts * 1000)


def trace_time(ms: float) -> float:
    """Epoch seconds of a trace file's ms `timestamp`: epoch ms at or above EPOCH_MS_MIN, else an
    offset from the start of the collection, anchored at DEFAULT_ANCHOR."""
    return ms / 1000 if ms >= EPOCH_MS_MIN else DEFAULT_ANCHOR + ms / 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
