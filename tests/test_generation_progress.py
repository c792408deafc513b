"""Progress per graph: the decoder reports each graph once, as it finishes (inside a wave, not
at its end), without changing what is written; the reporter draws a bar on a terminal and plain
lines (every 5% or 10 s) in a log. (`generate` keeping one count across its chunks:
test_generate_cli_streaming.py.)"""

from __future__ import annotations

import io
import itertools

import pytest

from tracegrammar import Constraints
from tracegrammar.decoding import batch as batch_module
from tracegrammar.decoding.driver import run_generation
from tracegrammar.decoding.progress import GraphProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(total: int, seconds_per_graph: float) -> list[str]:
    clock, out = FakeClock(), io.StringIO()
    progress = GraphProgress(total, stream=out, tty=False, clock=clock)
    for done in range(1, total + 1):
        clock.now += seconds_per_graph
        progress(done)
    progress.close()
    return out.getvalue().splitlines()


def test_a_log_gets_a_line_every_5_percent():
    lines = _lines(200, 0.5)  # fast graphs: the 5% steps decide
    assert len(lines) == 20
    assert lines[0] == "generate: 10/200 graphs (5%), 5 s elapsed, ETA 95 s"
    assert lines[7] == "generate: 80/200 graphs (40%), 40 s elapsed, ETA 60 s"
    assert lines[-1] == "generate: 200/200 graphs (100%), 100 s elapsed, ETA 0 s"


def test_a_log_gets_a_line_every_10_seconds_when_graphs_are_slow():
    lines = _lines(1000, 4.0)  # 4 s a graph: a 5% step takes 200 s, so the clock decides
    assert lines[:3] == [
        "generate: 3/1000 graphs (0%), 12 s elapsed, ETA 3988 s",
        "generate: 6/1000 graphs (0%), 24 s elapsed, ETA 3976 s",
        "generate: 9/1000 graphs (0%), 36 s elapsed, ETA 3964 s",
    ]
    assert lines[-1].startswith("generate: 1000/1000 graphs (100%), 4000 s elapsed")
    elapsed = [int(line.split(", ")[1].split(" s")[0]) for line in lines]
    gaps = [b - a for a, b in itertools.pairwise(elapsed)]
    assert max(gaps) == 12  # a sign of life at the first graph 10 s after the last line
    assert 4000 // 12 <= len(lines) <= 4000 // 10 + 20  # 10 s lines, plus the 5% steps


def test_the_reporter_ignores_counts_that_do_not_grow():
    clock, out = FakeClock(), io.StringIO()
    progress = GraphProgress(4, stream=out, tty=False, clock=clock)
    for done in (1, 1, 0, 2):
        progress(done)
    assert [line.split(" graphs")[0] for line in out.getvalue().splitlines()] == [
        "generate: 1/4",
        "generate: 2/4",
    ]


def test_a_terminal_gets_a_bar():
    out = io.StringIO()
    progress = GraphProgress(3, stream=out, tty=True)
    for done in (1, 2, 3):
        progress(done)
    progress.close()
    text = out.getvalue()
    assert "3/3" in text and "graph" in text and "generate:" not in text


#: Graphs of different depths: they finish in different waves, and inside their last one.
REQUESTS = [Constraints("S_3", 3, 2), Constraints("S_3", 1, 1), Constraints("S_3", 2, 2)]


def _outputs(run):
    return [(g.text, g.graph, g.valid) for g in run.generations]


@pytest.mark.parametrize(
    ("requests", "kwargs"),
    [
        (REQUESTS, {}),
        (REQUESTS[1:], {"fmt": "tabular"}),
        # free writing: layers that ask for more in their text, or fail, settle at the wave's end
        ([Constraints("S_7", 3, 2)], {"constrained": False}),
    ],
    ids=["layer", "tabular", "unconstrained"],
)
def test_each_graph_is_reported_once_and_outputs_are_unchanged(tiny_model, requests, kwargs):
    counts: list[int] = []
    watched = run_generation(
        requests, 1, seed=3, model=tiny_model, progress=counts.append, **kwargs
    )
    plain = run_generation(requests, 1, seed=3, model=tiny_model, **kwargs)
    assert counts == list(range(1, len(requests) + 1))
    assert _outputs(watched) == _outputs(plain)
    assert watched.stats.forward_passes == plain.stats.forward_passes


def test_graphs_are_reported_as_they_finish_inside_a_wave(tiny_model, monkeypatch):
    """Graphs of one shape all finish in the same wave; reported at the end of the wave, every
    report would come after the same forward pass."""
    passes = []
    real_step = batch_module.BatchState.step

    def step(self, chunks, want=None, host=True):
        passes.append(1)
        return real_step(self, chunks, want, host)

    monkeypatch.setattr(batch_module.BatchState, "step", step)
    seen_at: list[int] = []
    run_generation(
        Constraints("S_3", 3, 2), 3, seed=1, model=tiny_model,
        progress=lambda done: seen_at.append(len(passes)),
    )  # fmt: skip
    assert len(seen_at) == 3
    assert len(set(seen_at)) > 1
