"""Serving a pass's rows together changes the cost, not the output: with the constrained
writers answering row by row (the per-session engine), the same seed writes the same graphs and
texts with the same forward passes, sampled and forced tokens."""

from __future__ import annotations

import pytest
import torch

from tracegrammar import CallGraph, Constraints, Edge, Reference
from tracegrammar.decoding.driver import run_generation
from tracegrammar.decoding.writers import ConstrainedWriters


def per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constrained writers serving a pass one row at a time, as before batching."""
    monkeypatch.setattr(ConstrainedWriters, "begin_all", lambda self, ws: [w.begin() for w in ws])
    monkeypatch.setattr(
        ConstrainedWriters, "masks", lambda self, ws: torch.stack([w.mask() for w in ws])
    )
    monkeypatch.setattr(
        ConstrainedWriters,
        "accept_all",
        lambda self, ws, ts: [w.accept(t) for w, t in zip(ws, ts, strict=True)],
    )


REFERENCE = Reference.from_graphs(
    [
        CallGraph(
            "S_1",
            (
                Edge("0", "USER", "MS_1", "http", 0, 50),
                Edge("0.1", "MS_1", "MS_2", "rpc", 1, 20),
                Edge("0.1.1", "MS_2", "MS_3", "db", 2, 3),
                Edge("0.2", "MS_1", "MS_4", "mc", 21, 40),
                Edge("0.3", "MS_1", "MS_2", "http", 41, 45),
            ),
        )
    ]
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fmt": "layer"},
        {"fmt": "layer_instruct", "temperature": 0.0},
        {"fmt": "tabular"},
        {"fmt": "layer", "reference": REFERENCE},
        {"fmt": "layer", "fast_forward": False},
    ],
    ids=["layer", "layer_instruct-greedy", "tabular", "semantic", "one-forced-per-pass"],
)
def test_batched_rows_write_what_single_rows_write(tiny_model, monkeypatch, kwargs):
    c = Constraints("S_1", 4, 3, 60)
    batched = run_generation(c, 3, seed=7, model=tiny_model, **kwargs)
    with monkeypatch.context() as m:
        per_row(m)
        single = run_generation(c, 3, seed=7, model=tiny_model, **kwargs)
    assert [g.text for g in batched.generations] == [g.text for g in single.generations]
    assert [g.graph for g in batched.generations] == [g.graph for g in single.generations]
    a, b = batched.stats, single.stats
    counts = ("forward_passes", "sampled_tokens", "forced_tokens", "fed_tokens", "layers")
    assert [getattr(a, k) for k in counts] == [getattr(b, k) for k in counts]
    assert a.masked_steps == b.masked_steps == a.sampled_tokens
    assert a.masked_mass == pytest.approx(b.masked_mass, rel=1e-4, abs=1e-6)
