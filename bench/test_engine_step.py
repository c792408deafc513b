"""Engine time per decoding step vs one decoding step of the default model, side by side.

    .venv/bin/python -m pytest bench/test_engine_step.py --benchmark-json bench/results/engine_step.json

`engine_mask` is what the engine adds to every sampled token (grammar mask from llguidance, the
numeric mask, their intersection); `engine_consume` advances matcher and scanner by one token;
`model_decode_step` is one forward pass of SmolLM2-135M for one new token with a 120-token cache.
Target: engine time <= 5% of a decoding step.
"""

from __future__ import annotations

import pytest
import torch

from tracegrammar.decoding.driver import engine_for
from tracegrammar.decoding.models import load_model
from tracegrammar.types import LayerConditions

COND = LayerConditions("S_32048416", "MS_9570", "USER", 1, 9, 2, 3, 2, 10, 400)
PREFIX = "<edges>\n(id:1 dm:MS_20664 type:rpc start:12 finish:"


@pytest.fixture(scope="module")
def lm():
    return load_model(None, None, device="cpu")


@pytest.fixture(scope="module")
def engine(lm):
    return engine_for(lm)


def _session_at_prefix(engine):
    session = engine.session(COND)
    ids = engine.tokenizer(PREFIX, add_special_tokens=False).input_ids
    for tok in ids:
        session.consume(tok)
    return session


def test_engine_mask(benchmark, engine):
    session = _session_at_prefix(engine)

    def step() -> torch.Tensor:
        session._mask = None  # recompute, as after every consumed token
        return session.mask()

    mask = benchmark(step)
    assert mask.any()


def test_engine_consume(benchmark, engine):
    digit = engine.table.digit_ids[3]

    def setup():
        return (_session_at_prefix(engine),), {}

    benchmark.pedantic(lambda s: s.consume(digit), setup=setup, rounds=50)


def test_model_decode_step(benchmark, lm):
    ids = torch.randint(100, 40000, (1, 120))
    with torch.inference_mode():
        out = lm.model(input_ids=ids, use_cache=True)
    cache = out.cache
    nxt = torch.tensor([[42]])

    def step():
        with torch.inference_mode():
            res = lm.model(input_ids=nxt, cache=cache, use_cache=True)
        cache.crop(-1)  # drop the new token: the cache stays at 120 between rounds
        return res

    benchmark.pedantic(step, rounds=20, warmup_rounds=2)
