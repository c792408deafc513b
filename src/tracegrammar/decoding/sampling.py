"""How one token is drawn, and the frozen options of a generation run.

Every layer samples with its own random generator, seeded from (seed, graph, rpc id), so the
output does not depend on how rows happen to be batched.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, replace

import torch

from ..errors import InputError
from ..grammar import ENCODINGS


@dataclass(frozen=True)
class GenerationConfig:
    """Options of one generation run (everything but the requests and the model).

    - `temperature` (0: greedy) and `top_k` (0: no limit) shape sampling;
    - `seed`: same seed, same output (None: drawn at random, see `seeded`);
    - `constrained`: grammar and rules (the default) or the model writing freely;
    - `fmt`: the text encoding (`layer`, `layer_instruct` or `tabular`);
    - `novel_calls`: allow calls the reference never saw (semantic rules otherwise);
    - `fast_forward`: feed forced tokens in the same pass as the sampled token before them (off
      only to measure what that saves).
    """

    temperature: float = 0.8
    top_k: int = 50
    seed: int | None = None
    constrained: bool = True
    fmt: str = "layer"
    novel_calls: bool = False
    fast_forward: bool = True

    def __post_init__(self) -> None:
        if self.fmt not in ENCODINGS:
            raise InputError(f"fmt must be one of {tuple(ENCODINGS)}, got {self.fmt!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not (0 <= t < math.inf):
            raise InputError(f"temperature must be a finite number >= 0, got {t!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InputError(f"top_k must be an integer >= 0 (0: no limit), got {self.top_k!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InputError(f"seed must be an integer, got {self.seed!r}")

    def seeded(self) -> GenerationConfig:
        """This config with a seed (a random one when none was given)."""
        if self.seed is not None:
            return self
        return replace(self, seed=random.SystemRandom().randrange(2**31))


def layer_rng(seed: int, graph: int, prefix: str | None) -> torch.Generator:
    """The random generator of one layer: a function of (seed, graph, rpc id) alone."""
    digest = hashlib.sha256(f"{seed}/{graph}/{prefix}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def draw_among(values: torch.Tensor, indices: torch.Tensor, rng: torch.Generator) -> int:
    """One of the tokens `indices` (the top k of a row's logits over the temperature, best
    first), drawn with the layer's generator; masked tokens among them have probability 0."""
    probs = torch.softmax(values, dim=-1)
    return int(indices[torch.multinomial(probs, 1, generator=rng)])


def sample_token(
    logits: torch.Tensor,
    mask: torch.Tensor | None,
    temperature: float,
    top_k: int,
    rng: torch.Generator,
) -> int:
    """Sample one token: mask, temperature (0: greedy), top-k, then the layer's own generator."""
    logits = logits[: mask.shape[0]] if mask is not None else logits
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if 0 < top_k < logits.shape[0]:
        # draw among the k best only: a multinomial over the whole vocabulary costs ~1 ms on a CPU
        values, indices = torch.topk(logits, top_k)
        return draw_among(values, indices, rng)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=rng))
