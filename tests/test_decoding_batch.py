"""Shared passes: chunks right-aligned in one go; the static KV cache (preallocated, grown in
place, finished rows compacted late) gives the logits of the dynamic one through prompts, forced
spans, single tokens, finished rows and growth; the accelerators' sampling path, run on a CPU,
writes the CPU's graphs."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tracegrammar.decoding import batch as batch_module
from tracegrammar.decoding.batch import BatchState, right_aligned


@given(
    st.lists(st.lists(st.integers(0, 10**5), max_size=9), min_size=1, max_size=12).filter(
        lambda chunks: any(chunks)
    ),
    st.integers(0, 3),
)
def test_chunks_are_right_aligned_after_padding(chunks, pad):
    ids, mask = right_aligned(chunks, pad)
    width = max(map(len, chunks))
    assert ids.shape == mask.shape == (len(chunks), width)
    for row, chunk in enumerate(chunks):
        lead = width - len(chunk)
        assert ids[row].tolist() == [pad] * lead + chunk
        assert mask[row].tolist() == [0] * lead + [1] * len(chunk)


def run(model: Any, static: bool, seed: int) -> list[torch.Tensor]:
    rng = random.Random(seed)
    state = BatchState(model, 0, torch.device("cpu"), static=static)
    rows = list(range(8))
    out = []
    for step in range(14):
        chunks = [
            [rng.randrange(1, 500) for _ in range(rng.choice([1, 1, 2, 5]) if step else 7)]
            for _ in rows
        ]
        if step and rng.random() < 0.3:
            chunks[0] = []  # a row that feeds nothing this pass
        if not any(chunks):
            chunks[-1] = [7]
        want = sorted(rng.sample(range(len(rows)), k=max(1, len(rows) // 2)))
        want = [i for i in want if chunks[i]] or [next(i for i, c in enumerate(chunks) if c)]
        out.append(state.step(chunks, want))
        if len(rows) > 1 and step % 3 == 2:  # a row finishes; the rest keep their order
            gone = rng.randrange(len(rows))
            rows = [r for r in rows if r != rows[gone]]
            state.keep([i for i in range(len(rows) + 1) if i != gone])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_static_cache_gives_the_dynamic_cache_s_logits(tiny_model, monkeypatch, seed):
    monkeypatch.setattr(batch_module, "STATIC_ROOM", 4)  # it grows several times
    dynamic = run(tiny_model.model, False, seed)
    static = run(tiny_model.model, True, seed)
    for a, b in zip(dynamic, static, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_static_cache_grows_and_compacts(tiny_model, monkeypatch):
    monkeypatch.setattr(batch_module, "STATIC_ROOM", 4)
    state = BatchState(tiny_model.model, 0, torch.device("cpu"), static=True)
    state.step([[1, 2, 3]] * 4)
    assert state.cache.layers[0].keys.shape[0] == 4
    assert state.cache.layers[0].max_cache_len == 8  # 3 + 4, rounded up to 4
    state.step([[4, 5, 6, 7, 8, 9]] * 4)
    assert state.cache.layers[0].keys.shape[2] == 12  # 9 needed: grown to 8 + 4 (by half)
    state.keep([0, 2, 3])
    assert state.slots == [0, 2, 3] and state.cache.layers[0].keys.shape[0] == 4
    state.keep([1, 2])
    assert state.slots is None and state.cache.layers[0].keys.shape[0] == 2
    assert state.attention is not None and state.attention.shape[0] == 2


def test_a_cpu_batch_keeps_the_dynamic_cache(tiny_model):
    assert not BatchState(tiny_model.model, 0, torch.device("cpu")).static


def test_generation_on_the_static_cache_writes_the_same_graphs(tiny_model, monkeypatch):
    """The accelerator's path, run on a CPU: every batch on the static cache."""
    from tracegrammar import Constraints
    from tracegrammar.decoding.driver import run_generation

    requests = [Constraints("S_3", 5, 3), Constraints("S_4", 2, 2), Constraints("S_5", 7, 2)]

    def graphs() -> list[Any]:
        run = run_generation(requests, 2, seed=4, model=tiny_model)
        return [g.graph for g in run.generations]

    dynamic = graphs()
    monkeypatch.setattr(batch_module, "STATIC_ROOM", 8)  # grown and compacted on the way
    monkeypatch.setattr(BatchState, "__post_init__", lambda self: setattr(self, "static", True))
    reserve, grown = BatchState._reserve, []

    def counting(self: BatchState, slots: int, attention: torch.Tensor) -> torch.Tensor:
        size = self.cache.layers[0].max_cache_len if self.cache is not None else 0
        seen = reserve(self, slots, attention)
        grown.append(self.cache.layers[0].max_cache_len > size > 0)
        return seen

    monkeypatch.setattr(BatchState, "_reserve", counting)
    assert graphs() == dynamic
    assert any(grown)


@pytest.mark.parametrize("constrained", [True, False])
def test_sampling_where_the_model_is_writes_the_same_graphs(tiny_model, monkeypatch, constrained):
    """The accelerator's sampling (masks unpacked, logits cut to their top k where the model
    is; each row draws among its k), run on a CPU: the graphs of the CPU's per-row sampling."""
    from tracegrammar import Constraints
    from tracegrammar.decoding import scheduler as scheduler_module
    from tracegrammar.decoding.driver import run_generation

    requests = [Constraints("S_3", 4, 3), Constraints("S_8", 6, 2)]

    def texts() -> list[Any]:
        run = run_generation(requests, 2, seed=5, model=tiny_model, constrained=constrained)
        return [(g.graph, g.valid) for g in run.generations]

    cpu = texts()
    init, drawn = scheduler_module.WaveScheduler.__init__, []

    def on_device(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.device_sampling = True

    real = scheduler_module.WaveScheduler._draw_on_device

    def counting(self: Any, jobs: Any, writers: Any, logits: torch.Tensor) -> list[int]:
        drawn.append(len(jobs))
        return real(self, jobs, writers, logits)

    monkeypatch.setattr(scheduler_module.WaveScheduler, "__init__", on_device)
    monkeypatch.setattr(scheduler_module.WaveScheduler, "_draw_on_device", counting)
    assert texts() == cpu
    assert sum(drawn) > 0
