"""Progress of generation, one step per finished graph: a bar with an ETA on a terminal, plain
lines in a log (stderr not a terminal) every 5% of the graphs or every 10 s, whichever comes
first (checked as graphs finish, so nothing runs in the background)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

#: A plain line at each further 1/LINE_STEPS of the graphs (5%) ...
LINE_STEPS = 20
#: ... or when this many seconds have passed since the last line.
LINE_SECONDS = 10.0


class GraphProgress:
    """Call it with the number of graphs finished so far (increasing; one run or many chunks
    feeding one count). On a terminal (`tty`, default: `stream.isatty()`) a tqdm bar; otherwise
    `generate: 40/200 graphs (20%), 35 s elapsed, ETA 140 s` lines on `stream`. `clock` is
    injectable for tests."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        label: str = "generate",
    ) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.label = label
        self.start = clock()
        self.done = 0
        self._line_at = self.start
        self._line_step = 0
        self._bar: Any = None
        if self.tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="graph", desc="generating", file=self.stream)

    def __call__(self, done: int) -> None:
        if done <= self.done:
            return
        self.done = done
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            return
        now = self.clock()
        step = done * LINE_STEPS // self.total
        if done >= self.total or step > self._line_step or now - self._line_at >= LINE_SECONDS:
            self._line_step, self._line_at = step, now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        elapsed = now - self.start
        eta = elapsed * (self.total - self.done) / self.done if self.done else float("nan")
        return (
            f"{self.label}: {self.done}/{self.total} graphs ({100 * self.done // self.total}%), "
            f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
